"""Vector stores of MLCLIndexer, and their registry.

The contract is `base.py` (`VectorStore`); `wal.py` is the write-ahead log and
`logged.py` the durability rules of the local stores; `memory.py` is an exact
matrix store, `hnsw.py` an hnswlib store, `milvus.py` a Milvus collection (the
`milvus` extra); `docarray_legacy.py` reads workspaces written by the earlier
docarray-based stores (the only code that knows docarray's internals).

The registry is a table of names, as LAVIS registers its builders by name: a
backend's module is imported only when it is used (pymilvus is optional), and
no store module imports this package or the registry, so nothing imports in a
circle. A new backend: a `VectorStore` subclass in its own module, one line in
`STORES`; the contract test (tests/test_stores.py) is parametrised by name.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any, Dict, Optional, Type

from .base import PERSISTENCE_KEYS, Batch, Hits, Match, VectorStore

#: backend name -> "module:class" (relative to this package)
STORES: Dict[str, str] = {
    "memory": "memory:MemoryStore",
    "hnsw": "hnsw:HnswStore",
    "milvus": "milvus:MilvusStore",
}
BACKENDS = tuple(STORES)


def store_class(backend: str) -> Type[VectorStore]:
    """The store class registered as `backend` (ValueError names the known ones)."""
    if backend not in STORES:
        raise ValueError(f"unknown index backend {backend!r}; choose one of {BACKENDS}")
    module, name = STORES[backend].split(":")
    return getattr(import_module(f".{module}", __name__), name)


def create_store(
    backend: str,
    dim: int,
    workdir: Optional[Path],
    persistence: Optional[Dict[str, Any]] = None,
    **options_by_backend: Optional[Dict[str, Any]],
) -> VectorStore:
    """A store of `backend` for vectors of width `dim`, persisted in `workdir` (None: memory only).

    `persistence`: `fsync` (default true), `compact_ratio` (1.0), `compact_min_bytes`
    (16 MiB), for the stores that keep a log (`logged.py`). Each backend's own options
    come under its name, as in flows/indexer.yml: `hnsw={...}` (see `HnswStore`),
    `milvus={...}` (see `milvus.py`); the other backends' are ignored.
    """
    options = dict(options_by_backend.get(backend) or {})
    return store_class(backend).create(dim, workdir, options, dict(persistence or {}))


__all__ = ["BACKENDS", "PERSISTENCE_KEYS", "STORES", "Batch", "Hits", "Match", "VectorStore", "create_store", "store_class"]
