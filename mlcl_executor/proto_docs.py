"""QueryDocs read and answered in their protobuf form: `/encode` without building docarray documents.

A worker normally turns each request into a `DocList[QueryDoc]` (a pydantic
validation per document and field) and serialises the answer again: ~5 ms of
the encoder's one busy core per request of 32, where the model itself takes
40-70 ms (docs/performance.md). `ProtoQueryDoc` offers the attributes the
encoder reads and writes (`id`, `image`, `text`, `embedding`, `error`) on top of
the request's own `DocProto`, so the answer is the request, edited in place.

Only what is certain is read this way: `wrap` returns None for a request with
a field or a value kind it does not know (an image sent as a tensor, say), and
the worker then parses it as usual. The layout is docarray's wire format
(docarray/proto/docarray.proto, written against docarray 0.41); only its
public protobuf classes are used, and tests/test_proto_docs.py checks that
docarray reads the answers back as it would its own.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
from docarray.proto import DocListProto, DocProto, NodeProto

from .schemas import QueryDoc

_FIELDS = frozenset(QueryDoc.__fields__)
# value kinds (NodeProto's `content` oneof) read raw; any other makes the request take the typed path
_IMAGE_KINDS = (None, "blob", "text")
_TEXT_KINDS = (None, "text")


def _node_value(node: NodeProto):  # type: ignore[no-untyped-def]
    kind = node.WhichOneof("content")
    return None if kind is None else getattr(node, kind)


class ProtoQueryDoc:
    """One `QueryDoc` of a request: fields read from its `DocProto`; `embedding`, `error`, `image` written to it."""

    __slots__ = ("_data", "id", "text", "_image", "_embedding", "_error")

    def __init__(self, proto: DocProto) -> None:
        data = proto.data
        self._data = data
        self.id: str = data["id"].text if "id" in data else ""
        self.text: Optional[str] = _node_value(data["text"]) if "text" in data else None
        self._image = _node_value(data["image"]) if "image" in data else None
        self._embedding: Optional[np.ndarray] = None  # a vector a client sent is never used (queries get a fresh one)
        self._error: Optional[str] = _node_value(data["error"]) if "error" in data else None
        if "embedding" in data and data["embedding"].WhichOneof("content") is not None:
            self._embedding = np.empty(0, np.float32)  # "is set": the encoder resets it

    @property
    def image(self):  # type: ignore[no-untyped-def]
        return self._image

    @image.setter
    def image(self, value) -> None:  # type: ignore[no-untyped-def]
        if value is not None:
            raise ValueError("ProtoQueryDoc: an image can only be dropped from an answer")
        self._image = None
        self._data["image"].Clear()

    @property
    def embedding(self) -> Optional[np.ndarray]:
        return self._embedding

    @embedding.setter
    def embedding(self, value: Optional[np.ndarray]) -> None:
        node = self._data["embedding"]
        node.Clear()
        if value is None:
            self._embedding = None
            return
        vec = np.ascontiguousarray(value)
        self._embedding = vec
        dense = node.ndarray.dense
        dense.buffer, dense.dtype = vec.tobytes(), vec.dtype.str
        dense.shape.extend(vec.shape)
        node.type = "ndarray"

    @property
    def error(self) -> Optional[str]:
        return self._error

    @error.setter
    def error(self, value: Optional[str]) -> None:
        self._error = value
        node = self._data["error"]
        node.Clear()
        if value is not None:
            node.text = value


def wrap(docs: DocListProto) -> Optional[List[ProtoQueryDoc]]:
    """The request's documents as `ProtoQueryDoc`s, or None when one holds anything not read here."""
    for doc in docs.docs:
        data = doc.data
        if not _FIELDS.issuperset(data.keys()):
            return None
        if "image" in data and data["image"].WhichOneof("content") not in _IMAGE_KINDS:
            return None
        if "text" in data and data["text"].WhichOneof("content") not in _TEXT_KINDS:
            return None
        if "error" in data and data["error"].WhichOneof("content") not in _TEXT_KINDS:
            return None
    return [ProtoQueryDoc(doc) for doc in docs.docs]


__all__ = ["ProtoQueryDoc", "wrap"]
