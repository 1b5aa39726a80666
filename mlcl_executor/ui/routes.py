"""The search page's routes on the Flow's HTTP gateway (`MLCLHTTPGateway` in flow_gateway.py).

    GET /ui/              the page (index.html)
    GET /ui/static/NAME   its scripts and style sheet (a fixed list of packaged files)
    GET /ui/config.json   the page's settings (settings.yml, overridable from the Flow YAML)
    GET /ui/thumbnail?id=ID  a gallery image's thumbnail (the index's `/thumbnails`, through the Flow)
    POST /ui/thumbnails   {"ids": [...]} -> {id: data URI}: a page view's thumbnails in one Flow request
    GET /docs             the API reference (api.html: rendered from /openapi.json, nothing from a CDN)
    GET /favicon.ico      the icon (icon.svg)

`GET /` stays jina's health check (the Flow's readiness probe), so the page
lives under /ui. The page talks to the same gateway's documented API
(`POST /search`, `POST /count`); it sends images only as data URIs read from
the user's file (a gallery image goes by its id), so the encoder's
image-source policy applies unchanged. Thumbnails are served by gallery id:
the index keeps them (in its workspace, `thumbnail_files.py`); the gateway asks
it once per request for all the ids named (one Flow round trip: a page view's
cards cost one, not one each) and answers only image formats a browser shows
(`thumbnail_image`), as bytes for one id or as data URIs for many. A batched
request is a read: `install_write_guard` leaves it open. Imports no torch.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml
from fastapi import Request  # at module level: FastAPI resolves a route's annotations in this module's globals

from ..errors import RequestError
from ..filters import parse_filter

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
SETTINGS_FILE = HERE / "settings.yml"
#: The only files served under /ui/static/ (name -> media type): no request path reaches the file system.
STATIC_FILES = {"app.js": "text/javascript; charset=utf-8", "api.js": "text/javascript; charset=utf-8",
                "dom.js": "text/javascript; charset=utf-8",
                "style.css": "text/css; charset=utf-8"}  # api.js: for /docs
#: What a thumbnail route serves: an image data URI of a format every browser shows (anything else: 404).
THUMBNAIL_URI = re.compile(r"^data:(image/(?:png|jpeg|gif|webp|bmp));base64,([A-Za-z0-9+/=]+)$")
#: The page's batched thumbnail route: a POST that only reads (the write guard leaves it open).
THUMBNAILS_ROUTE = "/ui/thumbnails"
#: A thumbnail changes when its gallery image is updated: the browser asks again each time (it is small).
THUMBNAIL_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
#: FastAPI's own documentation pages load their code from a CDN (blank offline): replaced by /docs (api.html).
CDN_DOC_ROUTES = ("/docs", "/docs/oauth2-redirect", "/redoc")

#: The page may load only what this gateway serves, and show images only from data: URIs.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def ui_settings(overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """settings.yml with `overrides` applied, checked: a bad value fails the gateway's start, naming the key."""
    settings = yaml.safe_load(SETTINGS_FILE.read_text())
    unknown = set(overrides or {}) - set(settings)
    if unknown:
        raise ValueError(f"MLCL gateway: unknown ui_settings key(s) {sorted(unknown)}; known: {sorted(settings)}")
    settings.update(overrides or {})
    if not isinstance(settings["captions"], list):
        raise ValueError(f"MLCL gateway: ui_settings.captions must be a list of texts, got {settings['captions']!r}")
    settings["captions"] = [str(c) for c in settings["captions"]]
    for key, low in (("examples", 0), ("default_limit", 1), ("max_limit", 1), ("thumbnails_per_request", 1)):
        try:
            settings[key] = int(settings[key])
        except (TypeError, ValueError):
            raise ValueError(f"MLCL gateway: ui_settings.{key} must be an integer, got {settings[key]!r}") from None
        if settings[key] < low:
            raise ValueError(f"MLCL gateway: ui_settings.{key} must be >= {low}, got {settings[key]}")
    if settings["default_limit"] > settings["max_limit"]:
        raise ValueError(f"MLCL gateway: ui_settings.default_limit ({settings['default_limit']}) "
                         f"is above max_limit ({settings['max_limit']})")
    settings["title"], settings["examples_text"] = str(settings["title"]), str(settings["examples_text"])
    settings["levels"] = bool(settings["levels"])
    facet, values = settings["facet"], settings["facet_values"]
    if facet is not None:
        try:
            parse_filter({str(facet): {"$exists": True}})  # the one check of a tag name
        except RequestError as exc:
            raise ValueError(f"MLCL gateway: ui_settings.facet: {exc}") from None
        settings["facet"] = str(facet)
    if not isinstance(values, list) or not all(isinstance(v, (str, int, float, bool)) for v in values):
        raise ValueError(f"MLCL gateway: ui_settings.facet_values must be a list of strings or numbers, got {values!r}")
    return settings


