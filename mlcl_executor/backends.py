"""Vector stores over docarray's document indexes, with one score convention.

Whatever the backend, `search` returns cosine similarity (higher is better):
- `memory`: `InMemoryExactNNIndex`, exact; its `cosine_sim` scores are
  already similarities. Persisted as one binary file, rewritten atomically
  after every write (fine for the gallery sizes an exact index suits).
- `hnsw`: `HnswDocumentIndex` (hnswlib + SQLite in a work dir, persisted on
  every write by docarray). Its default space is l2; we configure `cosine`,
  whose scores are cosine *distances*, and convert: similarity = 1 - distance.

Both wrap only docarray's public index API except where noted.
"""

from __future__ import annotations

import gc
import os
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

import numpy as np
from docarray import BaseDoc, DocList

from .schemas import stored_doc_schema

BACKENDS = ("memory", "hnsw")

Hits = List[List[Tuple[BaseDoc, float]]]


class VectorStore(ABC):
    """id -> (vector, uri, tags), searched by cosine similarity."""

    name = "abstract"

    def __init__(self, dim: int, workdir: Optional[Path]):
        self.dim = int(dim)
        self.workdir = Path(workdir) if workdir else None
        self.schema: Type[BaseDoc] = self._schema()

    def _schema(self) -> Type[BaseDoc]:
        return stored_doc_schema(self.dim)

    def make_docs(self, rows: Sequence[Dict[str, Any]]) -> DocList:
        return DocList[self.schema]([self.schema(**row) for row in rows])  # type: ignore[index]

    @abstractmethod
    def upsert(self, rows: Sequence[Dict[str, Any]]) -> None:
        """Insert or replace documents (dicts with id, embedding, uri, tags)."""

    @abstractmethod
    def exists(self, doc_id: str) -> bool: ...

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> None:
        """Delete ids that exist (callers filter with `exists`)."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def _search(self, queries: np.ndarray, limit: int) -> Tuple[List[Sequence[BaseDoc]], List[np.ndarray]]: ...

    @abstractmethod
    def _to_similarity(self, scores: np.ndarray) -> np.ndarray: ...

    def search(self, queries: np.ndarray, limit: int) -> Hits:
        """Top-`limit` (doc, cosine similarity) per query row, best first."""
        n = self.count()
        if n == 0 or limit <= 0:
            return [[] for _ in range(len(queries))]
        docs, scores = self._search(np.asarray(queries, dtype=np.float32), min(limit, n))
        out: Hits = []
        for row_docs, row_scores in zip(docs, scores):
            sims = self._to_similarity(np.asarray(row_scores, dtype=np.float64))
            pairs = sorted(zip(row_docs, sims.tolist()), key=lambda p: (-p[1], p[0].id))
            out.append(pairs)
        return out

    @abstractmethod
    def clear(self) -> None: ...

    def close(self) -> None:
        """Release resources (writes are already durable)."""


class MemoryStore(VectorStore):
    name = "memory"

    def __init__(self, dim: int, workdir: Optional[Path]):
        from docarray.index import InMemoryExactNNIndex

        super().__init__(dim, workdir)
        self._cls = InMemoryExactNNIndex[self.schema]  # type: ignore[index]
        self.index = self._cls()
        self.file = self.workdir / "index.bin" if self.workdir else None
        if self.file and self.file.is_file():
            # Load through `index()` (public API) rather than docarray's own file loading.
            stored = DocList[self.schema].load_binary(file=str(self.file))  # type: ignore[index]
            if len(stored):
                self.index.index(stored)

    def _persist(self) -> None:
        if not self.file:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".bin.tmp")
        self.index.persist(file=str(tmp))
        os.replace(tmp, self.file)  # atomic: a crash mid-write keeps the previous file

    def upsert(self, rows: Sequence[Dict[str, Any]]) -> None:
        if rows:
            self.index.index(self.make_docs(rows))
            self._persist()

    def exists(self, doc_id: str) -> bool:
        return self.index._doc_exists(doc_id)  # docarray has no public "contains id"

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            del self.index[list(ids)]
            self._persist()

    def count(self) -> int:
        return self.index.num_docs()

    def _search(self, queries: np.ndarray, limit: int):
        result = self.index.find_batched(queries, search_field="embedding", limit=limit)
        return result.documents, result.scores

    def _to_similarity(self, scores: np.ndarray) -> np.ndarray:
        return scores  # space "cosine_sim": already a similarity

    def clear(self) -> None:
        self.index = self._cls()
        if self.file and self.file.exists():
            self.file.unlink()


class HnswStore(VectorStore):
    name = "hnsw"

    def __init__(self, dim: int, workdir: Optional[Path], **options: Any):
        if workdir is None:
            raise ValueError("the hnsw backend needs a workspace (it persists in it)")
        # `allow_replace_deleted: False`: with True, hnswlib refuses to re-add an id
        # that was deleted before (delete then index the same id again).
        self.options = {"ef": 64, "ef_construction": 200, "M": 16, "max_elements": 1024, "num_threads": 1}
        self.options.update(options)
        self.options.update(space="cosine", allow_replace_deleted=False)
        super().__init__(dim, workdir)
        self._open()

    def _schema(self) -> Type[BaseDoc]:
        return stored_doc_schema(self.dim, **self.options)

    def _open(self) -> None:
        from docarray.index import HnswDocumentIndex

        assert self.workdir is not None
        self.path = self.workdir / "hnsw"
        self.index = HnswDocumentIndex[self.schema](work_dir=str(self.path))  # type: ignore[index]

    def upsert(self, rows: Sequence[Dict[str, Any]]) -> None:
        if rows:
            self.index.index(self.make_docs(rows))

    def exists(self, doc_id: str) -> bool:
        return self.index._doc_exists(doc_id)  # docarray has no public "contains id"

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            del self.index[list(ids)]

    def count(self) -> int:
        return self.index.num_docs()

    def _search(self, queries: np.ndarray, limit: int):
        result = self.index.find_batched(queries, search_field="embedding", limit=limit)
        return result.documents, result.scores

    def _to_similarity(self, scores: np.ndarray) -> np.ndarray:
        return 1.0 - scores  # space "cosine": scores are cosine distances

    def close(self) -> None:
        conn = getattr(self.index, "_sqlite_conn", None)  # no public close in docarray 0.41
        if conn is not None:
            conn.close()
        self.index = None
        gc.collect()

    def clear(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._open()


def create_store(backend: str, dim: int, workdir: Optional[Path], hnsw: Optional[Dict[str, Any]] = None) -> VectorStore:
    if backend == "memory":
        return MemoryStore(dim, workdir)
    if backend == "hnsw":
        return HnswStore(dim, workdir, **(hnsw or {}))
    raise ValueError(f"unknown index backend {backend!r}; choose one of {BACKENDS}")


__all__ = ["BACKENDS", "HnswStore", "MemoryStore", "VectorStore", "create_store"]
