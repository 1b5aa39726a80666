"""MLCLGateway: jina's gRPC + HTTP gateway, with a client's mistake answered as HTTP 400, the search page,
the write token, CORS only for the origins the Flow names, and searches by gallery id (reference_lookup.py).

Named in the Flow YAMLs (`gateway: uses: MLCLGateway`, `py_modules:
mlcl_executor.jina_register`, which imports this module under its package
name, so the class pickles to processes that jina spawns). Everything else is
jina's own gateway: the same endpoints and schemas; plus the search page at
/ui/ (mlcl_executor/ui/, docs/ui.md) and an API reference at /docs that loads
nothing from elsewhere (jina's Swagger page loads its code from a CDN). What
this needs of jina's internals is in `jina_patches/gateway.py` and
`jina_patches/grpc_guard.py`. This module imports neither torch nor the model
(the gateway process should not pay for them).
"""

from typing import Any, Dict, List, Optional

from jina.serve.runtimes.gateway.http import HTTPGateway

from .jina_patches.gateway import CompositeWithHTTP, install_client_errors
from .jina_patches.gateway_requests import wrap_request_handler
from .jina_patches.grpc_guard import guarded_grpc_server
from .reference_lookup import ReferenceResolver
from .request_batching import RequestBatcher, batching_options
from .thumbnails import THUMBNAIL_TAG
from .ui.routes import THUMBNAILS_ROUTE, add_api_docs, add_favicon, add_ui_routes
from .ui.routes import ui_settings as check_ui_settings
from .write_token import AUTHORIZATION, OPEN_ENDPOINTS, WriteGuard, configured_token

TITLE = "mlcl"
DESCRIPTION = ("Composed image retrieval (a reference image plus a text modifier) with MLCL. Each endpoint is "
               "POST /<endpoint> with {\"data\": [...], \"parameters\": {...}}; see docs/serving.md.")
#: What a browser may send cross-origin, when origins are configured (never credentials).
CORS_METHODS = ["GET", "POST"]
CORS_HEADERS = ["Content-Type", "Authorization"]
READ_METHODS = ("GET", "HEAD", "OPTIONS")
#: Page routes that read by POST (a body holds more ids than a URL): open like the GETs.
READ_ROUTES = (THUMBNAILS_ROUTE,)


class MLCLHTTPGateway(HTTPGateway):
    """jina's HTTP gateway with client errors as 400, the write token, configured CORS, /docs offline, the page."""

    def __init__(self, ui_settings: Optional[dict] = None, guard: Optional[WriteGuard] = None,
                 cors_origins: Optional[List[str]] = None, **kwargs: Any) -> None:
        # jina's own `cors: true` allows every origin *with credentials* (a reflected origin): never let it add that
        # middleware; a Flow's `cors: true` means any origin, without credentials.
        if kwargs.get("cors") and cors_origins is None:
            cors_origins = ["*"]
        kwargs["cors"] = False
        kwargs["title"] = kwargs.get("title") or TITLE
        kwargs["description"] = kwargs.get("description") or DESCRIPTION
        super().__init__(**kwargs)
        self.ui_settings = ui_settings  # None: no page
        self.guard = guard or WriteGuard(None)
        self.cors_origins = list(cors_origins or [])

    @property
    def app(self) -> Any:  # jina builds a new FastAPI app on each access
        app = super().app
        install_client_errors(app)
        add_api_docs(app)
        add_favicon(app)
        if self.ui_settings is not None:
            add_ui_routes(app, self.ui_settings, self.thumbnails_of)
        if self.guard.enabled:
            install_write_guard(app, self.guard)
        if self.cors_origins:
            from fastapi.middleware.cors import CORSMiddleware

            app.add_middleware(CORSMiddleware, allow_origins=self.cors_origins, allow_credentials=False,
                               allow_methods=CORS_METHODS, allow_headers=CORS_HEADERS)
        return app


    async def thumbnails_of(self, ids: List[str]) -> Dict[str, Optional[str]]:
        """Gallery ids' stored thumbnails in one request to the index's `/thumbnails` (with shards the merger
        keeps each id's answer from the shard that owns it); an id without one is left out."""
        from docarray import DocList

        from .schemas import GalleryDoc

        found: Dict[str, Optional[str]] = {}
        async for docs, error in self.streamer.stream(docs=DocList[GalleryDoc]([GalleryDoc(id=i) for i in ids]),
                                                      exec_endpoint="/thumbnails", return_type=DocList[GalleryDoc]):
            if error is None:
                found.update((doc.id, doc.tags.get(THUMBNAIL_TAG)) for doc in docs if not doc.error)
        return found


