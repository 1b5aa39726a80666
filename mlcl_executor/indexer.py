"""MLCLIndexer: stores gallery vectors and answers searches (the stores are in `stores/`).

Endpoints of MLCLIndexer (all typed with the schemas of `schemas.py`):

- `/index`  upsert gallery documents by id (documents carrying `error`, e.g. an
  image the encoder could not read, are passed through and not stored);
- `/update` replace documents that exist (unknown ids get `error`);
- `/index_vectors` upsert blocks of precomputed vectors (`VectorsDoc`: ids +
  a matrix; checked by the encoder, see `vectors.py`), answering `count`;
- `/delete` delete by id (unknown ids get `error`);
- `/clear`  delete everything; `/count` one `StatsDoc`;
- `/search` fill `matches` and `scores` (cosine similarity, best first) for every
  query with an `embedding`; parameters `limit`, `exclude_reference` and the
  store's own search options (`ef` of the `hnsw` store).

Write requests are all-or-nothing: a vector of the wrong width (or not finite)
rejects the whole request with an error naming the documents, before anything
is stored. Search problems are per query (`error`), like the encoder's.

Sharding: with `shards: N` every endpoint is polled to ALL shards and each
shard keeps only the ids it owns (a stable hash of the id), so an upsert of an
existing id lands on the shard that holds it. `MLCLMerger` (`merger.py`, the
shards' `uses_after`) merges the per-shard top-k into the global top-k and sums counts.
"""

# No `from __future__ import annotations`: Jina reads the endpoint annotations at class creation.

import json
import threading
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from docarray import DocList
from jina import Executor, requests

from . import jina_compat
from .errors import RequestError
from .stores import BACKENDS, VectorStore, create_store
from .image_source import image_uri
from .levels import drop_level_vectors, merge_levels, search_levels
from .schemas import GalleryDoc, MatchDoc, QueryDoc, StatsDoc, VectorsDoc
from .thumbnails import match_tags

META_FILE = "mlcl-index.json"

jina_compat.apply()  # empty requests answered at once; client errors without tracebacks


def doc_name(doc: Any, position: int) -> str:
    return f"document {doc.id!r}" if doc.id else f"document #{position} (no id)"


def shard_of(doc_id: str, shards: int) -> int:
    """The shard that owns an id: stable across processes and restarts (unlike `hash`)."""
    return zlib.crc32(doc_id.encode("utf-8")) % shards if shards > 1 else 0


def _param_int(parameters: Dict[str, Any], key: str, default: int) -> int:
    """An integer request parameter; a client error (not a server fault) when it is not one."""
    value = parameters.get(key, default)
    if isinstance(value, bool) or value is None:
        raise RequestError(f"parameter {key!r} must be an integer, got {value!r}")
    if isinstance(value, float):  # JSON/protobuf numbers arrive as floats
        if not value.is_integer():
            raise RequestError(f"parameter {key!r} must be an integer, got {value!r}")
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise RequestError(f"parameter {key!r} must be an integer, got {value!r}") from None


def _param_bool(parameters: Dict[str, Any], key: str, default: bool) -> bool:
    value = parameters.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.strip().lower() in ("1", "true", "yes", "on")
    raise RequestError(f"parameter {key!r} must be true or false, got {value!r}")


def _param_limit(parameters: Dict[str, Any], default: int, maximum: int) -> int:
    limit = _param_int(parameters, "limit", default)
    if not 1 <= limit <= maximum:
        raise RequestError(f"parameter 'limit' must be between 1 and {maximum}, got {limit}")
    return limit


