"""MLCLGateway: jina's gRPC + HTTP gateway, with a client's mistake answered as HTTP 400 and the search page.

Named in the Flow YAMLs (`gateway: uses: MLCLGateway`, `py_modules:
mlcl_executor.jina_register`, which imports this module under its package
name, so the class pickles to processes that jina spawns). Everything else is
jina's own gateway, unchanged: the same endpoints, schemas, CORS and `/docs`;
plus the search page at /ui/ (mlcl_executor/ui/, docs/ui.md). What this needs
of jina's internals is in `jina_patches/gateway.py`. This module imports
neither torch nor the model (the gateway process should not pay for them).
"""

from typing import Any, Optional

from jina.serve.runtimes.gateway.http import HTTPGateway

from .jina_patches.gateway import CompositeWithHTTP, install_client_errors
from .jina_patches.gateway_requests import wrap_request_handler
from .request_batching import RequestBatcher, batching_options
from .ui.routes import add_ui_routes
from .ui.routes import ui_settings as check_ui_settings


class MLCLHTTPGateway(HTTPGateway):
    """jina's HTTP gateway with client errors as 400, and the search page under /ui (mlcl_executor/ui/)."""

    def __init__(self, ui_settings: Optional[dict] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ui_settings = ui_settings  # None: no page

    @property
    def app(self) -> Any:  # jina builds a new FastAPI app on each access
        app = super().app
        install_client_errors(app)
        if self.ui_settings is not None:
            add_ui_routes(app, self.ui_settings)
        return app


class MLCLGateway(CompositeWithHTTP):
    """jina's composite gateway (one server per protocol) with `MLCLHTTPGateway` for HTTP.

    `uses_with`: `ui` (serve the search page, default true), `ui_settings`
    (overrides of mlcl_executor/ui/settings.yml), `batching` (concurrent requests
    merged into one through the Flow, see request_batching.py: `endpoints`,
    `max_docs`, `max_in_flight`; `{enabled: false}` turns it off).
    """

    def __init__(self, ui: bool = True, ui_settings: Optional[dict] = None, batching: Optional[dict] = None,
                 **kwargs: Any) -> None:
        self._ui_settings = check_ui_settings(ui_settings) if ui else None  # read by http_server() in super().__init__
        options = batching_options(batching)  # a bad setting fails the start, before any server exists
        super().__init__(**kwargs)
        if options is not None:
            for server in self.servers:
                wrap_request_handler(server, lambda handle: RequestBatcher(handle, **options))

    def http_server(self, **server_kwargs: Any) -> MLCLHTTPGateway:
        return MLCLHTTPGateway(ui_settings=self._ui_settings, **server_kwargs)


__all__ = ["MLCLGateway", "MLCLHTTPGateway"]
