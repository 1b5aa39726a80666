"""jina's worker (`WorkerRequestHandler.handle`): four behaviours changed, one wrapper.

1. An empty request (`{"data": []}`) sent to an endpoint with dynamic batching
   waits forever in jina's batch queue (no documents, so no batch is ever
   flushed for it): it is answered at once instead, there is nothing to do.
2. A `RequestError` (a client's mistake) goes into the answer's status like any
   Executor error, but is logged on one line without a traceback: jina logs
   every Executor exception with its traceback, which buries real faults.
3. An endpoint marked `@passthrough` (the indexer's `/encode`: a Flow refuses to
   start unless every endpoint of an Executor exists on the next one) returns
   the request untouched; jina would parse its documents and serialise them again.
4. An endpoint marked `@raw_documents("method")` (the encoder's `/encode`) is
   handed the request's `DocListProto`: `await executor.method(docs, parameters)`
   edits it in place and returns True, or returns False (documents it cannot
   read that way) and jina parses them as usual (`proto_docs.py`).

On a jina that differs (another version, or a name below missing) the start
stops with one line: without fix 1 an empty request hangs its client forever,
which is a broken service rather than a slower one.
"""

from __future__ import annotations

from typing import Any, Callable, List

from ..errors import RequestError
from .check import replace_once, require

_MODULE = "jina.serve.runtimes.worker.request_handling"
NEEDS = (
    f"{_MODULE}:WorkerRequestHandler.handle",
    f"{_MODULE}:WorkerRequestHandler._setup_requests",
    f"{_MODULE}:WorkerRequestHandler._parse_params",
    f"{_MODULE}:WorkerRequestHandler.__init__ sets _batchqueue_config",
    f"{_MODULE}:WorkerRequestHandler.__init__ sets deployment_name",
    f"{_MODULE}:WorkerRequestHandler._load_executor sets _executor",
    "jina.types.request.data:DataRequest._DataContent.__init__ sets _content",
    "jina.types.request.data:DataRequest.add_executor",
    "jina.types.request.data:DataRequest.add_exception",
)


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


def is_passthrough(executor: Any, endpoint: str) -> bool:
    return bool(getattr(_bound_fn(executor, endpoint), "_mlcl_passthrough", False))


def _raw_method(executor: Any, endpoint: str) -> Any:
    name = getattr(_bound_fn(executor, endpoint), "_mlcl_raw", None)
    return getattr(executor, name, None) if name else None


async def _answer_raw(handler: Any, request: Any, endpoint: str) -> bool:
    """Fix 4: True when the Executor answered `request` from its protobuf (the request is the answer)."""
    method = _raw_method(handler._executor, endpoint)
    if method is None:
        return False
    content = request.data._content  # the DataContentProto behind jina's lazy DocList
    if content.WhichOneof("documents") == "docs_bytes":
        return False
    from jina.serve.runtimes.worker.request_handling import WorkerRequestHandler

    params = WorkerRequestHandler._parse_params(request.parameters, handler._executor.metas.name)  # jina's own reading
    if not await method(content.docs, params):
        return False
    request.add_executor(handler.deployment_name)
    return True


def _patched(handle):  # type: ignore[no-untyped-def]
    async def handle_(self, requests: List[Any], *args: Any, **kwargs: Any) -> Any:
        request = requests[0]
        endpoint = request.header.exec_endpoint
        if len(requests) == 1 and is_passthrough(self._executor, endpoint):
            return request  # as jina does for an endpoint the Executor does not bind: documents never parsed
        batching = self._batchqueue_config or {}
        if endpoint in batching and len(requests) == 1 and endpoint in self._executor.requests:
            self._setup_requests(requests, endpoint)
            if len(request.docs) == 0:  # fix 1
                request.add_executor(self.deployment_name)
                return request
        try:
            if len(requests) == 1 and endpoint not in batching and await _answer_raw(self, request, endpoint):
                return request
            return await handle(self, requests, *args, **kwargs)
        except RequestError as exc:  # fix 2
            self.logger.warning(f"{endpoint}: client error: {exc}")
            request.add_exception(exc, self._executor)
            return request

    return handle_


def apply() -> None:
    require("the worker fix (empty requests, client errors, pass-through, raw /encode)", NEEDS, stop=True)
    from jina.serve.runtimes.worker.request_handling import WorkerRequestHandler

    replace_once(WorkerRequestHandler, "handle", _patched)


__all__ = ["NEEDS", "apply", "is_passthrough", "passthrough", "raw_documents"]