def add_api_docs(app: Any) -> Any:
    """Replace FastAPI's /docs and /redoc (Swagger and ReDoc from a CDN) by api.html, which renders /openapi.json."""
    from fastapi.responses import Response

    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in CDN_DOC_ROUTES]
    api_html = (STATIC_DIR / "api.html").read_bytes()
    files = {name: ((STATIC_DIR / name).read_bytes(), STATIC_FILES[name]) for name in ("dom.js", "api.js", "style.css")}

    @app.get("/docs", include_in_schema=False)
    async def _api_docs():
        return Response(api_html, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    # its own copies: /docs works on a gateway without the page (`ui: false`)
    @app.get("/docs/{name}", include_in_schema=False)
    async def _api_docs_file(name: str):
        if name not in files:
            return Response(status_code=404)
        body, media = files[name]
        return Response(body, media_type=media, headers=SECURITY_HEADERS)

    return app


def add_favicon(app: Any) -> Any:
    """GET /favicon.ico: the page's icon (a browser asks for it; a 404 is an error in its console)."""
    from fastapi.responses import Response

    icon = (STATIC_DIR / "icon.svg").read_bytes()

    @app.get("/favicon.ico", include_in_schema=False)
    async def _favicon():
        return Response(icon, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    return app


def thumbnail_image(uri: Optional[str]) -> Optional[Tuple[bytes, str]]:
    """A stored thumbnail's (bytes, media type), or None when it is not an image data URI a browser shows."""
    match = THUMBNAIL_URI.match(uri) if isinstance(uri, str) else None
    if match is None:
        return None
    try:
        return base64.b64decode(match.group(2), validate=True), match.group(1)
    except ValueError:
        return None


ThumbnailsOf = Callable[[List[str]], Awaitable[Dict[str, Optional[str]]]]


def thumbnail_ids(body: Any, most: int) -> List[str]:
    """The gallery ids of a batched thumbnail request (`{"ids": [...]}`), checked; a RequestError names what is wrong."""
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise RequestError(f'{THUMBNAILS_ROUTE} takes a JSON body {{"ids": [gallery ids, as strings]}}')
    if len(ids) > most:
        raise RequestError(f"{THUMBNAILS_ROUTE} takes at most {most} ids per request (ui_settings "
                           f"thumbnails_per_request), got {len(ids)}: split them")
    return ids


def add_ui_routes(app: Any, settings: Dict[str, Any], thumbnails_of: Optional[ThumbnailsOf] = None) -> Any:
    """Mount the page's routes on a FastAPI app (the gateway's); returns the app.

    `thumbnails_of(gallery_ids)`: {id: stored thumbnail (a data URI) or None}, as the Flow's index answers them,
    in one request through the Flow."""
    from fastapi import HTTPException
    from fastapi.responses import JSONResponse, RedirectResponse, Response

    async def shown(ids: Sequence[str]) -> Dict[str, Tuple[str, bytes, str]]:
        """{id: (data URI, bytes, media type)} of the ids whose thumbnail a browser may show (one Flow request)."""
        wanted = list(dict.fromkeys(i for i in ids if i))  # the page's cards repeat ids (fused + levels)
        if not wanted or thumbnails_of is None:
            return {}
        found = await thumbnails_of(wanted)
        out = {}
        for doc_id in wanted:
            image = thumbnail_image(found.get(doc_id))
            if image is not None:
                out[doc_id] = (found[doc_id], *image)
        return out

    index_html = (STATIC_DIR / "index.html").read_bytes()
    static = {name: ((STATIC_DIR / name).read_bytes(), media) for name, media in STATIC_FILES.items()}

    # (No return annotations: FastAPI would look `Response` up in this module's globals.)
    @app.get("/ui", include_in_schema=False)
    async def _ui_redirect():
        return RedirectResponse(url="/ui/")

    @app.get("/ui/", include_in_schema=False)
    async def _ui_page():
        return Response(index_html, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    @app.get("/ui/config.json", include_in_schema=False)
    async def _ui_config():
        return JSONResponse(settings, headers=SECURITY_HEADERS)

    @app.get("/ui/thumbnail", include_in_schema=False)
    async def _ui_thumbnail(id: str = ""):  # noqa: A002 - the query parameter's name
        image = (await shown([id])).get(id)
        if image is None:
            raise HTTPException(status_code=404, detail=f"no thumbnail for gallery id {id!r}")
        return Response(image[1], media_type=image[2], headers=THUMBNAIL_HEADERS)

    most = settings["thumbnails_per_request"]

    @app.post(THUMBNAILS_ROUTE, include_in_schema=False)
    async def _ui_thumbnails(request: Request):
        try:
            body = await request.json()
        except ValueError:
            body = None  # not JSON: answered as a JSON body of the wrong shape
        try:
            ids = thumbnail_ids(body, most)
        except RequestError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return JSONResponse({doc_id: image[0] for doc_id, image in (await shown(ids)).items()}, headers=THUMBNAIL_HEADERS)

    @app.get("/ui/static/{name}", include_in_schema=False)
    async def _ui_static(name: str):
        if name not in static:
            raise HTTPException(status_code=404, detail=f"no such file: {name!r}")
        body, media = static[name]
        return Response(body, media_type=media, headers=SECURITY_HEADERS)

    return app


__all__ = ["SECURITY_HEADERS", "STATIC_FILES", "THUMBNAILS_ROUTE", "add_api_docs", "add_favicon", "add_ui_routes", "thumbnail_ids", "thumbnail_image", "ui_settings"]
