"""Vector stores of MLCLIndexer: the contract and `create_store` (`base.py`), the write-ahead
log (`wal.py`) and durability rules (`logged.py`), an exact matrix store (`memory.py`), an
hnswlib store (`hnsw.py`), and the reader of workspaces written by the earlier docarray-based
stores (`docarray_legacy.py`, the only code that knows docarray's internals)."""

from .base import BACKENDS, PERSISTENCE_KEYS, Batch, Hits, Match, VectorStore, create_store

__all__ = ["BACKENDS", "PERSISTENCE_KEYS", "Batch", "Hits", "Match", "VectorStore", "create_store"]
