"""HnswStore: approximate cosine search on hnswlib directly.

hnswlib keys points by integer labels. The store gives each new id the next
label (labels are never reused) and keeps label -> (id, uri, tags) in lists
and id -> label in a dict. Writes cost O(request):

- new ids: `add_items(..., replace_deleted=True)` (a slot freed by a delete is
  reused); when the graph is full its capacity doubles (`resize_index`), so
  growth is amortised O(1) per vector;
- ids that are stored: `add_items` with their label (hnswlib updates the point);
- deletes: `mark_deleted` (the point stays in the graph as a routing node
  until a new id takes its slot); re-inserting a deleted id gives it a new label.

Durability is the write-ahead log (`hnsw.log`, see `logged.py`); the graph is
saved (`save_index`) only at compaction, never per write. Snapshot files:
`hnsw-<generation>.graph` (hnswlib's format) and `hnsw.meta` (JSON: the
graph's file name, ids, labels, uris, tags), renamed into place last: a
snapshot is complete once `hnsw.meta` names it. A workspace of the earlier
docarray-based store (`hnsw/`) is converted on open (`docarray_legacy.py`).

Options (`hnsw:` in flows/indexer.yml): `ef` (default search breadth; a
request may set its own with the `ef` parameter), `M`, `ef_construction`,
`max_elements` (initial capacity), `num_threads` (add_items and batched
queries), `exact_below` (a filtered search whose filter keeps at most this
many documents is exact over them; a broader one walks the graph with
hnswlib's filter, which slows down as the filter narrows). The exact path reads
the kept vectors back from hnswlib (`get_items`, several microseconds a vector),
so it pays only for few documents: bench/filtered_search.py sets the default.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..filters import Filter
from ..params import param_int
from .base import Batch, Hits, Match, normalized, ranked_hits, top_columns
from .logged import LoggedStore
from .wal import fsync_dir, json_default

logger = logging.getLogger(__name__)

DEFAULT_OPTIONS: Dict[str, int] = {
    "ef": 128, "M": 16, "ef_construction": 200, "max_elements": 1024, "num_threads": 1, "exact_below": 1500,
}
MAX_EF = 100_000


class HnswStore(LoggedStore):
    """hnswlib graph + id/uri/tags metadata in the workspace, write-ahead log `hnsw.log`."""

    name = "hnsw"
    SEARCH_PARAMS = ("ef",)

    def __init__(self, dim: int, workdir: Optional[Path], options: Optional[Dict[str, Any]] = None, **persistence: Any):
        if workdir is None:
            raise ValueError("the hnsw backend needs a workspace (it persists in it)")
        unknown = set(options or {}) - set(DEFAULT_OPTIONS)
        if unknown:
            raise ValueError(f"unknown hnsw options {sorted(unknown)}; choose from {sorted(DEFAULT_OPTIONS)}")
        self.options = {**DEFAULT_OPTIONS, **{k: int(v) for k, v in (options or {}).items()}}
        for key, value in self.options.items():
            if value < 1:
                raise ValueError(f"hnsw option {key!r} must be >= 1, got {value}")
        super().__init__(dim, workdir, **persistence)
        assert self.workdir is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.meta_file = self.workdir / "hnsw.meta"
        self.generation = 0
        self._reset()
        if self.meta_file.is_file():
            self._load()
        elif (self.workdir / "hnsw").is_dir():
            from .docarray_legacy import read_hnsw_workspace

            legacy = self.workdir / "hnsw"
            self._apply_upsert(read_hnsw_workspace(legacy, self.dim))
            self.snapshot_bytes = self._write_snapshot()
            shutil.rmtree(legacy)  # the new snapshot is durable: the old workspace is no longer needed
        for stray in self.workdir.glob("hnsw-*.graph*"):  # a snapshot that was not committed, or a replaced one
            if stray.name != self._graph_name():
                stray.unlink()
        self._open_log(self.workdir / "hnsw.log")

    # ------------------------------------------------------------ state
    def _new_index(self, capacity: int) -> Any:
        import hnswlib

        index = hnswlib.Index(space="cosine", dim=self.dim)
        index.init_index(
            max_elements=capacity, ef_construction=self.options["ef_construction"], M=self.options["M"],
            allow_replace_deleted=True,
        )
        index.set_num_threads(self.options["num_threads"])
        return index

    def _reset(self) -> None:
        self.index = self._new_index(self.options["max_elements"])
        self._label_of: Dict[str, int] = {}
        self._ids: List[Optional[str]] = []  # by label; None once deleted
        self._uris: List[Optional[str]] = []
        self._tags: List[Optional[Dict[str, Any]]] = []

    def exists(self, doc_id: str) -> bool:
        return doc_id in self._label_of

    def count(self) -> int:
        return len(self._label_of)

    def lookup(self, ids: Sequence[str]) -> List[Optional[Tuple[np.ndarray, Dict[str, Any]]]]:
        labels = [self._label_of.get(doc_id) for doc_id in ids]
        found = [label for label in labels if label is not None]
        # the vectors hnswlib stores: unit rows in the cosine space
        vectors = iter(np.asarray(self.index.get_items(found, return_type="numpy"), dtype=np.float32) if found else [])
        return [None if label is None else (next(vectors), dict(self._tags[label] or {})) for label in labels]

    # ------------------------------------------------------------ writes
    def _apply_upsert(self, batch: Batch) -> None:
        new_pos: List[int] = []
        old_pos: List[int] = []
        old_labels: List[int] = []
        for j, (doc_id, uri, tags) in enumerate(zip(batch.ids, batch.uris, batch.tags)):
            label = self._label_of.get(doc_id)
            if label is None:
                label = len(self._ids)
                self._label_of[doc_id] = label
                self._ids.append(doc_id)
                self._uris.append(uri)
                self._tags.append(tags or None)
                new_pos.append(j)
            else:
                self._uris[label] = uri
                self._tags[label] = tags or None
                old_pos.append(j)
                old_labels.append(label)
        threads = self.options["num_threads"]
        if old_pos:
            # an existing (live) label: hnswlib replaces its vector in place
            self.index.add_items(batch.vectors[old_pos], np.asarray(old_labels, dtype=np.int64), num_threads=threads)
        if new_pos:
            needed = self.index.get_current_count() + len(new_pos)  # upper bound: deleted slots may be reused
            capacity = self.index.get_max_elements()
            if needed > capacity:
                self.index.resize_index(max(needed, 2 * capacity))
            labels = np.fromiter((self._label_of[batch.ids[j]] for j in new_pos), dtype=np.int64, count=len(new_pos))
            vectors = batch.vectors if len(new_pos) == len(batch) else batch.vectors[new_pos]
            self.index.add_items(vectors, labels, num_threads=threads, replace_deleted=True)

    def _apply_delete(self, ids: Sequence[str]) -> None:
        for doc_id in ids:
            label = self._label_of.pop(doc_id, None)
            if label is None:
                continue
            self.index.mark_deleted(label)
            self._ids[label] = self._uris[label] = self._tags[label] = None

    def _apply_clear(self) -> None:
        self._reset()

    # ------------------------------------------------------------ search
    def check_params(self, params: Dict[str, Any]) -> Dict[str, Any]:
        ef = param_int(params, "ef", low=1, high=MAX_EF)
        return {} if ef is None else {"ef": ef}

    def _search(self, queries: np.ndarray, limit: int, ef: Optional[int] = None, where: Optional[Filter] = None,
                **params: Any) -> Hits:
        ef = max(ef or self.options["ef"], limit)
        threads = self.options["num_threads"] if len(queries) > 1 else 1
        allowed = None
        if where is not None:
            labels = self._filtered_labels(where)
            if len(labels) <= self.options["exact_below"]:
                return self._exact(queries, labels, limit)
            limit = min(limit, len(labels))
            allowed = np.zeros(len(self._ids), dtype=bool)
            allowed[labels] = True
            allowed = allowed.tolist().__getitem__  # called per visited node: a list lookup is the cheapest
            threads = 1  # the filter is Python: it takes the GIL on every call
        while True:
            self.index.set_ef(ef)  # per call: the caller serialises searches (the indexer's lock)
            try:
                labels, distances = self.index.knn_query(queries, k=limit, num_threads=threads, filter=allowed)
                break
            except RuntimeError:
                # fewer than `limit` live points reached (many deleted neighbours, a narrow filter): search wider
                if ef >= self.index.get_current_count():
                    if where is not None:
                        return self._exact(queries, self._filtered_labels(where), limit)
                    raise
                ef = min(4 * ef, self.index.get_current_count())
        return ranked_hits(labels.astype(np.int64), 1.0 - distances, self._ids.__getitem__, self._meta)

    def _filtered_labels(self, where: Filter) -> np.ndarray:
        """The live labels whose tags pass `where`."""
        kept = self._kept(where)
        return np.asarray([label for label in np.flatnonzero(kept).tolist() if self._ids[label] is not None], dtype=np.int64)

    def _exact(self, queries: np.ndarray, labels: np.ndarray, limit: int) -> Hits:
        """Exact search over the points `labels` (the vectors hnswlib stores: unit rows in the cosine space)."""
        if not len(labels):
            return [[] for _ in range(len(queries))]
        vectors = np.asarray(self.index.get_items(labels, return_type="numpy"), dtype=np.float32)
        scores = normalized(queries) @ vectors.T
        top = top_columns(scores, min(limit, len(labels)))
        return ranked_hits(labels[top], np.take_along_axis(scores, top, 1), self._ids.__getitem__, self._meta)

    def _meta(self, label: int) -> tuple:
        tags = self._tags[label]
        return self._uris[label], dict(tags) if tags else {}

    def documents(self, prefix: str = "") -> List[Match]:
        return [Match(doc_id, *self._meta(label)) for doc_id, label in self._label_of.items() if doc_id.startswith(prefix)]

    # ------------------------------------------------------------ snapshot
    def _graph_name(self) -> str:
        return f"hnsw-{self.generation}.graph"

    def _write_snapshot(self) -> int:
        assert self.workdir is not None
        self.generation += 1
        graph = self.workdir / self._graph_name()
        self.index.save_index(str(graph))
        with open(graph, "rb") as f:
            os.fsync(f.fileno())
        meta = {
            "format": 1, "dim": self.dim, "graph": graph.name, "capacity": self.index.get_max_elements(),
            "labels": len(self._ids), "ids": list(self._label_of), "id_labels": list(self._label_of.values()),
            "uris": self._uris, "tags": self._tags,
        }
        tmp = self.meta_file.with_suffix(".meta.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f, default=json_default)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.meta_file)  # the commit point of the snapshot
        fsync_dir(self.workdir)
        for old in self.workdir.glob("hnsw-*.graph"):
            if old != graph:
                old.unlink()
        return graph.stat().st_size + self.meta_file.stat().st_size

    def _load(self) -> None:
        import hnswlib

        meta = json.loads(self.meta_file.read_text(encoding="utf-8"))
        if int(meta["dim"]) != self.dim:
            raise ValueError(f"{self.meta_file}: holds vectors of width {meta['dim']}, the store was opened with {self.dim}")
        self.generation = int(meta["graph"].split("-")[1].split(".")[0])
        graph = self.workdir / meta["graph"]  # type: ignore[operator]
        self.index = hnswlib.Index(space="cosine", dim=self.dim)
        self.index.load_index(str(graph), max_elements=int(meta["capacity"]), allow_replace_deleted=True)
        self.index.set_num_threads(self.options["num_threads"])
        n = int(meta["labels"])
        self._uris, self._tags = meta["uris"], meta["tags"]
        self._ids = [None] * n
        self._label_of = dict(zip(meta["ids"], meta["id_labels"]))
        for doc_id, label in self._label_of.items():
            self._ids[label] = doc_id
        self.snapshot_bytes = graph.stat().st_size + self.meta_file.stat().st_size

    def close(self) -> None:
        if self.index is None:
            return
        super().close()
        self.index = None


__all__ = ["HnswStore", "DEFAULT_OPTIONS"]
