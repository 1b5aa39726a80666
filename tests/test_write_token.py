"""Only the right ones writing, and only where the user means it: the write token (HTTP and gRPC), CORS, what
listens where, and no server path in answers (a real Flow for the end-to-end part)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from docarray import DocList

from helpers import REPO_ROOT, asgi_request, default_checkpoint_or_tiny, png_bytes, running_flow
from mlcl_executor.write_token import TOKEN_ENV, TokenError, WriteGuard, configured_token

TOKEN = "s3cret-token-for-tests"


# ------------------------------------------------------------------ in process
def test_the_guard_takes_only_the_token_and_only_for_endpoints_that_are_not_open():
    guard = WriteGuard(TOKEN)
    assert guard.enabled
    for endpoint in ("/index", "/update", "/delete", "/clear", "/index_vectors", "index", "/index/", "/anything-new"):
        assert guard.needs_token(endpoint), endpoint
    for endpoint in ("/search", "/count", "/encode", "search/"):
        assert not guard.needs_token(endpoint), endpoint
    assert guard.allows(f"Bearer {TOKEN}") and guard.allows(f"bearer  {TOKEN} ")
    for wrong in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer ", f"Bearer {TOKEN[:-1]}"):
        assert not guard.allows(wrong), wrong
    assert TOKEN not in guard.refusal("/index") and "Authorization: Bearer" in guard.refusal("/index")
    open_guard = WriteGuard(None)
    assert not open_guard.enabled and not open_guard.needs_token("/clear") and open_guard.allows(None)


def test_the_token_comes_from_the_environment_or_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert configured_token(None) is None
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert configured_token(str(token_file)) == TOKEN
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert configured_token(str(token_file)) == "from-env"  # the variable wins
    monkeypatch.setenv(TOKEN_ENV, "  ")
    with pytest.raises(TokenError, match="set but empty"):
        configured_token(None)
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(TokenError, match="cannot be read"):
        configured_token(str(tmp_path / "missing"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(TokenError, match="is empty"):
        configured_token(str(tmp_path / "empty"))


def call(app, method: str, path: str, headers: dict = None, body: bytes = b""):
    """(status, headers, body) of one request through an ASGI app, in process."""
    return asgi_request(app, method, path, headers, body)


def test_http_writes_without_the_token_are_401_and_reads_stay_open():
    from fastapi import FastAPI

    from mlcl_executor.flow_gateway import install_write_guard

    app = FastAPI()
    served = []

    @app.post("/index")
    async def index():
        served.append("/index")
        return {"data": []}

    @app.post("/search")
    async def search():
        served.append("/search")
        return {"data": []}

    @app.get("/ui/")
    async def page():
        return {"page": True}

    @app.post("/ui/thumbnails")  # the page's batched thumbnails: a POST that reads
    async def thumbnails():
        served.append("/ui/thumbnails")
        return {}

    install_write_guard(app, WriteGuard(TOKEN))
    status, headers, body = call(app, "POST", "/index")
    assert status == 401 and headers["www-authenticate"] == "Bearer" and TOKEN not in body.decode()
    assert "needs the Flow's write token" in json.loads(body)["detail"]
    assert call(app, "POST", "/index", {"Authorization": "Bearer nope"})[0] == 401
    assert served == []  # nothing reached the endpoint
    assert call(app, "POST", "/index", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert call(app, "POST", "/search")[0] == 200 and call(app, "GET", "/ui/")[0] == 200
    assert call(app, "POST", "/ui/thumbnails")[0] == 200
    assert served == ["/index", "/search", "/ui/thumbnails"]


# ------------------------------------------------------------------ a real Flow
def post(url: str, payload: dict, headers: dict = None):
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def preflight(url: str, origin: str) -> dict:
    request = urllib.request.Request(url, method="OPTIONS", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as exc:
        return {k.lower(): v for k, v in exc.headers.items()}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    token_file = tmp_path_factory.mktemp("secret") / "token"
    token_file.write_text(TOKEN + "\n")
    with running_flow(REPO_ROOT / "flows" / "flow.yml", tmp_path_factory.mktemp("ws"),
                      encoder_with={"checkpoint": str(default_checkpoint_or_tiny())},
                      gateway_with={"write_token_file": str(token_file), "cors_origins": ["https://shop.example"]}) as flow:
        yield flow


def http_count(flow) -> int:
    status, answer = post(flow["http_url"] + "/count", {"data": []})
    assert status == 200
    return answer["data"][0]["count"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_only_the_token_writes_over_http_and_grpc_and_nothing_else_is_exposed(guarded, monkeypatch):
    import psutil
    from jina import Client

    from mlcl_cli.client import grpc_client, refusal
    from mlcl_cli.launcher import listening
    from mlcl_executor.image_source import to_data_uri
    from mlcl_executor.schemas import GalleryDoc, QueryDoc

    url = guarded["http_url"]
    image = to_data_uri(png_bytes((200, 30, 30)))
    doc = {"id": "red", "image": image, "tags": {"path": "/srv/gallery/red.png", "colour": "red"}}
    before = http_count(guarded)
    # HTTP: no token, a wrong one, another scheme: 401, nothing stored
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        for endpoint in ("/index", "/update", "/delete", "/clear"):
            status, answer = post(url + endpoint, {"data": [doc]}, headers)
            assert status == 401 and TOKEN not in json.dumps(answer), (endpoint, headers)
    assert http_count(guarded) == before
    # gRPC: the same, UNAUTHENTICATED
    plain = Client(host="127.0.0.1", port=guarded["grpc"])
    for metadata in ((), (("authorization", "Bearer wrong"),)):
        with pytest.raises(Exception) as info:
            plain.post("/index", DocList[GalleryDoc]([GalleryDoc(id="g", image=png_bytes())]), metadata=metadata,
                       return_type=DocList[GalleryDoc])
        reason = refusal(info.value)
        assert reason is not None and "needs the Flow's write token" in reason and TOKEN not in reason
        with pytest.raises(Exception):
            plain.post("/clear", DocList[GalleryDoc](), metadata=metadata)
    assert http_count(guarded) == before
    # the right token writes, over both
    status, _ = post(url + "/index", {"data": [doc]}, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and http_count(guarded) == before + 1
    monkeypatch.setenv(TOKEN_ENV, TOKEN)  # what mlcl index does: the client of mlcl_cli sends $MLCL_WRITE_TOKEN
    grpc_client(port=guarded["grpc"]).post("/index", DocList[GalleryDoc]([GalleryDoc(id="green", image=png_bytes((20, 200, 20)))]),
                                           return_type=DocList[GalleryDoc])
    assert http_count(guarded) == before + 2
    # reads stay open; answers carry no server path
    status, answer = post(url + "/search", {"data": [{"image": image}], "parameters": {"limit": 5}})
    assert status == 200
    matches = answer["data"][0]["matches"]
    assert {m["id"] for m in matches} == {"red", "green"}
    assert all("path" not in (m["tags"] or {}) and not m.get("uri") for m in matches)
    assert matches[0]["tags"] == {"colour": "red"}
    res = plain.post("/search", DocList[QueryDoc]([QueryDoc(text="red")]), return_type=DocList[QueryDoc])
    assert len(res[0].matches) == 2
    status, thumbnails = post(url + "/ui/thumbnails", {"ids": ["red", "green", "blue"]})  # the page's batch: a read
    assert status == 200 and sorted(thumbnails) == ["green", "red"]
    # CORS: a foreign origin gets no grant; the configured one gets one, never with credentials
    foreign = preflight(url + "/search", "http://evil.example")
    assert "access-control-allow-origin" not in foreign and "access-control-allow-credentials" not in foreign
    mine = preflight(url + "/search", "https://shop.example")
    assert mine.get("access-control-allow-origin") == "https://shop.example"
    assert "access-control-allow-credentials" not in mine
    # what listens: the gateway and every Executor on loopback only (the YAML's host)
    bound = listening([guarded["grpc"], guarded["http"]])
    assert bound[guarded["grpc"]] and bound[guarded["http"]]
    assert all(a.startswith("127.") for addresses in bound.values() for a in addresses), bound
    flow_pids = {p.pid for p in psutil.Process().children(recursive=True)}
    exposed = [c.laddr for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid in flow_pids
               and not (c.laddr.ip.startswith("127.") or c.laddr.ip.startswith("::ffff:127.") or c.laddr.ip == "::1")]
    assert exposed == [], exposed
    # the API reference and the icon are served from the Flow itself
    with urllib.request.urlopen(url + "/docs", timeout=30) as response:
        html = response.read().decode()
    assert "/docs/api.js" in html and "cdn" not in html.lower()
    with urllib.request.urlopen(url + "/openapi.json", timeout=30) as response:
        assert json.loads(response.read())["info"]["title"] == "mlcl"
    with urllib.request.urlopen(url + "/favicon.ico", timeout=30) as response:
        assert response.status == 200 and response.headers["content-type"].startswith("image/svg")
