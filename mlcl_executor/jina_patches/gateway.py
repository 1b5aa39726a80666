"""jina's gateway: our own HTTP server inside its composite (gRPC + HTTP) gateway, and a client's mistake as HTTP 400.

- jina's `CompositeGateway` builds one server per protocol from keyword
  arguments it computes itself (`_server_kwargs`); a gateway that wants its own
  HTTP server (the search page, the 400s) replaces that one server with
  `http_server(**those kwargs)`, and its gRPC server with `grpc_server(**those
  kwargs)` when that returns one (the write token, `grpc_guard.py`): `CompositeWithHTTP`.
- jina's HTTP gateway answers every Executor error with HTTP 500 whose `detail`
  is the error status's description, which jina writes as `repr(exc)`. An error
  that is the client's (`RequestError`) becomes 400 with its one-line reason:
  `client_error_reason` reads the reason back from that description.

On a jina that differs the start stops with one line: the gateway could not be
built (or would serve no search page and answer client mistakes with 500).
"""

from __future__ import annotations

import ast
from typing import Any, Optional

from ..errors import REQUEST_ERROR_NAME
from .check import JinaMismatch, require

NEEDS = (
    "jina.serve.runtimes.gateway.composite:CompositeGateway",
    "jina.serve.runtimes.servers.composite:CompositeBaseServer._server_kwargs",
    "jina.serve.runtimes.servers.composite:CompositeServer.__init__ sets servers",
    "jina.serve.runtimes.servers.composite:CompositeServer.__init__ sets gateways",
    "jina.types.request:Request.add_exception",
)
PATCH = "the gateway (search page, HTTP 400 for a client's mistake)"

try:
    from jina.serve.runtimes.gateway.composite import CompositeGateway
except ImportError:  # pragma: no cover - another jina layout
    require(PATCH, NEEDS, stop=True)
    raise JinaMismatch(f"mlcl: {PATCH}: jina's CompositeGateway cannot be imported") from None


def client_error_reason(detail: object) -> Optional[str]:
    """The reason of a `RequestError` from jina's error status description (`repr(exc)`), else None."""
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


def install_client_errors(app: Any) -> None:
    """Answer Executor `RequestError`s with 400 instead of jina's 500 (`app`: the gateway's FastAPI app)."""
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    async def handler(request: Any, exc: HTTPException) -> Any:
        reason = client_error_reason(exc.detail) if exc.status_code == 500 else None
        if reason is not None:
            return JSONResponse(status_code=400, content={"detail": reason})
        return await http_exception_handler(request, exc)

    app.add_exception_handler(HTTPException, handler)


class CompositeWithHTTP(CompositeGateway):
    """jina's composite gateway (one server per protocol) whose HTTP server is `self.http_server(**server_kwargs)`."""

    def http_server(self, **server_kwargs: Any) -> Any:
        raise NotImplementedError

    def grpc_server(self, **server_kwargs: Any) -> Any:
        """The gRPC server to use instead of jina's, or None to keep jina's."""
        return None

    def __init__(self, **kwargs: Any) -> None:
        require(PATCH, NEEDS, stop=True)
        super().__init__(**kwargs)
        for i, server_kwargs in enumerate(self._server_kwargs):
            protocol = str(server_kwargs["runtime_args"]["protocol"]).lower().rsplit(".", 1)[-1]
            if protocol == "http":
                self.servers[i] = self.http_server(**server_kwargs)
            elif protocol == "grpc":
                self.servers[i] = self.grpc_server(**server_kwargs) or self.servers[i]
        self.gateways = self.servers

    @property
    def protocol_names(self) -> list:
        """The protocols this gateway serves, as lower-case names (grpc, http, websocket)."""
        return [str(kw["runtime_args"]["protocol"]).lower().rsplit(".", 1)[-1] for kw in self._server_kwargs]


__all__ = ["CompositeWithHTTP", "NEEDS", "client_error_reason", "install_client_errors"]
