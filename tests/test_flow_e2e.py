"""End to end through a real Flow (flows/flow.yml, executor processes) over gRPC and HTTP.

One Flow serves the whole module (starting Flows is the slow part). Tests
run in file order and share its index; each one states the counts it needs.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from docarray import DocList

from helpers import (
    REPO_ROOT, data_uri, default_checkpoint_or_tiny, png_bytes, running_flow, server_error, shapes_test_split,
)
from jina.excepts import BadServer

from mlcl.paths import DEFAULT_CHECKPOINT
from mlcl_executor.schemas import GalleryDoc, QueryDoc, StatsDoc
from mlcl_cli.client import grpc_client, http_post

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]  # Flows / a Milvus Lite process

N_TRIPLETS = 10  # shapes test split of 10 queries: 60 gallery images


@pytest.fixture(scope="module")
def shapes():
    return shapes_test_split(N_TRIPLETS)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    roots = tmp_path_factory.mktemp("roots")
    (roots / "allowed.png").write_bytes(png_bytes((20, 200, 20)))
    with running_flow(REPO_ROOT / "flows" / "flow.yml", ws,
                      encoder_with={"checkpoint": str(default_checkpoint_or_tiny()), "image_roots": [str(roots)]}) as flow:
        flow["client"] = grpc_client(port=flow["grpc"])
        flow["roots"] = roots
        yield flow


def count_stats(client) -> StatsDoc:
    return client.post("/count", DocList[GalleryDoc](), return_type=DocList[StatsDoc])[0]


def count(client) -> int:
    return count_stats(client).count


def search(client, docs, **parameters):
    return client.post("/search", DocList[QueryDoc](docs), parameters=parameters, return_type=DocList[QueryDoc])


def test_grpc_index_and_self_match(served, shapes):
    client = served["client"]
    docs = DocList[GalleryDoc](
        GalleryDoc(id=name, image=shapes.image_path(name).read_bytes(), tags={"scene": shapes.scene_key(name)})
        for name in shapes.gallery
    )
    answer = client.post("/index", docs, return_type=DocList[GalleryDoc])
    assert [d.error for d in answer] == [None] * len(docs)
    assert count(client) == len(shapes.gallery)

    # An image-only query with a gallery image finds that image first (exact self-match).
    targets = [t["target"] for t in shapes.triplets[:5]]
    results = search(client, [QueryDoc(image=shapes.image_path(t).read_bytes()) for t in targets], limit=10)
    for target, res in zip(targets, results):
        assert res.error is None and len(res.matches) == 10
        assert res.matches[0].id == target and res.scores[0] == pytest.approx(1.0, abs=1e-4)
        assert res.scores == sorted(res.scores, reverse=True)
        assert res.matches[0].tags["scene"] == shapes.scene_key(target)


def test_grpc_hybrid_queries_are_served(served, shapes):
    triplets = shapes.triplets[:N_TRIPLETS]
    queries = [QueryDoc(image=shapes.image_path(t["reference"]).read_bytes(), text=t["caption"], reference_id=t["reference"])
               for t in triplets]
    results = search(served["client"], queries, limit=10)
    for t, res in zip(triplets, results):
        assert res.error is None and len(res.matches) == 10
        assert t["reference"] not in [m.id for m in res.matches]  # exclude_reference is on by default
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip(f"bundled model {DEFAULT_CHECKPOINT} absent: hybrid retrieval quality is checked once it exists")
    hits = [any(shapes.scene_key(m.id) == shapes.scene_key(t["target"]) for m in res.matches)
            for t, res in zip(triplets, results)]
    assert hits[0] and sum(hits) >= 0.7 * len(hits), f"target within top 10 for {sum(hits)}/{len(hits)} queries"


def test_a_search_by_gallery_id_equals_a_search_with_the_original_image(served, shapes):
    """The gateway looks the reference's features up in the index (docs/serving.md, "Search by gallery id")."""
    triplets = shapes.triplets[:N_TRIPLETS]
    by_image = [{"image": data_uri(shapes.image_path(t["reference"]).read_bytes()), "text": t["caption"],
                 "reference_id": t["reference"]} for t in triplets]
    by_id = [{"text": t["caption"], "reference_id": t["reference"]} for t in triplets]
    with_image = http_post(served["http_url"], "/search", {"data": by_image, "parameters": {"limit": 10}})["data"]
    with_id = http_post(served["http_url"], "/search", {"data": by_id, "parameters": {"limit": 10}})["data"]
    for a, b in zip(with_image, with_id):
        assert a["error"] is None and b["error"] is None and len(b["matches"]) == 10
        assert [m["id"] for m in b["matches"]] == [m["id"] for m in a["matches"]]
    # the query vectors themselves (/encode answers them; the gateway resolves ids there too)
    vectors = served["client"].post("/encode", DocList[QueryDoc]([QueryDoc(**q) for q in by_image[:3] + by_id[:3]]),
                                    return_type=DocList[QueryDoc])
    for a, b in zip(vectors[:3], vectors[3:]):
        assert float(np.dot(a.embedding, b.embedding)) >= 0.9999


