"""The store contract of MLCLIndexer.

A store maps a document id to (vector, uri, tags) and answers nearest-neighbour
queries by cosine similarity. Every store (`memory`, `hnsw`, and any new
one) implements `VectorStore`:

- `upsert(rows)`: insert or replace, by id. A row is a dict with `id` (str,
  non-empty), `embedding` (a vector of width `dim`; finite, not all zero;
  any norm: stores compare directions), `uri` (str or None) and `tags` (a
  JSON-able dict). The last of several rows with one id wins. A bad row
  raises ValueError before anything is written.
- `delete(ids)`: remove the ids that are stored (others are ignored).
- `exists(id)`, `count()`, `clear()`; `documents(prefix)`: the stored documents
  (`Match`: id, uri, tags) whose id starts with `prefix` ("" : all), for deletion
  by prefix and re-indexing (a store that cannot list them raises NotImplementedError).
- `lookup(ids)`: per id, its stored (unit vector, tags), or None when it is
  not stored (a search by gallery id reads the reference image's vector).
- `search(queries, limit, where=None, **params)`: `queries` is a (n, dim)
  matrix; the answer is one list per query row of `(match, score)` pairs, best
  first, at most `limit` long, where `match` is a `Match` (id, uri, tags) and
  `score` the cosine similarity (higher is better; equal scores in id order).
  `where` (a `filters.Filter`) keeps only the documents whose tags pass it: the
  answer is the best `limit` of those (the meaning is `filters.py`'s).
  `params` are the store's own search options (`SEARCH_PARAMS`, e.g. `ef` of
  `hnsw`), validated by `check_params` (ValueError names the bad one).
- `close()`: release resources; writes were durable already.

Writes are serialised by the caller (MLCLIndexer holds a lock); a store is
not required to be thread-safe, but must work from any thread.

Durability (the `LoggedStore` base in `logged.py`, used by both stores): a
write is appended to a write-ahead log (`wal.py`) and fsync'ed before it is
applied and acknowledged; full snapshots are written at compaction only.

A new backend: subclass `VectorStore` (or `LoggedStore`, implementing its
`_apply_*` / `_write_snapshot` hooks, for a local store) and name it in the
registry (`STORES` in `stores/__init__.py`); `check_params` must ignore request
parameters that are not its own (the indexer passes all of them) and raise
`RequestError` (`params.py`) for a bad one. The reference-model test in
`tests/test_stores.py` is parametrised by backend name.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..filters import Filter
from ..vectors import bad_rows

PERSISTENCE_KEYS = ("fsync", "compact_ratio", "compact_min_bytes")


class Match(NamedTuple):
    """A stored document as a search answer (its vector is not returned)."""

    id: str
    uri: Optional[str]
    tags: Dict[str, Any]


Hits = List[List[Tuple[Match, float]]]


@dataclass
class Batch:
    """Validated rows of one write: ids (unique), a (n, dim) float32 matrix, uris, tags."""

    ids: List[str]
    vectors: np.ndarray
    uris: List[Optional[str]]
    tags: List[Dict[str, Any]]

    def __post_init__(self) -> None:
        # Every write reaches a store as a Batch (a request, a log record replayed, a converted workspace):
        # the tags it keeps are copies whose names are shared by all its documents.
        self.tags = [shared_keys(t) for t in self.tags]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_rows(cls, rows: Sequence[Dict[str, Any]], dim: int) -> "Batch":
        """Check every row (raises ValueError naming the bad ones); the last row of an id wins."""
        last: Dict[str, int] = {}
        bad: List[str] = []
        for pos, row in enumerate(rows):
            doc_id = row.get("id")
            if not isinstance(doc_id, str) or not doc_id:
                bad.append(f"row #{pos}: id must be a non-empty string, got {doc_id!r}")
                continue
            last.pop(doc_id, None)  # keep first-seen order of the survivors stable
            last[doc_id] = pos
        keep = list(last.values())
        vectors = np.empty((len(keep), dim), dtype=np.float32)
        for out, pos in enumerate(keep):
            vec = np.asarray(rows[pos].get("embedding"), dtype=np.float32)
            if vec.shape != (dim,):
                bad.append(f"{rows[pos]['id']!r}: embedding of shape {vec.shape}, the store holds width {dim}")
                continue
            vectors[out] = vec
        if not bad and len(keep):
            for out in bad_rows(vectors):
                bad.append(f"{rows[keep[out]]['id']!r}: embedding is zero or not finite")
        if bad:
            raise ValueError("rows rejected, nothing was stored: " + "; ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else ""))
        return cls(
            [rows[p]["id"] for p in keep],
            vectors,
            [rows[p].get("uri") for p in keep],
            [rows[p].get("tags") for p in keep],
        )


def shared_keys(tags: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """A copy of `tags` whose keys are interned: a request's documents arrive with their own copy of each tag
    name (protobuf, a log record's JSON), and a store keeps them for every document it holds (~66 B a key a
    document)."""
    return {sys.intern(k) if type(k) is str else k: v for k, v in (tags or {}).items()}


def normalized(vectors: np.ndarray) -> np.ndarray:
    """Unit rows (float32); cosine similarity is then a dot product."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


