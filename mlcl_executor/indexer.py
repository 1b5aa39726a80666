"""MLCLIndexer: stores gallery vectors and answers searches (the stores are in `stores/`).

Endpoints of MLCLIndexer (all typed with the schemas of `schemas.py`):

- `/index`  upsert gallery documents by id (documents carrying `error`, e.g. an
  image the encoder could not read, are passed through and not stored);
- `/update` replace documents that exist (unknown ids get `error`);
- `/index_vectors` upsert blocks of precomputed vectors (`VectorsDoc`: ids +
  a matrix, and the feature norms when known, stored as `/index` stores them;
  checked by the encoder, see `vectors.py`), answering `count`;
- `/delete` delete by id (unknown ids get `error`), or every id that starts with
  `parameters: {"prefix": P}` (answering one document per id deleted);
- `/clear`  delete everything; `/count` one `StatsDoc` (count, width, model id);
- `/lookup` the stored features of gallery documents by id (`embedding`), for a
  search by gallery id (`reference.py`; the gateway asks, not clients);
- `/thumbnails` the stored thumbnails of gallery documents by id (`tags.thumbnail`),
  for the page's thumbnail route (`ui/routes.py`);
- `/search` fill `matches` and `scores` (cosine similarity, best first) for every
  query with an `embedding`; parameters (`params.py`) `limit`, `offset`,
  `filter` (`filters.py`), `exclude_reference`, `thumbnails`, `levels` and the
  store's own search options (`ef` of the `hnsw` store).

Write requests are all-or-nothing: a vector of the wrong width (or not finite)
rejects the whole request with an error naming the documents, before anything
is stored. Search problems are per query (`error`), like the encoder's.

The model of the stored vectors (`workspace_model.py`): the workspace records
the model id of the first write into an empty index (the encoder tags its
vectors, `vectors.py`); a write of another model's vectors is rejected and a
query vector of another model gets `error`, naming both ids and the way out.

Sharding: with `shards: N` every endpoint is polled to ALL shards and each
shard keeps only the ids it owns (a stable hash of the id), so an upsert of an
existing id lands on the shard that holds it. `MLCLMerger` (`merger.py`, the
shards' `uses_after`) merges the per-shard top-k into the global top-k and sums
counts: a shard of several answers its first `offset + limit` matches and the
merger cuts the page (`topk.py`).

Thumbnails: with a workspace store (`memory`, `hnsw`) the thumbnail the encoder
puts in a gallery document's tags is kept as a file in the workspace
(`thumbnail_files.py`), not in the store's memory; with `milvus` (or no
workspace) it stays in the stored tags.

Answers carry no server path unless `expose_paths: true`: a match's `uri` that
is a local path (an image sent as a path under the encoder's `image_roots`) and
its `tags.path` (where `mlcl index` read the file) are stored, and filters may
not read them, but they are left out of matches.
"""

# No `from __future__ import annotations`: Jina reads the endpoint annotations at class creation.

import json
import threading
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from docarray import DocList
from jina import Executor, requests

from .blas_threads import BlasThreads
from .errors import RequestError, doc_name
from .filters import Filter, parse_filter
from .image_source import image_uri, is_server_path
from .jina_patches import passthrough
from .levels import drop_level_vectors
from .params import param_bool, param_int
from .reference import norm_tags, stored_features
from .schemas import GalleryDoc, LevelMatchDoc, MatchDoc, QueryDoc, StatsDoc, VectorsDoc
from .stores import BACKENDS, Match, VectorStore, create_store
from .thumbnail_files import ThumbnailFiles
from .thumbnails import THUMBNAIL_TAG, match_tags
from .topk import candidates, reference_to_skip, top_k
from .vectors import MODEL_TAG, norms_problem, vector_problem
from .workspace_model import forget_model, hold_serving_lock, mismatch, record_model, recorded_model

