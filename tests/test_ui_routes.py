"""The search page's routes and settings (mlcl_executor/ui/routes.py), on a bare FastAPI app, in process."""

from __future__ import annotations

import base64
import json
import re

import pytest

from helpers import asgi_request
from mlcl_executor.ui.routes import STATIC_DIR, add_ui_routes, ui_settings


def get(app, path: str, query: bytes = b"", method: str = "GET", body: bytes = b""):
    """(status, headers, body) of a request through the ASGI app (no server, no HTTP client needed)."""
    return asgi_request(app, method, path, body=body, query=query)


@pytest.fixture(scope="module")
def app():
    from fastapi import FastAPI

    return add_ui_routes(FastAPI(), ui_settings({"captions": ["make it <b>red</b>"]}))


def test_the_page_and_its_files_are_served_with_a_strict_policy(app):
    status, headers, body = get(app, "/ui/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "img-src 'self' data:" in csp and headers["x-content-type-options"] == "nosniff"
    html = body.decode()
    # nothing from elsewhere: every src/href is this server's
    assert all(u.startswith("/") for u in re.findall(r'(?:src|href)="([^"]+)"', html)), html
    for name, kind in (("dom.js", "text/javascript"), ("app.js", "text/javascript"), ("style.css", "text/css")):
        status, headers, body = get(app, f"/ui/static/{name}")
        assert status == 200 and headers["content-type"].startswith(kind) and body == (STATIC_DIR / name).read_bytes()
    assert get(app, "/ui")[0] in (307, 308)


def test_only_the_packaged_files_are_reachable(app):
    for path in ("/ui/static/index.html", "/ui/static/..%2Froutes.py", "/ui/static/settings.yml", "/ui/static/%2Fetc%2Fpasswd"):
        assert get(app, path)[0] == 404, path


def test_settings_are_served_and_checked(app):
    status, _, body = get(app, "/ui/config.json")
    settings = json.loads(body)
    assert status == 200 and settings["captions"] == ["make it <b>red</b>"] and settings["default_limit"] == 10
    with pytest.raises(ValueError, match=r"unknown ui_settings key\(s\) \['limt'\]"):
        ui_settings({"limt": 5})
    with pytest.raises(ValueError, match="default_limit .20. is above max_limit .10."):
        ui_settings({"default_limit": 20, "max_limit": 10})
    with pytest.raises(ValueError, match="ui_settings.examples must be an integer"):
        ui_settings({"examples": "many"})


def test_the_script_never_writes_html():
    script = "".join((STATIC_DIR / name).read_text() for name in ("dom.js", "app.js", "api.js"))
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script)
    assert "http://" not in script and "https://" not in script


STORED = {"tops/a.png": "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8jpeg").decode(),
          "b": "data:image/png;base64," + base64.b64encode(b"\x89PNG").decode(),
          "svg": "data:image/svg+xml;base64," + base64.b64encode(b"<svg/>").decode(), "text": "not a data uri",
          "broken": "data:image/png;base64,abc"}  # stored thumbnails: two images, and three a browser must not get


@pytest.fixture()
def thumbnail_app():
    """The page's routes over a fake index (STORED); `asked` lists each request the gateway sent it."""
    from fastapi import FastAPI

    asked = []

    async def thumbnails_of(ids):
        asked.append(list(ids))
        return {i: STORED[i] for i in ids if i in STORED}

    app = add_ui_routes(FastAPI(), ui_settings({"thumbnails_per_request": 5}), thumbnails_of)
    return app, asked


def post_ids(app, payload) -> tuple:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, headers, answer = get(app, "/ui/thumbnails", method="POST", body=body)
    return status, headers, json.loads(answer)


def test_the_thumbnail_route_serves_an_image_by_gallery_id_and_nothing_else(thumbnail_app):
    app, asked = thumbnail_app
    status, headers, body = get(app, "/ui/thumbnail", b"id=tops%2Fa.png")
    assert status == 200 and headers["content-type"] == "image/jpeg" and body == b"\xff\xd8jpeg"
    assert headers["x-content-type-options"] == "nosniff"
    for query in (b"id=svg", b"id=text", b"id=broken", b"id=missing", b""):  # only images a browser shows, never markup
        status, _, body = get(app, "/ui/thumbnail", query)
        assert status == 404, query
    assert asked == [["tops/a.png"], ["svg"], ["text"], ["broken"], ["missing"]]  # no id: not asked at all


def test_a_page_views_thumbnails_come_in_one_request_with_images_only(thumbnail_app):
    app, asked = thumbnail_app
    status, headers, answer = post_ids(app, {"ids": ["tops/a.png", "svg", "b", "missing", "tops/a.png"]})
    assert status == 200 and headers["content-type"] == "application/json"
    assert answer == {"tops/a.png": STORED["tops/a.png"], "b": STORED["b"]}  # no SVG, no text, nothing missing
    assert asked == [["tops/a.png", "svg", "b", "missing"]]  # one request to the index, each id once
    assert post_ids(app, {"ids": ["text", "broken", ""]})[2] == {} and post_ids(app, {"ids": []})[2] == {}
    assert asked[1:] == [["text", "broken"]]


def test_the_batched_thumbnail_route_refuses_a_bad_body_or_too_many_ids(thumbnail_app):
    app, asked = thumbnail_app
    status, _, answer = post_ids(app, {"ids": [f"g{i}" for i in range(6)]})
    assert status == 400 and "at most 5 ids per request" in answer["detail"] and "got 6" in answer["detail"]
    for bad in ({"id": "b"}, {"ids": "b"}, {"ids": ["b", 3]}, ["b"], b"ids=b", b""):
        status, _, answer = post_ids(app, bad)
        assert status == 400 and '{"ids": [gallery ids' in answer["detail"], bad
    assert asked == []  # nothing reached the Flow
    with pytest.raises(ValueError, match="ui_settings.thumbnails_per_request must be >= 1"):
        ui_settings({"thumbnails_per_request": 0})
