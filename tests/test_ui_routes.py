"""The search page's routes and settings (mlcl_executor/ui/routes.py), on a bare FastAPI app, in process."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from mlcl_executor.ui.routes import STATIC_DIR, add_ui_routes, ui_settings


def get(app, path: str, query: bytes = b""):
    """(status, headers, body) of a GET through the ASGI app (no server, no HTTP client needed)."""
    messages = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        messages.append(message)

    scope = {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": query, "root_path": "", "headers": [],
             "server": ("test", 80), "client": ("test", 1)}
    asyncio.run(app(scope, receive, send))
    start = messages[0]
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in messages[1:])


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


def test_the_thumbnail_route_serves_an_image_by_gallery_id_and_nothing_else():
    import base64

    from fastapi import FastAPI

    stored = {"tops/a.png": "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8jpeg").decode(),
              "svg": "data:image/svg+xml;base64," + base64.b64encode(b"<svg/>").decode(), "text": "not a data uri"}

    async def thumbnail_of(doc_id):
        return stored.get(doc_id)

    app = add_ui_routes(FastAPI(), ui_settings(), thumbnail_of)
    status, headers, body = get(app, "/ui/thumbnail", b"id=tops%2Fa.png")
    assert status == 200 and headers["content-type"] == "image/jpeg" and body == b"\xff\xd8jpeg"
    assert headers["x-content-type-options"] == "nosniff"
    for query in (b"id=svg", b"id=text", b"id=missing", b""):  # only image formats a browser shows, never markup
        status, _, body = get(app, "/ui/thumbnail", query)
        assert status == 404, query
