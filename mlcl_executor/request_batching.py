"""Concurrent requests to one endpoint merged into one request through the Flow (the gateway's batching).

Why: a search service meets many clients, each with ONE query. Sent as they come, every query
pays the whole per-request path alone (the gateway's routing, a gRPC hop and a (de)serialisation per
Executor, one small model call, one store call), and the model runs batches of one or two. Here the
gateway merges the requests that wait for the same endpoint with the same parameters into one request
of many documents, sends that through the Flow, and splits the answer back, document by document, so
each Executor sees one request per batch and the model a real batch.

When: as soon as fewer than `max_in_flight` merged requests are on their way, whatever is waiting goes
(after the current event-loop turn, so that requests that arrived together leave together). A lone
client therefore waits for nothing; under load, requests gather while earlier batches are in the
Flow, and batches grow with the load (up to `max_docs` documents). Requests that name a target
Executor, carry their documents as bytes, or go to another endpoint pass through untouched.

The answer of a merged request is split by position: Executors keep the order and the number of the
documents of a request (ours do; a Flow whose Executors do not must not enable batching). Document
ids that repeat across the merged requests are made unique on the way in (and restored on the way
out), because a sharded Flow's merger pairs the shards' answers by id.

This module knows jina's request objects (`DataRequest`, public) but not how they reach it: the hook
into jina's gateway is `jina_patches`'s.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

#: How a merged request's documents are renamed when their ids collide: "<position>~<id>".
_RENAME = "{}~{}"


@dataclass
class _Waiting:
    request: Any  # jina DataRequest
    return_type: Any
    future: "asyncio.Future[Any]"
    size: int


def parameters_key(parameters: Any) -> str:
    """Requests merge only when their parameters are equal (as JSON, keys sorted)."""
    try:
        return json.dumps(parameters, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(parameters)


def request_docs(request: Any) -> Optional[Any]:
    """The request's repeated DocProto, or None when its documents travel as bytes (not merged)."""
    content = request.proto_with_data.data
    if content.WhichOneof("documents") == "docs_bytes":
        return None
    return content.docs.docs


def _doc_id(doc: Any) -> str:
    return doc.data["id"].text if "id" in doc.data else ""


def merge_requests(requests: Sequence[Any], endpoint: str) -> Tuple[Any, List[Optional[List[str]]]]:
    """One DataRequest holding the documents of `requests` in order, and per request the original ids
    of documents that were renamed (None: none were)."""
    from jina.types.request.data import DataRequest

    merged = DataRequest()
    merged.header.exec_endpoint = endpoint
    merged.parameters = requests[0].parameters
    docs = merged.proto_with_data.data.docs.docs
    seen: set = set()
    renamed: List[Optional[List[str]]] = []
    for position, request in enumerate(requests):
        own = request_docs(request)
        ids = [_doc_id(d) for d in own]
        clash = any(i in seen for i in ids) or len(set(ids)) != len(ids)
        seen.update(ids)
        docs.extend(own)
        if clash:
            for k, doc in enumerate(docs[len(docs) - len(own):]):
                doc.data["id"].text = _RENAME.format(position, k)
            renamed.append(ids)
        else:
            renamed.append(None)
    return merged, renamed


def split_response(response: Any, waiting: Sequence[_Waiting], renamed: Sequence[Optional[List[str]]]) -> List[Any]:
    """The merged answer cut back into one answer per request (its own request id, header, routes)."""
    from jina.proto import jina_pb2
    from jina.types.request.data import DataRequest

    whole = response.proto_with_data
    docs = whole.data.docs.docs
    if len(docs) != sum(w.size for w in waiting):
        raise RuntimeError(f"a merged /{whole.header.exec_endpoint.lstrip('/')} answer holds {len(docs)} documents "
                           f"for {sum(w.size for w in waiting)} sent: an Executor changed the number of documents")
    out, start = [], 0
    for item, ids in zip(waiting, renamed):
        proto = jina_pb2.DataRequestProto()
        proto.header.CopyFrom(whole.header)
        proto.header.request_id = item.request.header.request_id
        proto.parameters.CopyFrom(whole.parameters)
        proto.routes.extend(whole.routes)
        part = proto.data.docs.docs
        part.extend(docs[start : start + item.size])
        if ids is not None:
            for doc, original in zip(part, ids):
                doc.data["id"].text = original
        start += item.size
        answer = DataRequest(proto)
        answer.document_array_cls = item.return_type
        out.append(answer)
    return out