META_FILE = "mlcl-index.json"
PATH_TAG = "path"  # where `mlcl index` read a gallery file (a server path: not shown unless expose_paths)


def shard_of(doc_id: str, shards: int) -> int:
    """The shard that owns an id: stable across processes and restarts (unlike `hash`)."""
    return zlib.crc32(doc_id.encode("utf-8")) % shards if shards > 1 else 0


class MLCLIndexer(Executor):
    """Gallery store and search (`stores/`: an exact matrix store or an hnswlib graph).

    `with:` parameters: `backend` (`memory`, exact, the default; `hnsw`; or
    `milvus`), `dim` (vector width; None: learnt from the first `/index` and
    kept in the workspace), `default_limit`, `max_limit`, `max_offset`,
    `expose_paths` (default false: answers leave out server paths), `hnsw` (options: ef,
    M, ef_construction, max_elements, num_threads, exact_below), `persistence` (fsync,
    compact_ratio, compact_min_bytes: see `stores/logged.py`), `milvus` (uri,
    token, db_name, collection, index_type, index_params, search_params,
    consistency_level: see `stores/milvus.py`), `blas_threads` and
    `blas_min_work` (numpy's BLAS threads per search, see `blas_threads.py`). The memory and hnsw indexes
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
        max_offset: int = 10000,
        expose_paths: bool = False,
        hnsw: Optional[Dict[str, Any]] = None,
        persistence: Optional[Dict[str, Any]] = None,
        milvus: Optional[Dict[str, Any]] = None,
        blas_threads: Union[str, int, None] = "auto",
        blas_min_work: int = 20_000_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.blas = BlasThreads(blas_threads, blas_min_work)
        if backend not in BACKENDS:
            raise ValueError(f"MLCLIndexer: unknown backend {backend!r}; choose one of {BACKENDS}")
        self.backend = backend
        self.default_limit = int(default_limit)
        self.max_limit = int(max_limit)
        self.max_offset = int(max_offset)
        self.expose_paths = bool(expose_paths)
        self.store_options = {"hnsw": dict(hnsw or {}), "milvus": dict(milvus or {})}  # each backend's own section
        self.persistence = dict(persistence or {})
        self.shard_id = int(getattr(self.runtime_args, "shard_id", 0) or 0)
        self.shards = int(getattr(self.runtime_args, "shards", 1) or 1)
        self.workdir: Optional[Path] = Path(self.workspace) if self.workspace else None
        self._store_lock = threading.Lock()  # Jina serialises requests by default; this keeps it true if that changes
        # thumbnails on disk where the index has a workspace of its own (Milvus keeps them in the database)
        self.thumbnails = (ThumbnailFiles(self.workdir, bool(self.persistence.get("fsync", True)))
                           if self.workdir and backend != "milvus" else None)
        self.store: Optional[VectorStore] = None
        if backend == "milvus":
            if self.shards > 1:
                raise ValueError(
                    "MLCLIndexer: backend milvus keeps one collection for the whole index; run the indexer with "
                    f"replicas, not shards (got shards: {self.shards})"
                )
            from .stores.milvus import inspect_target

            # unknown keys, an index the target cannot build: refused now (before the Flow is ready), not at the first /index
            stored = inspect_target(self.workdir, self.store_options["milvus"])
            dim = stored if dim is None else dim
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
        # The model of the stored vectors: recorded beside a local store (workspace_model.py); a milvus index
        # keeps nothing in the workspace, and its record is in the database beside the collection.
        self.model_dir: Optional[Path] = self.workdir if backend != "milvus" else None
        self.model_id: Optional[str] = self._recorded_model()
        # held while serving: `mlcl index --reindex` swaps a fresh index in only when nobody holds it
        self._serving_lock = hold_serving_lock(self.model_dir) if self.model_dir else None
        self.logger.info(
            f"MLCLIndexer: backend {backend}, shard {self.shard_id}/{self.shards}, workspace {self.workdir}, "
            f"dim {self.dim}, {self.store.count() if self.store else 0} documents, model {self.model_id or 'not recorded'}"
        )

    # ------------------------------------------------------------- storage
    def _read_meta(self) -> Optional[Dict[str, Any]]:
        if self.backend == "milvus":
            return None  # the database knows the width; the workspace holds nothing
        if self.workdir and (self.workdir / META_FILE).is_file():
            return json.loads((self.workdir / META_FILE).read_text())
        return None

    def _open_store(self, dim: int) -> None:
        if self.backend != "milvus":  # the database keeps its own width; the workspace holds nothing
            if self.workdir:
                self.workdir.mkdir(parents=True, exist_ok=True)
                (self.workdir / META_FILE).write_text(json.dumps({"backend": self.backend, "dim": dim, "format": 1}))
            else:
                self.logger.warning("MLCLIndexer: no workspace, the index will not survive a restart")
        self.store = create_store(self.backend, dim, self.workdir, self.persistence, **self.store_options)

    def _owns(self, doc_id: str) -> bool:
        return shard_of(doc_id, self.shards) == self.shard_id

    def _check_vectors(self, docs: Sequence[GalleryDoc], endpoint: str) -> List[int]:
        """Positions of the documents to write; raises (nothing written) on a bad vector.

        Every shard checks every document, so a bad request is rejected by all
        shards alike and no shard stores part of it.
        """
        widths: Dict[int, List[str]] = {}
        bad: List[str] = []
        keep: List[int] = []
        for i, doc in enumerate(docs):
            if doc.error:
                continue  # the encoder already explained why; pass it through
            name = doc_name(doc.id, i)
            if doc.embedding is None:
                doc.error = f"{name}: has no embedding (send it through the encoder, or set one)"
            elif not doc.id:
                doc.error = f"{name}: has no id (gallery documents need one to be stored)"
            elif problem := vector_problem(doc.embedding, nonzero=True):
                bad.append(f"{name}: embedding {problem}")
            else:
                widths.setdefault(len(doc.embedding), []).append(name)
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

    def _check_model(self, models: Sequence[Optional[str]], endpoint: str) -> Optional[str]:
        """Reject (nothing stored) vectors of another model than the index's. Returns the model id to record
        once the write is stored: the first model written into an empty index (an index written before model
        ids were recorded adopts none; workspace_model.py)."""
        given = sorted({m for m in models if m})
        if given and self.model_id is None:  # another indexer (a replica) may have recorded it since
            self.model_id = self._recorded_model()
        for model in given:
            if self.model_id is not None and model != self.model_id:
                raise RequestError(f"{endpoint} rejected, nothing was stored: {mismatch(self.model_id, model)}")
        if len(given) > 1:
            raise RequestError(f"{endpoint} rejected, nothing was stored: vectors of models {', '.join(given)} in one request")
        if given and self.model_id is None and (self.store is None or self.store.count() == 0):
            return given[0]
        return None

    def _adopt_model(self, model: Optional[str]) -> None:
        if model is None:
            return
        if self.model_dir is not None:
            record_model(self.model_dir, model)
        elif self.store is not None:
            self.store.record_model(model)
        self.model_id = model

    def _recorded_model(self) -> Optional[str]:
        """The model id recorded for the stored vectors: beside a local store, or in the Milvus database."""
        if self.model_dir is not None:
            return recorded_model(self.model_dir)
        return self.store.recorded_model() if self.store is not None else None

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
        """Answers carry matches, not the query's image payload (/encode returns vectors)."""
        if image_uri(doc.image) is None:
            doc.image = None

    # ------------------------------------------------------------ endpoints
    @requests(on="/index")
    def index(self, docs: DocList[GalleryDoc], **kwargs: Any) -> DocList[GalleryDoc]:
        """Upsert by id. The last of several documents with one id wins."""
        with self._store_lock:
            self._shared_store()
            new_model = self._check_model([d.tags.pop(MODEL_TAG, None) for d in docs if d.tags and not d.error], "/index")
            keep = self._check_vectors(docs, "/index")
            rows = {docs[i].id: self._row(docs[i]) for i in keep if self._owns(docs[i].id)}
            self._upsert(rows)
            self._adopt_model(new_model if keep else None)
        return self._slim(docs)

    @requests(on="/index_vectors")
    def index_vectors(self, docs: DocList[VectorsDoc], **kwargs: Any) -> DocList[VectorsDoc]:
        """Upsert blocks of vectors (ids + matrix); all-or-nothing like /index. Answers carry `count`, not vectors."""
        with self._store_lock:
            self._shared_store()
            new_model = self._check_model([d.model for d in docs if not d.error], "/index_vectors")
            blocks = []
            for i, doc in enumerate(docs):
                doc.count = 0
                if doc.error or doc.embeddings is None:
                    doc.error = doc.error or f"{doc_name(doc.id, i)}: has no embeddings"
                    continue
                problem = vector_problem(doc.embeddings, self.dim, rows=len(doc.ids), nonzero=True)
                if problem:  # the encoder checks blocks too; a Flow without it (or another width) ends here
                    raise RequestError(f"/index_vectors rejected, nothing was stored: {doc_name(doc.id, i)}: "
                                       f"embeddings {problem} (one row per id; the index holds width {self.dim})")
                if doc.norms is not None and (problem := norms_problem(doc.norms, doc.ids)):
                    raise RequestError(f"/index_vectors rejected, nothing was stored: {doc_name(doc.id, i)}: {problem}")
                blocks.append((doc, np.asarray(doc.embeddings, dtype=np.float32)))
            if blocks and self.store is None:
                self.dim = int(blocks[0][1].shape[1])
                self._open_store(self.dim)
            rows = {}
            for doc, vecs in blocks:
                norms = np.asarray(doc.norms, dtype=np.float64).tolist() if doc.norms is not None else [None] * len(vecs)
                for doc_id, vec, norm in zip(doc.ids, vecs, norms):
                    if self._owns(doc_id):  # the norm stored as /index stores it: a search by this id works
                        rows[doc_id] = {"id": doc_id, "embedding": vec, "uri": None, "tags": norm_tags(norm)}
            self._upsert(rows)  # raises (nothing stored) on an empty id or a zero vector
            for doc, _ in blocks:
                doc.count = sum(1 for doc_id in doc.ids if self._owns(doc_id))
            self._adopt_model(new_model if blocks else None)
        for doc in docs:
            doc.embeddings = doc.norms = None
        return docs

    @requests(on="/update")
    def update(self, docs: DocList[GalleryDoc], **kwargs: Any) -> DocList[GalleryDoc]:
        """Replace stored documents; an id that is not stored gets `error` (use /index to add)."""
        with self._store_lock:
            self._shared_store()
            self._check_model([d.tags.pop(MODEL_TAG, None) for d in docs if d.tags and not d.error], "/update")
            keep = self._check_vectors(docs, "/update")
            rows = {}
            for i in keep:
                doc = docs[i]
                if not self._owns(doc.id):
                    continue
                if self.store is not None and self.store.exists(doc.id):
                    rows[doc.id] = self._row(doc)
                else:
                    doc.error = f"{doc_name(doc.id, i)}: not in the index (use /index to add it)"
            self._upsert(rows)
        return self._slim(docs)

    def _upsert(self, rows: Dict[str, Dict[str, Any]]) -> None:
        """Store rows; with thumbnail files, each row's thumbnail goes to its file, not into the store."""
        if not rows or self.store is None:
            return
        thumbnails = {doc_id: row["tags"].pop(THUMBNAIL_TAG, None) for doc_id, row in rows.items()} if self.thumbnails else {}
        self.store.upsert(list(rows.values()))
        if self.thumbnails is not None:
            self.thumbnails.write(thumbnails)  # after the store took the rows: a refused write leaves no file

    @requests(on="/delete")
    def delete(self, docs: DocList[GalleryDoc], parameters: Optional[Dict[str, Any]] = None, **kwargs: Any) -> DocList[GalleryDoc]:
        """Delete by id; only ids matter (images are ignored). Unknown ids get `error`.

        `parameters: {"prefix": P}` (and no documents): delete every stored id that starts with P; the answer
        holds one document per id deleted."""
        prefix = (parameters or {}).get("prefix")
        if prefix is not None:
            return self._delete_prefix(docs, prefix)
        with self._store_lock:
            self._shared_store()
            found: List[str] = []
            for i, doc in enumerate(docs):
                doc.error = None
                if not doc.id:
                    doc.error = f"{doc_name(doc.id, i)}: has no id"
                elif not self._owns(doc.id):
                    continue
                elif self.store is not None and self.store.exists(doc.id):
                    found.append(doc.id)
                else:
                    doc.error = f"{doc_name(doc.id, i)}: not in the index"
            if found and self.store is not None:
                self.store.delete(sorted(set(found)))
                if self.thumbnails is not None:
                    self.thumbnails.delete(found)
        return self._slim(docs)

    def _delete_prefix(self, docs: DocList[GalleryDoc], prefix: Any) -> DocList[GalleryDoc]:
        if not isinstance(prefix, str) or not prefix:
            raise RequestError(f"parameter 'prefix': a non-empty string, got {prefix!r} (/clear deletes everything)")
        if len(docs):
            raise RequestError("parameter 'prefix' goes without documents (name ids, or a prefix)")
        with self._store_lock:
            self._shared_store()
            if self.store is None:
                return DocList[GalleryDoc]()
            try:
                ids = sorted(m.id for m in self.store.documents(prefix))
            except NotImplementedError:
                raise RequestError(f"deleting by prefix is not available with backend {self.backend}: name the ids") from None
            self.store.delete(ids)
            if self.thumbnails is not None:
                self.thumbnails.delete(ids)
        return DocList[GalleryDoc]([GalleryDoc(id=doc_id) for doc_id in ids])

    @requests(on="/clear")
    def clear(self, docs: DocList[GalleryDoc], **kwargs: Any) -> DocList[GalleryDoc]:
        """Delete every stored document (the vector width stays fixed; the model record goes: any model may write)."""
        with self._store_lock:
            self._shared_store()
            if self.store is not None:
                self.store.clear()
            if self.thumbnails is not None:
                self.thumbnails.clear()
            if self.model_dir is not None:
                forget_model(self.model_dir)
            elif self.store is not None:
                self.store.forget_model()
            self.model_id = None
        return self._slim(docs)

    def _shared_store(self) -> None:
        """With `milvus`, open the collection when another process (a replica) created it since this one started:
        every replica then answers the same `/count` and `/search`."""
        if self.store is None and self.backend == "milvus":
            from .stores.milvus import stored_dim

            dim = stored_dim(self.workdir, self.store_options["milvus"])
            if dim is not None:
                self.dim = int(dim)
                self._open_store(self.dim)

    @requests(on="/count")
    def count(self, docs: DocList[GalleryDoc], **kwargs: Any) -> DocList[StatsDoc]:
        with self._store_lock:
            self._shared_store()
        n = self.store.count() if self.store is not None else 0
        return DocList[StatsDoc]([StatsDoc(id="count", count=n, shards={str(self.shard_id): n}, dim=self.dim, model=self.model_id)])

    @requests(on="/lookup")
    def lookup(self, docs: DocList[GalleryDoc], **kwargs: Any) -> DocList[GalleryDoc]:
        """The reference features of gallery documents by id (a search by gallery id, `reference.py`).

        Each id this shard owns gets `embedding` (the stored unit vector x its feature norm), or `error` when
        it is not stored (or was stored without its norm); ids of other shards stay as they came (the merger
        keeps the owner's answer)."""
        with self._store_lock:
            self._shared_store()
            owned = [doc for doc in docs if doc.id and self._owns(doc.id)]
            found = self.store.lookup([doc.id for doc in owned]) if self.store is not None and owned else [None] * len(owned)
        for doc, hit in zip(owned, found):
            name = f"reference_id {doc.id!r}"
            doc.image, doc.tags = None, {}
            doc.embedding, doc.error = stored_features(*hit, name) if hit else (None, f"{name} is not in the gallery")
        return docs

    @requests(on="/thumbnails")
    def thumbnail_lookup(self, docs: DocList[GalleryDoc], **kwargs: Any) -> DocList[GalleryDoc]:
        """The stored thumbnails of gallery documents by id (`tags.thumbnail`; the page's thumbnail route asks).

        Each id this shard owns gets its thumbnail, or `error` when it has none; ids of other shards stay as
        they came (the merger keeps the owner's answer)."""
        with self._store_lock:
            self._shared_store()
        owned = [doc for doc in docs if doc.id and self._owns(doc.id)]
        for doc, uri in zip(owned, self._thumbnails_of([doc.id for doc in owned])):
            doc.image, doc.embedding = None, None
            doc.tags = {THUMBNAIL_TAG: uri} if uri else {}
            doc.error = None if uri else f"gallery id {doc.id!r} has no thumbnail"
        return docs

    def _thumbnails_of(self, ids: List[str]) -> List[Optional[str]]:
        """Each id's thumbnail: its file, else its stored tags (Milvus; an index written before the files)."""
        found = self.thumbnails.read(ids) if self.thumbnails is not None else [None] * len(ids)
        missing = [i for i, uri in enumerate(found) if uri is None]
        if missing and self.store is not None:
            with self._store_lock:
                hits = self.store.lookup([ids[i] for i in missing])
            for i, hit in zip(missing, hits):
                found[i] = hit[1].get(THUMBNAIL_TAG) if hit else None
        return found

    @requests(on="/search")
    def search(self, docs: DocList[QueryDoc], parameters: Optional[Dict[str, Any]] = None, **kwargs: Any) -> DocList[QueryDoc]:
        """Fill `matches` and `scores` (cosine similarity, best first) of each query with an embedding.

        parameters: `limit` (default `default_limit`, at most `max_limit`),
        `offset` (default 0, at most `max_offset`: the matches ranked from
        `offset` on, a page), `filter` (only gallery documents whose tags pass
        it, `filters.py`), `exclude_reference` (default true: leave out the gallery document named
        by the query's `reference_id`), `thumbnails` (default false: matches
        carry `tags.thumbnail`, see thumbnails.py), `levels` (default false:
        each composed query's per-level answers in `levels`, see levels.py), and the
        store's search options (`ef`: the hnsw store's search breadth, 1..100000,
        default from its config).
        """
        limit = param_int(parameters, "limit", self.default_limit, low=1, high=self.max_limit)
        offset = param_int(parameters, "offset", 0, low=0, high=self.max_offset)
        where = self._filter(parameters)
        exclude = param_bool(parameters, "exclude_reference", True)
        thumbnails = param_bool(parameters, "thumbnails", False)
        levels = param_bool(parameters, "levels", False)
        with self._store_lock:
            self._shared_store()
            if self.model_id is None and self.model_dir is None and self.store is not None:
                self.model_id = self._recorded_model()  # a milvus replica: another one may have recorded it since
        options = self.store.check_params(parameters or {}) if self.store is not None else {}
        # What to search: each query's vector, and each of its levels' when asked for; one store call for all.
        targets: List[Any] = []
        vectors: List[np.ndarray] = []
        skips: List[Optional[str]] = []
        for i, doc in enumerate(docs):
            doc.matches, doc.scores = DocList[MatchDoc](), []
            self._slim_query(doc)  # answers carry matches, not the query's vector or image payload
            for level in doc.levels or []:
                level.matches, level.scores = DocList[LevelMatchDoc](), []
            if doc.error:
                continue
            name = doc_name(doc.id, i)
            if doc.embedding is None:
                doc.error = f"{name}: has no embedding (send it through the encoder, or set one)"
                continue
            if self.model_id is not None and doc.model and doc.model != self.model_id:  # the cause, before its width
                doc.error = f"{name}: {mismatch(self.model_id, doc.model)}"
                continue
            if problem := vector_problem(doc.embedding, self.dim):
                doc.error = f"{name}: query vector {problem} (the index holds width {self.dim})"
                continue
            skip = reference_to_skip(doc.reference_id, exclude)
            for target in [doc, *(doc.levels if levels else [])]:
                if target.embedding is not None:
                    targets.append(target)
                    vectors.append(np.asarray(target.embedding, dtype=np.float32))
                    skips.append(skip)
        if targets and self.store is not None:
            with self._store_lock:
                self.blas.for_work(len(vectors) * self.store.count() * self.dim)
                hits = self.store.search(np.stack(vectors), candidates(limit, exclude, offset), where=where, **options)
            # One shard cuts the page; a shard of several answers up to its end and the merger cuts it (topk.py).
            page = (limit, offset) if self.shards == 1 else (offset + limit, 0)
            for target, row_hits, skip in zip(targets, hits, skips):
                self._answer(target, row_hits, *page, skip, thumbnails)
        for doc in docs:
            doc.embedding = None
        drop_level_vectors(docs)
        return docs

    def _filter(self, parameters: Optional[Dict[str, Any]]) -> Optional[Filter]:
        """The request's `filter`; one that reads a server path is refused unless paths are exposed."""
        where = parse_filter((parameters or {}).get("filter"))
        if where is not None and not self.expose_paths and PATH_TAG in where.keys():
            raise RequestError(f"parameter 'filter': tag {PATH_TAG!r} holds server paths, which this index does not "
                               "expose (expose_paths: false)")
        return where

    def _answer(self, target: Any, hits: Sequence[Tuple[Match, float]], limit: int, offset: int,
                skip: Optional[str], thumbnails: bool) -> None:
        """A query's (or one of its levels') `matches` and `scores` from the store's hits."""
        cls = MatchDoc if isinstance(target, QueryDoc) else LevelMatchDoc
        kept = top_k([hits], limit, skip, offset)
        if thumbnails and self.thumbnails is not None and kept:  # the page's matches only: files read, not memory
            kept = [(m._replace(tags={**m.tags, THUMBNAIL_TAG: uri}) if uri else m, s)
                    for (m, s), uri in zip(kept, self._thumbnails_of([m.id for m, _ in kept]))]
        target.matches = DocList[cls]([cls(id=m.id, score=s, **self._visible(m, thumbnails)) for m, s in kept])
        target.scores = [s for _, s in kept]

    def _visible(self, match: Match, thumbnails: bool) -> Dict[str, Any]:
        """A stored document's `uri` and `tags` as a match shows them: no server path unless `expose_paths`."""
        tags = match_tags(match.tags, thumbnails)
        if self.expose_paths:
            return {"uri": match.uri, "tags": tags}
        tags.pop(PATH_TAG, None)
        return {"uri": None if is_server_path(match.uri) else match.uri, "tags": tags}

    @requests(on="/encode")
    @passthrough
    def encode_passthrough(self, docs: DocList[QueryDoc], **kwargs: Any) -> DocList[QueryDoc]:
        """`/encode` only encodes; the indexer passes it through (a Flow must expose every
        endpoint of the encoder on the next Executor too). In a worker the request goes back
        unparsed (`jina_patches/worker.py`); called directly, this returns `docs`."""
        return docs

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        if self._serving_lock is not None:
            self._serving_lock.close()
        super().close()


__all__ = ["MLCLIndexer", "shard_of"]
