"""Typed DocArray v2 schemas of the MLCL Executors (the wire contract of the Flow).

Kept free of `from __future__ import annotations`: pydantic 1 and docarray
resolve these annotations at class creation, and `stored_doc_schema` builds a
class whose vector width is only known at run time.

Over HTTP an `image` is a string (a base64 `data:` URI, a local path, or an
http(s) URL); from Python it may also be raw encoded bytes or a tensor
(HxWxC / CxHxW, uint8 or float in [0, 1]). What a string may point at is
decided by the encoder's image-source policy (see `image_source.py`).
"""

from typing import Any, Dict, List, Optional, Type, Union

from docarray import BaseDoc, DocList
from docarray.typing import AnyTensor, NdArray
from pydantic import Field

#: What an `image` field accepts (see the module docstring).
ImageInput = Union[str, bytes, AnyTensor]


# Defaults are plain values, not default_factory: Jina's HTTP gateway rebuilds the
# models from their JSON schema, where a factory default is invisible and the
# field would arrive as None. (pydantic copies mutable defaults per instance.)


class _Config(BaseDoc.Config):
    # Without smart_union pydantic 1 tries `str` first and would decode PNG bytes
    # into a (broken) string; smart_union keeps bytes as bytes and str as str.
    smart_union = True


class GalleryDoc(BaseDoc):
    """A gallery image. `/index` and `/update` fill `embedding` (unit norm)."""

    image: Optional[ImageInput] = Field(None, description="data URI, path or URL (or bytes/tensor from Python)")
    tags: Dict[str, Any] = Field({}, description="free metadata, stored and returned with matches")
    embedding: Optional[NdArray] = Field(None, description="the gallery vector (set by the encoder)")
    error: Optional[str] = Field(None, description="why this document was not encoded/stored; None when it was")

    Config = _Config


class MatchDoc(BaseDoc):
    """One search result: the stored gallery document (without its vector) and its score."""

    uri: Optional[str] = Field(None, description="the gallery image's path or URL, when it was given as one")
    tags: Dict[str, Any] = {}
    score: Optional[float] = Field(None, description="cosine similarity to the query, higher is better")


class LevelMatchDoc(MatchDoc):
    """A match inside a `LevelDoc`. Its own class: jina builds one schema model per nested
    DocList, and two nested models of one name make its endpoint discovery fail."""


class LevelDoc(BaseDoc):
    """What one fusion level of MLCL alone returns for a query (`/search` with `parameters: {"levels": true}`)."""

    level: str = Field("", description="low (sum), mid (cat) or high (hybrid)")
    embedding: Optional[NdArray] = Field(None, description="this level's query vector (dropped from answers)")
    matches: DocList[LevelMatchDoc] = Field(DocList[LevelMatchDoc](), description="best first")
    scores: List[float] = Field([], description="cosine similarity of each match, best first")


class QueryDoc(BaseDoc):
    """A composed query: a reference `image` and/or a modifier `text`.

    Both -> the fused MLCL query; image only -> find similar images; text
    only -> text-to-image retrieval. `reference_id` names the gallery document
    the reference image is (it is then left out of `matches` by default); sent
    without an image, the indexed image is the reference (`reference.py`).
    """

    image: Optional[ImageInput] = Field(None, description="reference image: data URI, path or URL (or bytes/tensor)")
    text: Optional[str] = Field(None, description="modifier text, e.g. 'make the red circle blue'")
    reference_id: Optional[str] = Field(None, description="gallery id of the reference image, excluded from matches; "
                                        "without an image the indexed image's features are used (a search by id)")
    reference_features: Optional[NdArray] = Field(None, description="the reference image's features, looked up by "
                                                  "reference_id (set by the gateway, dropped from answers)")
    embedding: Optional[NdArray] = Field(None, description="the fused query vector (set by the encoder)")
    model: Optional[str] = Field(None, description="the model id of `embedding` (set by the encoder; the indexer checks it)")
    error: Optional[str] = Field(None, description="why this query was not served; None when it was")
    matches: DocList[MatchDoc] = Field(DocList[MatchDoc](), description="best first")
    scores: List[float] = Field([], description="cosine similarity of each match, best first")
    levels: DocList[LevelDoc] = Field(DocList[LevelDoc](), description="per-level answers, when asked for (`levels`)")

    Config = _Config


class StatsDoc(BaseDoc):
    """The answer of `/count`: one document whose `count` is the number of stored vectors.

    `shards` maps shard id -> count; Jina's reduce merges these dicts across
    shards, and the merger (or a client) sums them.
    """

    count: int = 0
    shards: Dict[str, int] = {}
    dim: Optional[int] = Field(None, description="vector width of the index (None while empty)")
    model: Optional[str] = Field(None, description="the model id of the index's vectors (None: not recorded)")


class VectorsDoc(BaseDoc):
    """A block of precomputed gallery vectors for `/index_vectors` (see `vectors.py`): row i of
    `embeddings` is the vector of `ids[i]`. One document carries many vectors, so a million of them
    cost a few thousand documents on the wire, not a million."""

    ids: List[str] = Field([], description="one id per row of embeddings")
    embeddings: Optional[NdArray] = Field(None, description="(len(ids), dim) float32, from the model named by `model`")
    model: Optional[str] = Field(None, description="the model id of the checkpoint that computed them")
    norms: Optional[NdArray] = Field(None, description="(len(ids),) the norm of each image's features (what a search "
                                     "by gallery id needs, `reference.py`); None: the documents are not searchable by id")
    count: int = Field(0, description="answer: how many rows were stored")
    error: Optional[str] = Field(None, description="why the block was not stored; None when it was")


_STORED_SCHEMAS: Dict[tuple, Type[BaseDoc]] = {}


def stored_doc_schema(dim: int, **embedding_config: Any) -> Type[BaseDoc]:
    """The schema a document index stores: id, uri, tags and a vector of width `dim`.

    `embedding_config` goes to the vector's Field (docarray reads index options
    such as `space`, `ef` or `M` from there).
    """
    key = (dim, tuple(sorted(embedding_config.items())))
    if key not in _STORED_SCHEMAS:

        class StoredDoc(BaseDoc):
            uri: Optional[str] = None
            tags: Dict[str, Any] = Field(default_factory=dict)
            embedding: NdArray[dim] = Field(..., **embedding_config)  # type: ignore[valid-type]

        StoredDoc.__name__ = StoredDoc.__qualname__ = f"StoredDoc{dim}"
        _STORED_SCHEMAS[key] = StoredDoc
    return _STORED_SCHEMAS[key]


__all__ = ["GalleryDoc", "ImageInput", "LevelDoc", "LevelMatchDoc", "MatchDoc", "QueryDoc", "StatsDoc", "VectorsDoc", "stored_doc_schema"]