#: The gateway's batching unless its `uses_with: batching:` says otherwise (flows/*.yml show them).
DEFAULTS: Dict[str, Any] = {"enabled": True, "endpoints": ["/search"], "max_docs": 64, "max_in_flight": 2}


def batching_options(given: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """`RequestBatcher`'s keyword arguments from a gateway's `batching` setting; None when it is off."""
    unknown = set(given or {}) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"gateway batching: unknown settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    options = {**DEFAULTS, **(given or {})}
    if not options.pop("enabled"):
        return None
    RequestBatcher(lambda **_: None, **options)  # the same checks as at run time, now
    return options


class RequestBatcher:
    """A gateway's request handler (`handle(request=..., return_type=...) -> (future, floating future)`)
    that merges concurrent requests to `endpoints` (see the module docstring)."""

    def __init__(self, handle: Callable[..., Tuple[Any, Any]], endpoints: Iterable[str] = ("/search",),
                 max_docs: int = 64, max_in_flight: int = 2) -> None:
        if max_docs < 1 or max_in_flight < 1:
            raise ValueError(f"batching needs max_docs >= 1 and max_in_flight >= 1, got {max_docs}, {max_in_flight}")
        self._handle = handle
        self.endpoints = frozenset(endpoints)
        self.max_docs, self.max_in_flight = int(max_docs), int(max_in_flight)
        self._waiting: Dict[Tuple[str, str, Any], List[_Waiting]] = {}
        self._in_flight = 0
        self._scheduled = False
        self.batches: List[int] = []  # sizes of the merged requests sent (bounded; for tests and stats)

    def __call__(self, request: Any, return_type: Any = None, **kwargs: Any) -> Tuple[Any, Any]:
        endpoint = request.header.exec_endpoint
        if endpoint not in self.endpoints or request.header.target_executor or kwargs:
            return self._handle(request=request, return_type=return_type, **kwargs)
        docs = request_docs(request)
        if docs is None or not len(docs):
            return self._handle(request=request, return_type=return_type)
        loop = asyncio.get_event_loop()
        future = loop.create_future()
        key = (endpoint, parameters_key(request.parameters), return_type)
        self._waiting.setdefault(key, []).append(_Waiting(request, return_type, future, len(docs)))
        self._schedule(loop)
        return future, None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        while self._waiting and self._in_flight < self.max_in_flight:
            key = next(iter(self._waiting))  # the oldest group first
            queue = self._waiting[key]
            batch, size = [], 0
            while queue and (not batch or size + queue[0].size <= self.max_docs):
                item = queue.pop(0)
                batch.append(item)
                size += item.size
            if not queue:
                del self._waiting[key]
            else:  # the rest of this group goes after the other groups
                self._waiting[key] = self._waiting.pop(key)
            self._send(key[0], batch)

    def _send(self, endpoint: str, batch: List[_Waiting]) -> None:
        self._in_flight += 1
        self.batches = (self.batches + [sum(w.size for w in batch)])[-1000:]
        try:
            if len(batch) == 1:
                merged, renamed = batch[0].request, [None]
            else:
                merged, renamed = merge_requests([w.request for w in batch], endpoint)
            future, _floating = self._handle(request=merged, return_type=batch[0].return_type)
        except BaseException as exc:  # noqa: BLE001 - every waiting client gets it
            self._done(batch, exc)
            return
        future.add_done_callback(lambda f: self._answer(f, batch, renamed))

    def _answer(self, future: "asyncio.Future[Any]", batch: List[_Waiting], renamed: List[Optional[List[str]]]) -> None:
        if future.cancelled():
            self._done(batch, asyncio.CancelledError())
            return
        exc = future.exception()
        if exc is not None:
            self._done(batch, exc)
            return
        try:
            answers = [future.result()] if len(batch) == 1 else split_response(future.result(), batch, renamed)
        except Exception as split_error:  # noqa: BLE001
            self._done(batch, split_error)
            return
        self._done(batch, None, answers)

    def _done(self, batch: List[_Waiting], exc: Optional[BaseException], answers: Optional[List[Any]] = None) -> None:
        self._in_flight -= 1
        for k, item in enumerate(batch):
            if item.future.done():
                continue
            if exc is not None:
                item.future.set_exception(exc)
            else:
                item.future.set_result(answers[k])  # type: ignore[index]
        if self._waiting:
            self._schedule(asyncio.get_event_loop())


__all__ = ["DEFAULTS", "RequestBatcher", "batching_options", "merge_requests", "parameters_key", "request_docs", "split_response"]
