"""The gateway's half of a search by gallery id: the reference images' features looked up in the index first.

A `/search` (or `/encode`) whose documents name a `reference_id` and carry neither an image
nor `reference_features` is held at the gateway: the distinct ids go to the
indexer's `/lookup` as one request through the Flow (the encoder has no
`/lookup`, so jina passes it by; shards answer the ids they own and the merger
keeps the owner's answer), each answer is written into its queries'
`reference_features`, and the search goes on as sent. An id the index does
not hold (or holds without its feature norm) ends the request as a client's
mistake (`RequestError`: HTTP 400, the gRPC error status), naming it. Why the
lookup is here and what is stored for it: `reference.py`.

Like `request_batching.py` this knows jina's request objects (`DataRequest`,
public) but not how they reach it (`jina_patches.gateway_requests`); it wraps
the handler that the batching wraps, so a search goes out already resolved
and is batched with others.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from .errors import RequestError
from .request_batching import request_docs

LOOKUP_ENDPOINT = "/lookup"


def _value(data: Any, key: str) -> Optional[Any]:
    """A field of a DocProto's data, or None when it is absent or empty."""
    if key not in data or data[key].WhichOneof("content") is None:
        return None
    return data[key]


def reference_to_look_up(doc: Any) -> Optional[str]:
    """The gallery id whose features a query document needs, or None (it has an image, features, or no id)."""
    data = doc.data
    ref = _value(data, "reference_id")
    if ref is None or not ref.text or _value(data, "image") is not None or _value(data, "reference_features") is not None:
        return None
    return ref.text


def lookup_request(ids: Iterable[str]) -> Any:
    """A `/lookup` DataRequest with one document per id."""
    from jina.types.request.data import DataRequest

    request = DataRequest()
    request.header.exec_endpoint = LOOKUP_ENDPOINT
    docs = request.proto_with_data.data.docs.docs
    for doc_id in ids:
        docs.add().data["id"].text = doc_id
    return request


def read_lookup(answer: Any, ids: List[str]) -> Tuple[Dict[str, Any], List[str]]:
    """The `/lookup` answer as id -> features (a NodeProto), and the problems (one line per id that has none)."""
    found: Dict[str, Any] = {}
    problems: Dict[str, str] = {}
    for doc in request_docs(answer) or []:
        data = doc.data
        doc_id = data["id"].text if "id" in data else ""
        if _value(data, "embedding") is not None:
            found[doc_id] = data["embedding"]
        elif _value(data, "error") is not None:
            problems[doc_id] = data["error"].text
    for doc_id in ids:
        if doc_id not in found and doc_id not in problems:
            problems[doc_id] = f"reference_id {doc_id!r} was not looked up (the Flow's indexer has no {LOOKUP_ENDPOINT})"
    return found, list(problems.values())


class ReferenceResolver:
    """A gateway's request handler (`handle(request=..., return_type=...) -> (future, floating future)`) that
    looks the reference features of `/search` queries up by gallery id before sending them on."""

    def __init__(self, handle: Callable[..., Tuple[Any, Any]], endpoints: Iterable[str] = ("/search", "/encode")) -> None:
        self._handle = handle
        self.endpoints = frozenset(endpoints)

    def __call__(self, request: Any, return_type: Any = None, **kwargs: Any) -> Tuple[Any, Any]:
        wanted: Dict[int, str] = {}
        if request.header.exec_endpoint in self.endpoints and not request.header.target_executor:
            docs = request_docs(request)
            for position, doc in enumerate(docs if docs is not None else []):
                ref = reference_to_look_up(doc)
                if ref is not None:
                    wanted[position] = ref
        if not wanted:
            return self._handle(request=request, return_type=return_type, **kwargs)
        return asyncio.ensure_future(self._resolve(request, return_type, wanted, kwargs)), None

    async def _resolve(self, request: Any, return_type: Any, wanted: Dict[int, str], kwargs: Dict[str, Any]) -> Any:
        from jina.proto import jina_pb2

        ids = list(dict.fromkeys(wanted.values()))
        future, _ = self._handle(request=lookup_request(ids), return_type=return_type)
        answer = await future
        if answer.header.status.code == jina_pb2.StatusProto.ERROR:
            request.header.status.CopyFrom(answer.header.status)  # the index's own failure, as it reported it
            return request
        found, problems = read_lookup(answer, ids)
        if problems:
            request.add_exception(RequestError("; ".join(problems) + " (a search by gallery id needs an indexed "
                                               "image; send the image itself instead)"))
            return request
        docs = request_docs(request)
        for position, ref in wanted.items():
            docs[position].data["reference_features"].CopyFrom(found[ref])
        future, _ = self._handle(request=request, return_type=return_type, **kwargs)
        return await future


__all__ = ["LOOKUP_ENDPOINT", "ReferenceResolver", "lookup_request", "read_lookup", "reference_to_look_up"]
