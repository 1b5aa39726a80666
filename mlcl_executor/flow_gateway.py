"""MLCLGateway: jina's gRPC + HTTP gateway, with a client's mistake answered as HTTP 400.

Named in the Flow YAMLs (`gateway: uses: MLCLGateway`, `py_modules:
jina_register.py`, which imports this module under its package name, so the
class pickles to processes that jina spawns).
jina's HTTP gateway answers every Executor error with HTTP 500; an error that
is the client's (an Executor raised `RequestError`: a bad `limit`, a wrong
vector width) becomes 400 with the one-line reason as `detail`. Everything
else is jina's own gateway, unchanged: the same endpoints, schemas, CORS and
`/docs`; plus the search page at /ui/ (mlcl_executor/ui/, docs/ui.md). This
module imports neither torch nor the model (the gateway process should not pay for them).
"""

import ast

from . import jina_compat
from .errors import REQUEST_ERROR_NAME
from .ui.routes import add_ui_routes
from .ui.routes import ui_settings as check_ui_settings

from jina.serve.runtimes.gateway.composite import CompositeGateway
from jina.serve.runtimes.gateway.http import HTTPGateway

jina_compat.apply()  # gRPC keep-alive options (see jina_compat.py)


def client_error_reason(detail: object) -> "str | None":
    """The reason of a `RequestError` from jina's status description (`repr(exc)`), else None."""
    if not isinstance(detail, str):
        return None
    prefix = REQUEST_ERROR_NAME + "("
    if not (detail.startswith(prefix) and detail.endswith(")")):
        return None
    try:
        reason = ast.literal_eval(detail[len(prefix) : -1])
    except (ValueError, SyntaxError):
        return None
    return reason if isinstance(reason, str) else None


def install_client_errors(app) -> None:  # noqa: ANN001 - a FastAPI app
    """Answer Executor `RequestError`s with 400 instead of jina's 500."""
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    async def handler(request, exc: HTTPException):  # noqa: ANN001
        reason = client_error_reason(exc.detail) if exc.status_code == 500 else None
        if reason is not None:
            return JSONResponse(status_code=400, content={"detail": reason})
        return await http_exception_handler(request, exc)

    app.add_exception_handler(HTTPException, handler)


class MLCLHTTPGateway(HTTPGateway):
    """jina's HTTP gateway with client errors as 400, and the search page under /ui (mlcl_executor/ui/)."""

    def __init__(self, ui_settings: "dict | None" = None, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.ui_settings = ui_settings  # None: no page

    @property
    def app(self):  # noqa: ANN201 - jina builds a new FastAPI app on each access
        app = super().app
        install_client_errors(app)
        if self.ui_settings is not None:
            add_ui_routes(app, self.ui_settings)
        return app


class MLCLGateway(CompositeGateway):
    """jina's composite gateway (one server per protocol) with `MLCLHTTPGateway` for HTTP.

    `uses_with`: `ui` (serve the search page, default true), `ui_settings`
    (overrides of mlcl_executor/ui/settings.yml).
    """

    def __init__(self, ui: bool = True, ui_settings: "dict | None" = None, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        settings = check_ui_settings(ui_settings) if ui else None
        for i, server_kwargs in enumerate(self._server_kwargs):
            protocol = str(server_kwargs["runtime_args"]["protocol"]).lower().rsplit(".", 1)[-1]
            if protocol == "http":
                self.servers[i] = MLCLHTTPGateway(ui_settings=settings, **server_kwargs)
        self.gateways = self.servers


__all__ = ["MLCLGateway", "MLCLHTTPGateway", "client_error_reason", "install_client_errors"]