def test_a_search_by_an_id_not_in_the_gallery_is_a_400_that_names_it(served):
    with pytest.raises(RuntimeError, match=r"HTTP 400: .*reference_id 'no-such-image' is not in the gallery"):
        http_post(served["http_url"], "/search", {"data": [{"text": "make it red", "reference_id": "no-such-image"}]})
    with pytest.raises(BadServer) as err:
        search(served["client"], [QueryDoc(reference_id="nor-this-one")])
    assert "reference_id 'nor-this-one' is not in the gallery" in server_error(err.value)


def test_the_page_gets_thumbnails_by_gallery_id_from_the_index(served, shapes):
    import io

    from PIL import Image

    name = shapes.gallery[3]
    url = served["http_url"] + "/ui/thumbnail?id=" + urllib.parse.quote(name, safe="")
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.headers["Content-Type"] == "image/png"
        thumb = Image.open(io.BytesIO(r.read()))
    assert max(thumb.size) <= 128 and thumb.size == Image.open(shapes.image_path(name)).size  # 64-px shapes: as is
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(served["http_url"] + "/ui/thumbnail?id=no-such-image", timeout=30)
    assert err.value.code == 404


def test_the_page_gets_a_views_thumbnails_in_one_request(served, shapes):
    """POST /ui/thumbnails: one request through the Flow for many ids; only images a browser shows come back."""
    import base64

    from mlcl_executor.ui.routes import thumbnail_image

    client = served["client"]
    dim = count_stats(client).dim
    # a stored thumbnail that is markup (a client may write one straight to the index): never answered
    svg = "data:image/svg+xml;base64," + base64.b64encode(b"<svg onload='alert(1)'/>").decode()
    marked = GalleryDoc(id="markup", embedding=np.full(dim, dim ** -0.5, dtype=np.float32), tags={"thumbnail": svg})
    client.post("/index", DocList[GalleryDoc]([marked]), target_executor="indexer", return_type=DocList[GalleryDoc])
    try:
        names = shapes.gallery[:40]
        answer = http_post(served["http_url"], "/ui/thumbnails", {"ids": names + ["markup", "no-such-image", names[0]]})
        assert sorted(answer) == sorted(names)  # the markup and the unknown id left out, each id once
        for name in names[:3]:
            data, media = thumbnail_image(answer[name])
            assert media == "image/png" and data.startswith(b"\x89PNG")
            with urllib.request.urlopen(served["http_url"] + "/ui/thumbnail?id=" + urllib.parse.quote(name, safe=""),
                                        timeout=30) as r:
                assert r.read() == data  # the same image as the one-id route
        assert http_post(served["http_url"], "/ui/thumbnails", {"ids": ["markup", "no-such-image"]}) == {}
        with pytest.raises(RuntimeError, match=r"HTTP 400: .*at most 400 ids per request"):
            http_post(served["http_url"], "/ui/thumbnails", {"ids": [f"g{i}" for i in range(401)]})
    finally:
        client.post("/delete", DocList[GalleryDoc]([GalleryDoc(id="markup")]), return_type=DocList[GalleryDoc])


def test_grpc_update_and_delete(served, shapes):
    client = served["client"]
    n = count(client)
    victim, other = shapes.gallery[0], shapes.gallery[-1]
    # update: the victim now shows a plain magenta image
    magenta = png_bytes((255, 0, 255), (64, 64))
    answer = client.post("/update", DocList[GalleryDoc]([GalleryDoc(id=victim, image=magenta), GalleryDoc(id="unknown", image=magenta)]),
                         return_type=DocList[GalleryDoc])
    assert answer[0].error is None and "'unknown': not in the index" in answer[1].error
    assert count(client) == n
    assert search(client, [QueryDoc(image=magenta)], limit=1)[0].matches[0].id == victim
    # delete
    answer = client.post("/delete", DocList[GalleryDoc]([GalleryDoc(id=victim), GalleryDoc(id="ghost")]), return_type=DocList[GalleryDoc])
    assert answer[0].error is None and "'ghost': not in the index" in answer[1].error
    assert count(client) == n - 1
    top = search(client, [QueryDoc(image=magenta)], limit=n)[0]
    assert victim not in [m.id for m in top.matches] and len(top.matches) == n - 1
    assert other in [m.id for m in top.matches]


