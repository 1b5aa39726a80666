"""The only code that changes jina's own behaviour; written against jina 3.33.1.

Fixes, applied once per process by `apply()` (called when the Executors
and the gateway are imported, and by `mlcl serve` before the Flow starts):

1. An empty request (`{"data": []}`) sent to an endpoint with dynamic batching
   waits forever in jina's batch queue (no documents, so no batch is ever
   flushed for it). It is answered at once instead: there is nothing to do.
2. A `RequestError` (a client's mistake) is put in the answer's status like any
   Executor error, but logged on one line without a traceback: jina logs every
   Executor exception with its traceback, which buries real faults in noise.

3. An endpoint an Executor binds only to pass requests on (`@passthrough`,
   e.g. the indexer's `/encode`: a Flow refuses to start unless every endpoint
   of an Executor exists on the next one) returns the request untouched: jina
   would parse its documents and serialise them again, about 8 ms of CPU
   per request of 32 for nothing.
4. An endpoint an Executor can also answer from the request's protobuf
   (`@raw_documents("method")`, the encoder's `/encode`) is handed the
   request's `DocListProto`: `await executor.method(docs, parameters)` edits it
   in place and returns True, or returns False (documents it cannot read that
   way) and jina parses them as usual. Saves the per-document pydantic parse
   and the answer's serialisation, ~5 ms per request of 32 (proto_docs.py).

If jina changes these internals, `apply()` leaves them alone (`check_jina()`
says so in the log) rather than break serving.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, List

from .errors import RequestError

JINA_VERSION_VERIFIED = "3.33.1"
_log = logging.getLogger("mlcl")


def passthrough(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an endpoint function as a pass-through: the worker returns its requests unparsed (fix 3)."""
    fn._mlcl_passthrough = True  # type: ignore[attr-defined]
    return fn


def raw_documents(method: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark an endpoint function whose Executor answers it from the request's protobuf with `method` (fix 4)."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn._mlcl_raw = method  # type: ignore[attr-defined]
        return fn

    return mark


def _bound_fn(executor: Any, endpoint: str) -> Any:
    bound = getattr(executor, "requests", {}).get(endpoint)
    return getattr(bound, "fn", bound)


def _is_passthrough(executor: Any, endpoint: str) -> bool:
    return bool(getattr(_bound_fn(executor, endpoint), "_mlcl_passthrough", False))


def _raw_method(executor: Any, endpoint: str) -> Any:
    name = getattr(_bound_fn(executor, endpoint), "_mlcl_raw", None)
    return getattr(executor, name, None) if name else None


async def _answer_raw(handler: Any, request: Any, endpoint: str) -> bool:
    """Fix 4: True when the Executor answered `request` from its protobuf (the request is the answer)."""
    method = _raw_method(handler._executor, endpoint)
    if method is None:
        return False
    content = request.data._content  # jina 3.33: the DataContentProto behind the lazy DocList
    if content.WhichOneof("documents") == "docs_bytes":
        return False
    from jina.serve.runtimes.worker.request_handling import WorkerRequestHandler

    params = WorkerRequestHandler._parse_params(request.parameters, handler._executor.metas.name)
    if not await method(content.docs, params):
        return False
    request.add_executor(handler.deployment_name)
    return True


def _patched(handle):  # type: ignore[no-untyped-def]
    @functools.wraps(handle)
    async def handle_(self, requests: List[Any], *args: Any, **kwargs: Any) -> Any:
        request = requests[0]
        endpoint = request.header.exec_endpoint
        if len(requests) == 1 and _is_passthrough(self._executor, endpoint):
            return request  # as jina does for an endpoint the Executor does not bind: documents never parsed
        batching = getattr(self, "_batchqueue_config", None) or {}
        if endpoint in batching and len(requests) == 1:
            target = endpoint if endpoint in self._executor.requests else None
            if target is not None:
                self._setup_requests(requests, target)
                if len(request.docs) == 0:
                    request.add_executor(self.deployment_name)
                    return request
        try:
            if len(requests) == 1 and endpoint not in batching and await _answer_raw(self, request, endpoint):
                return request
            return await handle(self, requests, *args, **kwargs)
        except RequestError as exc:
            self.logger.warning(f"{endpoint}: client error: {exc}")
            request.add_exception(exc, self._executor)
            return request

    handle_._mlcl_patched = True  # type: ignore[attr-defined]
    return handle_


#: The keep-alive settings jina means (its own list names them grpc.http1.*, which gRPC ignores).
GRPC_PING_OPTIONS = [
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_time_between_pings_ms", 10000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5000),
]


def _fix_grpc_options() -> None:
    from jina.serve import helper

    original = helper.get_default_grpc_options
    if getattr(original, "_mlcl_patched", False):
        return

    @functools.wraps(original)
    def options() -> List[Any]:
        return original() + GRPC_PING_OPTIONS

    options._mlcl_patched = True  # type: ignore[attr-defined]
    helper.get_default_grpc_options = options


class _ErrorsAsWarnings:
    """A logger whose `error` is `warning` (everything else passes through)."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._logger.warning(msg, *args, **kwargs)


def _fix_head_unavailable_log() -> None:
    import grpc
    from jina.serve.runtimes.head.request_handling import HeaderRequestHandler

    original = HeaderRequestHandler._handle_internalnetworkerror
    if getattr(original, "_mlcl_patched", False):
        return

    @functools.wraps(original)
    def handle(self: Any, err: Any, context: Any, response: Any) -> Any:
        if err.code() != grpc.StatusCode.UNAVAILABLE:
            return original(self, err, context, response)
        logger = self.logger
        self.logger = _ErrorsAsWarnings(logger)  # synchronous call: no other task runs meanwhile
        try:
            return original(self, err, context, response)
        finally:
            self.logger = logger

    handle._mlcl_patched = True  # type: ignore[attr-defined]
    HeaderRequestHandler._handle_internalnetworkerror = handle


def apply() -> bool:
    """Install the fixes (idempotent); False when jina's internals differ."""
    try:
        _fix_head_unavailable_log()
    except (ImportError, AttributeError):  # pragma: no cover - another jina layout
        _log.warning("mlcl: jina's head differs from %s; its start-up log fix not applied", JINA_VERSION_VERIFIED)
    try:
        _fix_grpc_options()
    except (ImportError, AttributeError):  # pragma: no cover - another jina layout
        _log.warning("mlcl: jina's gRPC helper differs from %s; keep-alive fix not applied", JINA_VERSION_VERIFIED)
    try:
        from jina.serve.runtimes.worker.request_handling import WorkerRequestHandler
    except ImportError:  # pragma: no cover - another jina layout
        _log.warning("mlcl: jina's worker layout differs from %s; empty-request fix not applied", JINA_VERSION_VERIFIED)
        return False
    handle = WorkerRequestHandler.handle
    if getattr(handle, "_mlcl_patched", False):
        return True
    if not all(hasattr(WorkerRequestHandler, name) for name in ("_setup_requests",)):
        _log.warning("mlcl: jina's worker layout differs from %s; empty-request fix not applied", JINA_VERSION_VERIFIED)
        return False
    WorkerRequestHandler.handle = _patched(handle)
    return True


__all__ = ["JINA_VERSION_VERIFIED", "apply", "passthrough", "raw_documents"]