def install_write_guard(app: Any, guard: WriteGuard) -> None:
    """Answer a request that is not a read, to an endpoint that is not open, without the token with 401."""
    from fastapi.responses import JSONResponse

    @app.middleware("http")
    async def write_guard(request: Any, call_next: Any) -> Any:
        path = request.url.path
        if (request.method not in READ_METHODS and path not in READ_ROUTES and guard.needs_token(path)
                and not guard.allows(request.headers.get(AUTHORIZATION))):
            return JSONResponse(status_code=401, content={"detail": guard.refusal(path)},
                                headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)


class MLCLGateway(CompositeWithHTTP):
    """jina's composite gateway (one server per protocol) with `MLCLHTTPGateway` for HTTP and the write token
    checked on gRPC too.

    `uses_with`: `ui` (serve the search page, default true), `ui_settings`
    (overrides of mlcl_executor/ui/settings.yml), `write_token_file` (a file
    whose first line is the write token; `$MLCL_WRITE_TOKEN` wins when set;
    neither: writes are open), `open_endpoints` (what needs no token, default
    /search, /count, /encode), `cors_origins` (origins a browser page may call
    the API from, e.g. [https://shop.example]; default none), `batching`
    (concurrent requests merged into one through the Flow, see
    request_batching.py: `endpoints`, `max_docs`, `max_in_flight`;
    `{enabled: false}` turns it off).
    """

    def __init__(self, ui: bool = True, ui_settings: Optional[dict] = None, write_token_file: Optional[str] = None,
                 open_endpoints: Optional[List[str]] = None, cors_origins: Optional[List[str]] = None,
                 batching: Optional[dict] = None, **kwargs: Any) -> None:
        # read by http_server() / grpc_server() in super().__init__
        self._ui_settings = check_ui_settings(ui_settings) if ui else None
        self._guard = WriteGuard(configured_token(write_token_file), open_endpoints or OPEN_ENDPOINTS)
        if cors_origins is not None and not (isinstance(cors_origins, list) and all(isinstance(o, str) for o in cors_origins)):
            raise ValueError(f"MLCL gateway: cors_origins must be a list of origins, got {cors_origins!r}")
        self._cors_origins = cors_origins
        options = batching_options(batching)  # a bad setting fails the start, before any server exists
        super().__init__(**kwargs)
        others = sorted(set(self.protocol_names) - {"grpc", "http"})
        if self._guard.enabled and others:
            raise ValueError(f"MLCL gateway: the write token guards gRPC and HTTP only; remove {', '.join(others)} "
                             "from the Flow's protocols")
        for server in self.servers:
            if options is not None:
                wrap_request_handler(server, lambda handle: RequestBatcher(handle, **options))
            wrap_request_handler(server, ReferenceResolver)  # outside the batching: searches go out resolved

    def http_server(self, **server_kwargs: Any) -> MLCLHTTPGateway:
        return MLCLHTTPGateway(ui_settings=self._ui_settings, guard=self._guard, cors_origins=self._cors_origins,
                               **server_kwargs)

    def grpc_server(self, **server_kwargs: Any) -> Any:
        return guarded_grpc_server(self._guard, **server_kwargs) if self._guard.enabled else None


__all__ = ["MLCLGateway", "MLCLHTTPGateway", "install_write_guard"]
