"""Reading workspaces written by the earlier docarray-based stores (converted once, on open).

Written against docarray 0.41.0. This is the only code of the stores that
knows docarray's internals, and the only store module that imports docarray:

- `memory` wrote `index.bin`: a `DocList[StoredDoc]` in docarray's binary
  format (read with the public `DocList.load_binary`).
- `hnsw` wrote `hnsw/` (docarray's HnswDocumentIndex): `docs_sqlite.db`, a
  table `docs (doc_id INTEGER PRIMARY KEY, data BLOB, ...)` whose `data` is
  each document serialised as a docarray `DocProto` (embeddings included,
  since the index used the cosine space), plus hnswlib graph files that are
  not needed: the vectors are rebuilt into a new graph. The table layout is a
  private detail of docarray 0.41 (`HnswDocumentIndex._send_docs_to_sqlite`).

The write-ahead logs of those versions (`index.log`, `hnsw.log`) have the
record format of `wal.py` and are replayed as they are.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .base import Batch

logger = logging.getLogger(__name__)


def _batch(docs: Iterable[Any], dim: int) -> Batch:
    docs = list(docs)
    vectors = np.empty((len(docs), dim), dtype=np.float32)
    for i, doc in enumerate(docs):
        vectors[i] = np.asarray(doc.embedding, dtype=np.float32).reshape(dim)
    return Batch([d.id for d in docs], vectors, [d.uri for d in docs], [d.tags for d in docs])


def read_memory_snapshot(path: Path, dim: int) -> Batch:
    """The documents of a docarray `index.bin` (InMemoryExactNNIndex snapshot)."""
    from docarray import DocList

    from ..schemas import stored_doc_schema

    docs = DocList[stored_doc_schema(dim)].load_binary(file=str(path))  # type: ignore[misc]
    logger.info(f"{path}: converting {len(docs)} documents of a docarray snapshot")
    return _batch(docs, dim)


def read_hnsw_workspace(path: Path, dim: int) -> Batch:
    """The documents of a docarray HnswDocumentIndex work dir (its SQLite table)."""
    from docarray.proto import DocProto

    from ..schemas import stored_doc_schema

    schema = stored_doc_schema(dim)
    db = path / "docs_sqlite.db"
    if not db.is_file():
        return _batch([], dim)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        docs = [schema.from_protobuf(DocProto.FromString(data)) for (data,) in conn.execute("SELECT data FROM docs")]
    finally:
        conn.close()
    logger.info(f"{path}: converting {len(docs)} documents of a docarray HNSW index")
    return _batch(docs, dim)


__all__ = ["read_hnsw_workspace", "read_memory_snapshot"]