class VectorStore(ABC):
    """id -> (vector, uri, tags), searched by cosine similarity (see the module docstring)."""

    name = "abstract"
    SEARCH_PARAMS: Tuple[str, ...] = ()

    def __init__(self, dim: int, workdir: Optional[Path]):
        self.dim = int(dim)
        self.workdir = Path(workdir) if workdir else None

    @classmethod
    def create(cls, dim: int, workdir: Optional[Path], options: Dict[str, Any], persistence: Dict[str, Any]) -> "VectorStore":
        """The store as the indexer's config describes it: its own `options` (a store that keeps
        its own persistence, like Milvus, ignores `persistence`)."""
        return cls(dim, workdir, **options)

    @abstractmethod
    def upsert(self, rows: Sequence[Dict[str, Any]]) -> None: ...

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> None: ...

    @abstractmethod
    def exists(self, doc_id: str) -> bool: ...

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def lookup(self, ids: Sequence[str]) -> List[Optional[Tuple[np.ndarray, Dict[str, Any]]]]:
        """Per id: its stored (unit vector, tags), or None when it is not stored."""

    @abstractmethod
    def clear(self) -> None: ...

    def documents(self, prefix: str = "") -> List[Match]:
        """The stored documents whose id starts with `prefix` (all for ""), in no set order."""
        raise NotImplementedError(f"the {self.name} store cannot list its documents")

    def check_params(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """The store's own search options from request parameters, validated (others ignored)."""
        return {}

    @abstractmethod
    def _search(self, queries: np.ndarray, limit: int, where: Optional[Filter] = None, **params: Any) -> Hits:
        """`search` with 1 <= limit <= count() and a (n, dim) float32 matrix."""

    def search(self, queries: np.ndarray, limit: int, where: Optional[Filter] = None, **params: Any) -> Hits:
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be a matrix of width {self.dim}, got shape {queries.shape}")
        n = self.count()
        if n == 0 or limit <= 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        return self._search(queries, min(int(limit), n), where=where, **self.check_params(params))

    def close(self) -> None:
        """Release resources (writes are already durable)."""


def top_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row of `scores` (b, n), the columns of its `k` highest scores, unordered (`ranked_hits` orders them)."""
    n = scores.shape[1]
    if k < n:
        # argpartition on the scores as they are (no negated copy of a (b, n) matrix)
        return np.argpartition(scores, n - k, axis=1)[:, n - k :]
    return np.broadcast_to(np.arange(n), scores.shape)


def ranked_hits(keys: np.ndarray, scores: np.ndarray, id_of: Callable[[int], str], meta: Callable[[int], tuple]) -> Hits:
    """Per query row: (Match, score) best first, equal scores in id order.

    `keys` (n, k): the stores' own keys (rows, labels) of the candidates; `scores` (n, k) their cosine
    similarities; `id_of(key)` and `meta(key)` (uri, tags) look a key up. Sorting is one vectorised
    argsort; only a row with tied scores is re-sorted in Python (by id).
    """
    order = np.argsort(-scores, axis=1, kind="stable")
    keys = np.take_along_axis(keys, order, 1).tolist()
    scores = np.take_along_axis(scores, order, 1)
    tied = (scores[:, 1:] == scores[:, :-1]).any(axis=1) if scores.shape[1] > 1 else np.zeros(len(scores), bool)
    out: Hits = []
    for row_keys, row_scores, row_tied in zip(keys, scores.tolist(), tied.tolist()):
        pairs = [(Match(id_of(key), *meta(key)), score) for key, score in zip(row_keys, row_scores)]
        if row_tied:
            pairs.sort(key=lambda p: (-p[1], p[0].id))
        out.append(pairs)
    return out


__all__ = ["Batch", "Hits", "Match", "PERSISTENCE_KEYS", "VectorStore", "normalized", "ranked_hits", "top_columns"]