def test_http_index_search_count(served, shapes):
    url = served["http_url"]
    before = count(served["client"])
    extra = [("http-a", png_bytes((250, 250, 0), (50, 50))), ("http-b", png_bytes((0, 120, 255), (50, 50)))]
    answer = http_post(url, "/index", {"data": [{"id": i, "image": data_uri(b)} for i, b in extra]})
    assert [d["error"] for d in answer["data"]] == [None, None]
    answer = http_post(url, "/count", {"data": []})
    assert answer["data"][0]["count"] == before + 2

    t = shapes.triplets[0]
    payload = {"data": [{"image": data_uri(shapes.image_path(t["reference"]).read_bytes()), "text": t["caption"]},
                        {"image": data_uri(extra[1][1])}],
               "parameters": {"limit": 5}}
    answer = http_post(url, "/search", payload)
    hybrid, image_only = answer["data"]
    assert hybrid["error"] is None and len(hybrid["matches"]) == 5 == len(hybrid["scores"])
    assert all(isinstance(m["id"], str) for m in hybrid["matches"])
    assert hybrid["scores"] == sorted(hybrid["scores"], reverse=True)
    assert image_only["matches"][0]["id"] == "http-b"
    assert hybrid["embedding"] is None and hybrid["image"] is None  # answers do not echo payloads
    text_only = http_post(url, "/search", {"data": [{"text": "a large red circle in the center"}], "parameters": {"limit": 3}})
    assert len(text_only["data"][0]["matches"]) == 3


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_bad_documents_are_named_and_the_rest_served(served, protocol, tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes())
    good = png_bytes((0, 120, 255), (50, 50))
    raw = [
        ("good", data_uri(good)),
        ("corrupt", data_uri(b"\x89PNG\r\n\x1a\nnot really")),
        ("outside", str(outside)),
        ("url", "http://127.0.0.1:9/a.png"),
        ("neither", None),
        ("allowed", str(served["roots"] / "allowed.png")),
    ]
    if protocol == "grpc":
        docs = [QueryDoc(id=i, image=img) for i, img in raw]
        docs[1].image = b"\x89PNG\r\n\x1a\nnot really"  # raw bytes from Python
        answer = {d.id: (d.error, len(d.matches)) for d in search(served["client"], docs, limit=3)}
    else:
        data = http_post(served["http_url"], "/search", {"data": [{"id": i, "image": img} for i, img in raw], "parameters": {"limit": 3}})
        answer = {d["id"]: (d["error"], len(d["matches"])) for d in data["data"]}
    assert answer["good"] == (None, 3) and answer["allowed"] == (None, 3)
    assert "document 'corrupt'" in answer["corrupt"][0] and "corrupt" in answer["corrupt"][0]
    assert "document 'outside'" in answer["outside"][0] and "outside the allowed image roots" in answer["outside"][0]
    assert "document 'url'" in answer["url"][0] and "remote URLs are disabled" in answer["url"][0]
    assert answer["neither"][0] == "document 'neither': has neither image nor text"
    assert all(answer[k][1] == 0 for k in ("corrupt", "outside", "url", "neither"))


def test_wrong_width_is_rejected_and_the_flow_keeps_serving(served):
    client = served["client"]
    n = count(client)
    bad = DocList[GalleryDoc]([GalleryDoc(id="w1", embedding=np.ones(7, np.float32))])
    # Straight to the indexer (bypassing the encoder), as a client with its own vectors would.
    with pytest.raises(BadServer) as info:
        client.post("/index", bad, target_executor="indexer", return_type=DocList[GalleryDoc])
    assert server_error(info.value) == "/index rejected, nothing was stored: document 'w1': embedding width 7, the index holds width " + str(count_stats(client).dim)
    assert count(client) == n
    # request-level errors over HTTP: status 500, the message in "detail"
    with pytest.raises(RuntimeError, match=r"HTTP 400: .*parameter .limit. must be between 1 and 1000, got 0"):
        http_post(served["http_url"], "/search", {"data": [{"text": "a red square"}], "parameters": {"limit": 0}})
    # ... and the next good requests are answered
    assert len(search(client, [QueryDoc(text="a red square")], limit=2)[0].matches) == 2
    ok = http_post(served["http_url"], "/search", {"data": [{"text": "a red square"}], "parameters": {"limit": 2}})
    assert len(ok["data"][0]["matches"]) == 2


def test_openapi_lists_the_endpoints(served):
    import json
    import urllib.request

    with urllib.request.urlopen(served["http_url"] + "/openapi.json", timeout=30) as r:
        paths = json.loads(r.read())["paths"]
    assert {"/index", "/search", "/encode", "/update", "/delete", "/clear", "/count"} <= set(paths)
