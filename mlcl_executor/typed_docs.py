"""Our schemas (`GalleryDoc`, `QueryDoc`) as pipeline items, and the pipeline's answers written back to them.

The adapter of the encoder's own endpoints (`/index`, `/update`, `/search`, and
`/encode` when jina parsed the request). A gallery document with an `embedding`
and no image brings its vector (`tags["mlcl_model"]` names its model; the tag is
read). Answers name the model of each vector (vectors.py): a gallery document's
`tags["mlcl_model"]`, a query's `model`; the indexer checks them against the
model its workspace records, and stores no such tag. An encoded gallery image
gets its thumbnail and its feature norm in `tags` (`thumbnails.py`, `reference.py`);
a query's `reference_id` and `reference_features` (a search by gallery id) are read. Answers carry no image
payloads: bytes, tensors and data URIs are dropped, a path or URL is kept (the
indexer stores only that, and clients have their images).
"""

from __future__ import annotations

from typing import List, Sequence, Union

from .errors import doc_name
from .image_source import image_uri
from .levels import level_docs
from .pipeline import Item
from .reference import norm_tags
from .schemas import GalleryDoc, QueryDoc
from .thumbnails import THUMBNAIL_TAG
from .vectors import MODEL_TAG

Doc = Union[GalleryDoc, QueryDoc]


def items(docs: Sequence[Doc]) -> List[Item]:
    """One item per document (a gallery document's own vector and model id included)."""
    out = []
    for i, doc in enumerate(docs):
        item = Item(doc_name(doc.id, i), doc.image, getattr(doc, "text", None))
        if isinstance(doc, GalleryDoc) and doc.image is None and doc.embedding is not None:
            item.vector = doc.embedding
            item.model = doc.tags.pop(MODEL_TAG, None) if isinstance(doc.tags, dict) else None
        elif isinstance(doc, QueryDoc):
            item.reference_id, item.reference = doc.reference_id, doc.reference_features
        out.append(item)
    return out


def answer(docs: Sequence[Doc], results: Sequence[Item]) -> None:
    """Write each item's answer into its document, in place; drop image payloads."""
    for doc, item in zip(docs, results):
        # assign only what changes: every assignment to a document is a pydantic validation
        if doc.embedding is not None or item.embedding is not None:
            doc.embedding = item.embedding
        if doc.error != item.error:
            doc.error = item.error
        if isinstance(doc, QueryDoc):
            if item.embedding is not None and doc.model != item.model:
                doc.model = item.model
            if doc.reference_features is not None:
                doc.reference_features = None  # read, not echoed
        elif item.thumbnail or item.feature_norm or (item.embedding is not None and item.model):
            stored = {THUMBNAIL_TAG: item.thumbnail, MODEL_TAG: item.model if item.embedding is not None else None}
            doc.tags = {**(doc.tags or {}), **{k: v for k, v in stored.items() if v}, **norm_tags(item.feature_norm or None)}
        if item.levels:
            doc.levels = level_docs(item.levels)
        if doc.image is not None and image_uri(doc.image) is None:
            doc.image = None


__all__ = ["answer", "items"]
