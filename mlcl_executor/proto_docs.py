"""QueryDocs read and answered in their protobuf form: `/encode` without building docarray documents.

A worker normally turns each request into a `DocList[QueryDoc]` (a pydantic
validation per document and field) and serialises the answer again; the cost
is measured in docs/performance.md. `items` reads what the pipeline needs (`id`,
`image`, `text`) from the request's own `DocProto`s, and `answer` writes
`embedding` and `error` into them and drops image payloads, so the answer is the
request, edited in place (jina_patches/worker.py, fix 4).

Only what is certain is read this way: `items` returns None for a request with
a field or a value kind it does not know (an image sent as a tensor, say), and
the worker then parses it as usual. The layout is docarray's wire format
(docarray/proto/docarray.proto, written against docarray 0.41); only its
public protobuf classes are used, and tests/test_proto_docs.py checks that
docarray reads the answers back as it would its own.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import numpy as np
from docarray.proto import DocListProto, NodeProto

from .errors import doc_name
from .image_source import image_uri
from .pipeline import Item
from .schemas import QueryDoc

_FIELDS = frozenset(QueryDoc.__fields__)
# value kinds (NodeProto's `content` oneof) read raw; any other makes the request take the typed path
_IMAGE_KINDS = (None, "blob", "text")
_TEXT_KINDS = (None, "text")


def _value(data: Any, key: str) -> Any:
    if key not in data:
        return None
    node: NodeProto = data[key]
    kind = node.WhichOneof("content")
    return None if kind is None else getattr(node, kind)


def _readable(data: Any) -> bool:
    if not _FIELDS.issuperset(data.keys()) or _value(data, "reference_features") is not None:
        return False  # features looked up by reference_id (a search by gallery id): the typed path reads them
    return all(key not in data or data[key].WhichOneof("content") in kinds
               for key, kinds in (("image", _IMAGE_KINDS), ("text", _TEXT_KINDS), ("error", _TEXT_KINDS),
                                  ("reference_id", _TEXT_KINDS)))


def items(docs: DocListProto) -> Optional[List[Item]]:
    """The request's documents as pipeline items, or None when one holds anything not read here."""
    if not all(_readable(doc.data) for doc in docs.docs):
        return None
    return [Item(doc_name(_value(doc.data, "id"), i), _value(doc.data, "image"), _value(doc.data, "text"),
                 reference_id=_value(doc.data, "reference_id")) for i, doc in enumerate(docs.docs)]


def answer(docs: DocListProto, results: Sequence[Item]) -> None:
    """Each item's `embedding` and `error` into its `DocProto`, in place; image payloads dropped (paths and URLs kept)."""
    for doc, item in zip(docs.docs, results):
        data = doc.data
        if item.embedding is not None or "embedding" in data:  # a vector a client sent is never kept
            node = data["embedding"]
            node.Clear()
            if item.embedding is not None:
                vec = np.ascontiguousarray(item.embedding)
                dense = node.ndarray.dense
                dense.buffer, dense.dtype = vec.tobytes(), vec.dtype.str
                dense.shape.extend(vec.shape)
                node.type = "ndarray"
                if item.model:  # the model id of the vector (QueryDoc.model), as typed_docs answers it
                    data["model"].text = item.model
        if item.error is not None or "error" in data:
            data["error"].Clear()
            if item.error is not None:
                data["error"].text = item.error
        if item.image is not None and image_uri(item.image) is None:
            data["image"].Clear()


__all__ = ["answer", "items"]