class MLCLIndexer(Executor):
    """Gallery store and search (`stores/`: an exact matrix store or an hnswlib graph).

    `with:` parameters: `backend` (`memory`, exact, the default; `hnsw`; or
    `milvus`), `dim` (vector width; None: learnt from the first `/index` and
    kept in the workspace), `default_limit`, `max_limit`, `hnsw` (options: ef,
    M, ef_construction, max_elements, num_threads), `persistence` (fsync,
    compact_ratio, compact_min_bytes: see `stores/logged.py`), `milvus` (uri,
    token, db_name, collection, index_type, index_params, search_params,
    consistency_level: see `stores/milvus.py`). The memory and hnsw indexes
    live in the Executor's workspace (per shard) and survive restarts and
    crashes: each write is appended to a log (flushed, fsync'ed) before it is
    acknowledged; snapshots are written at compaction and on close.

    With `backend: milvus` the database holds everything (vectors, width,
    persistence) and the indexer holds nothing: run it with `replicas`, not
    `shards` (Milvus shards and replicates the collection itself).
    """

    def __init__(
        self,
        backend: str = "memory",
        dim: Optional[int] = None,
        default_limit: int = 10,
        max_limit: int = 1000,
        hnsw: Optional[Dict[str, Any]] = None,
        persistence: Optional[Dict[str, Any]] = None,
        milvus: Optional[Dict[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if backend not in BACKENDS:
            raise ValueError(f"MLCLIndexer: unknown backend {backend!r}; choose one of {BACKENDS}")
        self.backend = backend
        self.default_limit = int(default_limit)
        self.max_limit = int(max_limit)
        self.hnsw_options = dict(hnsw or {})
        self.persistence = dict(persistence or {})
        self.milvus_options = dict(milvus or {})
        self.shard_id = int(getattr(self.runtime_args, "shard_id", 0) or 0)
        self.shards = int(getattr(self.runtime_args, "shards", 1) or 1)
        self.workdir: Optional[Path] = Path(self.workspace) if self.workspace else None
        self._store_lock = threading.Lock()  # Jina serialises requests by default; this keeps it true if that changes
        self.store: Optional[VectorStore] = None
        if backend == "milvus":
            if self.shards > 1:
                raise ValueError(
                    "MLCLIndexer: backend milvus keeps one collection for the whole index; run the indexer with "
                    f"replicas, not shards (got shards: {self.shards})"
                )
            from .stores.milvus import milvus_options, stored_dim

            milvus_options(self.milvus_options)  # unknown keys fail now, not at the first /index
            if dim is None:
                dim = stored_dim(self.workdir, self.milvus_options)
        meta = self._read_meta()
        if meta:
            if meta["backend"] != backend:
                raise ValueError(
                    f"MLCLIndexer: workspace {self.workdir} holds a {meta['backend']!r} index but the "
                    f"configured backend is {backend!r} (use another workspace, or clear it)"
                )
            if dim is not None and int(dim) != int(meta["dim"]):
                raise ValueError(
                    f"MLCLIndexer: workspace {self.workdir} holds vectors of width {meta['dim']} but dim: {dim} "
                    "is configured (a different model needs its own workspace)"
                )
            dim = int(meta["dim"])
        self.dim: Optional[int] = int(dim) if dim is not None else None
        if self.dim is not None:
            self._open_store(self.dim)
        self.logger.info(
            f"MLCLIndexer: backend {backend}, shard {self.shard_id}/{self.shards}, workspace {self.workdir}, "
            f"dim {self.dim}, {self.store.count() if self.store else 0} documents"
        )

    # ------------------------------------------------------------- storage
    def _read_meta(self) -> Optional[Dict[str, Any]]:
        if self.backend == "milvus":
            return None  # the database knows the width; the workspace holds nothing
        if self.workdir and (self.workdir / META_FILE).is_file():
            return json.loads((self.workdir / META_FILE).read_text())
        return None

    def _open_store(self, dim: int) -> None:
        if self.backend == "milvus":
            self.store = create_store(self.backend, dim, self.workdir, milvus=self.milvus_options)
            return
        if self.workdir:
            self.workdir.mkdir(parents=True, exist_ok=True)
            (self.workdir / META_FILE).write_text(json.dumps({"backend": self.backend, "dim": dim, "format": 1}))
        else:
            self.logger.warning("MLCLIndexer: no workspace, the index will not survive a restart")
        self.store = create_store(self.backend, dim, self.workdir, self.hnsw_options, self.persistence)

    def _owns(self, doc_id: str) -> bool:
        return shard_of(doc_id, self.shards) == self.shard_id

    def _check_vectors(self, docs: Sequence[GalleryDoc], endpoint: str) -> List[int]:
        """Positions of the documents to write; raises (nothing written) on a bad vector.

        Every shard checks every document, so a bad request is rejected by all
        shards alike and no shard stores part of it.
        """
        widths = {}
        bad: List[str] = []
        keep: List[int] = []
        for i, doc in enumerate(docs):
            if doc.error:
                continue  # the encoder already explained why; pass it through
            if doc.embedding is None:
                doc.error = f"{doc_name(doc, i)}: has no embedding (send it through the encoder, or set one)"
                continue
            if not doc.id:
                doc.error = f"{doc_name(doc, i)}: has no id (gallery documents need one to be stored)"
                continue
            vec = np.asarray(doc.embedding)
            width = vec.shape[-1] if vec.ndim else 0
            if vec.ndim != 1:
                bad.append(f"{doc_name(doc, i)} has an embedding of shape {tuple(vec.shape)} (expected a vector)")
            elif not np.isfinite(vec).all():
                bad.append(f"{doc_name(doc, i)} has NaN or infinite values in its embedding")
            elif not vec.any():
                bad.append(f"{doc_name(doc, i)} has an all-zero embedding (no direction to compare)")
            else:
                widths.setdefault(width, []).append(doc_name(doc, i))
                keep.append(i)
        expected = self.dim if self.dim is not None else (max(widths, key=lambda w: len(widths[w])) if widths else None)
        for width, names in widths.items():
            if width != expected:
                shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                bad.append(f"{shown}: embedding width {width}, the index holds width {expected}")
        if bad:
            raise RequestError(f"{endpoint} rejected, nothing was stored: " + "; ".join(bad))
        if expected is not None and self.store is None:
            self.dim = int(expected)
            self._open_store(self.dim)
        return keep

    @staticmethod
    def _row(doc: GalleryDoc) -> Dict[str, Any]:
        return {
            "id": doc.id,
            "embedding": np.asarray(doc.embedding, dtype=np.float32),
            "uri": image_uri(doc.image),
            "tags": dict(doc.tags or {}),
        }

    @staticmethod
    def _slim(docs: DocList[GalleryDoc]) -> DocList[GalleryDoc]:
        """What write endpoints answer: ids, tags and errors (no vectors, no image payloads)."""
        for doc in docs:
            doc.embedding = None
            doc.tags = match_tags(doc.tags, keep_thumbnail=False)  # stored, not echoed
            if image_uri(doc.image) is None:
                doc.image = None
        return docs

    @staticmethod
    def _slim_query(doc: QueryDoc) -> None:
        """Answers carry matches, not the query's vector or image payload (/encode returns vectors)."""
        doc.embedding = None
        if image_uri(doc.image) is None:
            doc.image = None

    # ------------------------------------------------------------ endpoints
    @requests(on="/index")
    def index(self, docs: DocList[GalleryDoc], **kwargs: Any) -> DocList[GalleryDoc]:
        """Upsert by id. The last of several documents with one id wins."""
        with self._store_lock:
            keep = self._check_vectors(docs, "/index")
            rows = {docs[i].id: self._row(docs[i]) for i in keep if self._owns(docs[i].id)}
            if rows and self.store is not None:
                self.store.upsert(list(rows.values()))
        return self._slim(docs)

    @requests(on="/index_vectors")
    def index_vectors(self, docs: DocList[VectorsDoc], **kwargs: Any) -> DocList[VectorsDoc]:
        """Upsert blocks of vectors (ids + matrix); all-or-nothing like /index. Answers carry `count`, not vectors."""
        with self._store_lock:
            blocks = []
            for i, doc in enumerate(docs):
                doc.count = 0
                if doc.error or doc.embeddings is None:
                    doc.error = doc.error or f"{doc_name(doc, i)}: has no embeddings"
                    continue
                vecs = np.asarray(doc.embeddings, dtype=np.float32)
                if vecs.ndim != 2 or len(vecs) != len(doc.ids):
                    raise ValueError(f"/index_vectors rejected, nothing was stored: {doc_name(doc, i)} has "
                                     f"embeddings of shape {vecs.shape} for {len(doc.ids)} ids")
                if self.dim is not None and vecs.shape[1] != self.dim:
                    raise ValueError(f"/index_vectors rejected, nothing was stored: {doc_name(doc, i)}: embedding "
                                     f"width {vecs.shape[1]}, the index holds width {self.dim}")
                blocks.append((doc, vecs))
            if blocks and self.store is None:
                self.dim = int(blocks[0][1].shape[1])
                self._open_store(self.dim)
            rows = {}
            for doc, vecs in blocks:
                for doc_id, vec in zip(doc.ids, vecs):
                    if self._owns(doc_id):
                        rows[doc_id] = {"id": doc_id, "embedding": vec, "uri": None, "tags": {}}
            if rows and self.store is not None:
                self.store.upsert(list(rows.values()))  # raises (nothing stored) on an empty id or a zero vector
            for doc, _ in blocks:
                doc.count = sum(1 for doc_id in doc.ids if self._owns(doc_id))
        for doc in docs:
            doc.embeddings = None
        return docs

    @requests(on="/update")
    def update(self, docs: DocList[GalleryDoc], **kwargs: Any) -> DocList[GalleryDoc]:
        """Replace stored documents; an id that is not stored gets `error` (use /index to add)."""
        with self._store_lock:
            keep = self._check_vectors(docs, "/update")
            rows = {}
            for i in keep:
                doc = docs[i]
                if not self._owns(doc.id):
                    continue
                if self.store is not None and self.store.exists(doc.id):
                    rows[doc.id] = self._row(doc)
                else:
                    doc.error = f"{doc_name(doc, i)}: not in the index (use /index to add it)"
            if rows and self.store is not None:
                self.store.upsert(list(rows.values()))
        return self._slim(docs)

    @requests(on="/delete")
    def delete(self, docs: DocList[GalleryDoc], **kwargs: Any) -> DocList[GalleryDoc]:
        """Delete by id; only ids matter (images are ignored). Unknown ids get `error`."""
        with self._store_lock:
            found: List[str] = []
            for i, doc in enumerate(docs):
                doc.error = None
                if not doc.id:
                    doc.error = f"{doc_name(doc, i)}: has no id"
                elif not self._owns(doc.id):
                    continue
                elif self.store is not None and self.store.exists(doc.id):
                    found.append(doc.id)
                else:
                    doc.error = f"{doc_name(doc, i)}: not in the index"
            if found and self.store is not None:
                self.store.delete(sorted(set(found)))
        return self._slim(docs)

    @requests(on="/clear")
    def clear(self, docs: DocList[GalleryDoc], **kwargs: Any) -> DocList[GalleryDoc]:
        """Delete every stored document (the vector width stays fixed)."""
        with self._store_lock:
            if self.store is not None:
                self.store.clear()
        return self._slim(docs)

    @requests(on="/count")
    def count(self, docs: DocList[GalleryDoc], **kwargs: Any) -> DocList[StatsDoc]:
        n = self.store.count() if self.store is not None else 0
        return DocList[StatsDoc]([StatsDoc(id="count", count=n, shards={str(self.shard_id): n}, dim=self.dim)])

    @requests(on="/search")
    def search(self, docs: DocList[QueryDoc], parameters: Optional[Dict[str, Any]] = None, **kwargs: Any) -> DocList[QueryDoc]:
        """Fill `matches` and `scores` (cosine similarity, best first) of each query with an embedding.

        parameters: `limit` (default `default_limit`, at most `max_limit`),
        `exclude_reference` (default true: leave out the gallery document named
        by the query's `reference_id`), `thumbnails` (default false: matches
        carry `tags.thumbnail`, see thumbnails.py), `levels` (default false:
        each composed query's per-level answers in `levels`, see levels.py), and the
        store's search options (`ef`: the hnsw store's search breadth, 1..100000,
        default from its config).
        """
        parameters = parameters or {}
        limit = _param_limit(parameters, self.default_limit, self.max_limit)
        exclude = _param_bool(parameters, "exclude_reference", True)
        thumbnails = _param_bool(parameters, "thumbnails", False)
        levels = _param_bool(parameters, "levels", False)
        try:
            options = self.store.check_params(parameters) if self.store is not None else {}
        except ValueError as exc:  # e.g. a bad `ef`: the client's mistake
            raise RequestError(str(exc)) from None
        rows, vectors = [], []
        for i, doc in enumerate(docs):
            doc.matches, doc.scores = DocList[MatchDoc](), []
            if doc.error:
                continue
            if doc.embedding is None:
                doc.error = f"{doc_name(doc, i)}: has no embedding (send it through the encoder, or set one)"
                continue
            vec = np.asarray(doc.embedding, dtype=np.float32)
            if vec.ndim != 1 or (self.dim is not None and vec.shape[0] != self.dim):
                doc.error = f"{doc_name(doc, i)}: query vector of shape {tuple(vec.shape)}, the index holds width {self.dim}"
                continue
            if not np.isfinite(vec).all():
                doc.error = f"{doc_name(doc, i)}: query vector has NaN or infinite values"
                continue
            rows.append(i)
            vectors.append(vec)
        for doc in docs:
            self._slim_query(doc)
        if not rows or self.store is None:
            drop_level_vectors(docs)
            return docs
        with self._store_lock:
            # One extra hit per query so that dropping the reference still leaves `limit`.
            hits = self.store.search(np.stack(vectors), limit + (1 if exclude else 0), **options)
        for i, row_hits in zip(rows, hits):
            doc = docs[i]
            skip = doc.reference_id if exclude else None
            kept = [(m, s) for m, s in row_hits if m.id != skip][:limit]
            doc.matches = DocList[MatchDoc]([MatchDoc(id=m.id, uri=m.uri, tags=match_tags(m.tags, thumbnails), score=s) for m, s in kept])
            doc.scores = [float(s) for _, s in kept]
        if levels:
            with self._store_lock:
                search_levels(self.store.search, docs, limit, exclude, thumbnails)
        drop_level_vectors(docs)
        return docs

    @requests(on="/encode")
    @jina_compat.passthrough
    def encode_passthrough(self, docs: DocList[QueryDoc], **kwargs: Any) -> DocList[QueryDoc]:
        """`/encode` only encodes; the indexer passes it through (a Flow must expose every
        endpoint of the encoder on the next Executor too). In a worker the request goes back
        unparsed (`jina_compat.passthrough`); called directly, this returns `docs`."""
        return docs

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        super().close()


def __getattr__(name: str) -> Any:
    """`from mlcl_executor.indexer import MLCLMerger` keeps working (the class lives in merger.py)."""
    if name == "MLCLMerger":
        from .merger import MLCLMerger

        return MLCLMerger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MLCLIndexer", "shard_of"]
