"""MemoryStore: exact cosine search over one contiguous float32 matrix.

Rows 0..n-1 of `matrix` hold the unit vectors of the stored documents;
`_ids[row]` is a row's id and `_rows[id]` its row. An upsert of a new id
appends a row (the capacity doubles when full: amortised O(1) per vector); a
delete moves the last row into the freed one (swap-with-last), so the live
rows stay one contiguous block that a query reads with a single matmul. A
search is `queries @ matrix[:n].T` + `np.argpartition` for the top-k, so
its cost is the bare numpy floor plus O(k) per query.

Files in the workspace: `memory.snap` (snapshot) and `index.log` (the
write-ahead log; see `logged.py`). Snapshot: magic `MLCLMEM1`, 8-byte length
of a JSON header {dim, n, ids, uris, tags}, the header, then the n x dim
float32 matrix (little-endian, row-major). A workspace written by the
docarray-based store of earlier versions (`index.bin`) is converted on open
(`docarray_legacy.py`).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..filters import Filter
from .base import Batch, Hits, Match, normalized, ranked_hits, top_columns
from .logged import LoggedStore
from .wal import fsync_dir, json_default

MAGIC = b"MLCLMEM1"
INITIAL_CAPACITY = 1024


class MemoryStore(LoggedStore):
    """Exact search in memory; snapshot `memory.snap` + write-ahead log `index.log` in the workspace."""

    name = "memory"

    def __init__(self, dim: int, workdir: Optional[Path], options: Optional[Dict[str, Any]] = None, **persistence: Any):
        if options:
            raise ValueError(f"the memory backend has no options, got {sorted(options)}")
        super().__init__(dim, workdir, **persistence)
        self._reset()
        if self.workdir is None:
            return
        self.file = self.workdir / "memory.snap"
        legacy = self.workdir / "index.bin"
        if self.file.is_file():
            self._load(self.file)
            self.snapshot_bytes = self.file.stat().st_size
        elif legacy.is_file():
            from .docarray_legacy import read_memory_snapshot

            self._apply_upsert(read_memory_snapshot(legacy, self.dim))
            self.snapshot_bytes = self._write_snapshot()
            legacy.unlink()  # the new snapshot is durable: the old one is no longer needed
            fsync_dir(self.workdir)
        self._open_log(self.workdir / "index.log")

    # ------------------------------------------------------------ state
    def _reset(self, capacity: int = INITIAL_CAPACITY) -> None:
        self.matrix = np.empty((capacity, self.dim), dtype=np.float32)
        self.n = 0
        self._ids: List[str] = []
        self._rows: Dict[str, int] = {}
        # None for no uri / no tags: a million empty dicts would cost ~64 MB.
        self._uris: List[Optional[str]] = []
        self._tags: List[Optional[Dict[str, Any]]] = []

    def _reserve(self, needed: int) -> None:
        """Capacity for `needed` rows: doubling, so appends cost amortised O(1) per row."""
        capacity = len(self.matrix)
        if needed <= capacity:
            return
        grown = np.empty((max(needed, 2 * capacity), self.dim), dtype=np.float32)
        grown[: self.n] = self.matrix[: self.n]
        self.matrix = grown

    def exists(self, doc_id: str) -> bool:
        return doc_id in self._rows

    def count(self) -> int:
        return self.n

    def lookup(self, ids: Sequence[str]) -> List[Optional[Tuple[np.ndarray, Dict[str, Any]]]]:
        rows = [self._rows.get(doc_id) for doc_id in ids]
        return [None if row is None else (self.matrix[row].copy(), dict(self._tags[row] or {})) for row in rows]

    # ------------------------------------------------------------ writes
    def _apply_upsert(self, batch: Batch) -> None:
        if not len(batch):
            return
        vectors = normalized(batch.vectors)
        new = [doc_id for doc_id in batch.ids if doc_id not in self._rows]
        self._reserve(self.n + len(new))
        rows = np.empty(len(batch), dtype=np.int64)
        for j, (doc_id, uri, tags) in enumerate(zip(batch.ids, batch.uris, batch.tags)):
            row = self._rows.get(doc_id)
            if row is None:
                row = self.n
                self.n += 1
                self._rows[doc_id] = row
                self._ids.append(doc_id)
                self._uris.append(uri)
                self._tags.append(tags or None)
            else:
                self._uris[row] = uri
                self._tags[row] = tags or None
            rows[j] = row
        self.matrix[rows] = vectors

    def _apply_delete(self, ids: Sequence[str]) -> None:
        for doc_id in ids:
            row = self._rows.pop(doc_id, None)
            if row is None:
                continue
            last = self.n - 1
            if row != last:  # swap-with-last keeps rows 0..n-1 contiguous
                moved = self._ids[last]
                self.matrix[row] = self.matrix[last]
                self._ids[row], self._uris[row], self._tags[row] = moved, self._uris[last], self._tags[last]
                self._rows[moved] = row
            self._ids.pop()
            self._uris.pop()
            self._tags.pop()
            self.n = last

    def _apply_clear(self) -> None:
        self._reset()

    # ------------------------------------------------------------ search
    def _search(self, queries: np.ndarray, limit: int, where: Optional[Filter] = None, **params: Any) -> Hits:
        if where is None:
            scores = normalized(queries) @ self.matrix[: self.n].T
            top = top_columns(scores, limit)
            return ranked_hits(top, np.take_along_axis(scores, top, 1), self._ids.__getitem__, self._meta)
        # A filter: its mask (vectorised over the tags' columns) picks the rows the matmul reads.
        rows = np.flatnonzero(self._kept(where)[: self.n])
        if not len(rows):
            return [[] for _ in range(len(queries))]
        scores = normalized(queries) @ self.matrix[rows].T
        top = top_columns(scores, min(limit, len(rows)))
        return ranked_hits(rows[top], np.take_along_axis(scores, top, 1), self._ids.__getitem__, self._meta)

    def _meta(self, row: int) -> tuple:
        tags = self._tags[row]
        return self._uris[row], dict(tags) if tags else {}

    def documents(self, prefix: str = "") -> List[Match]:
        return [Match(doc_id, *self._meta(row)) for row, doc_id in enumerate(self._ids) if doc_id.startswith(prefix)]

    # ------------------------------------------------------------ snapshot
    def _write_snapshot(self) -> int:
        assert self.workdir is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        header = json.dumps(
            {"dim": self.dim, "n": self.n, "ids": self._ids, "uris": self._uris, "tags": self._tags}, default=json_default
        ).encode("utf-8")
        tmp = self.file.with_suffix(".snap.tmp")
        with open(tmp, "wb") as f:
            f.write(MAGIC + struct.pack("<Q", len(header)))
            f.write(header)
            if self.n:
                f.write(memoryview(np.ascontiguousarray(self.matrix[: self.n], dtype="<f4")).cast("B"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.file)  # atomic: a crash mid-write keeps the previous snapshot
        fsync_dir(self.workdir)
        return self.file.stat().st_size

    def _load(self, path: Path) -> None:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise ValueError(f"{path}: not a memory-store snapshot")
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length).decode("utf-8"))
            if int(header["dim"]) != self.dim:
                raise ValueError(f"{path}: holds vectors of width {header['dim']}, the store was opened with {self.dim}")
            n = int(header["n"])
            self._reset(max(INITIAL_CAPACITY, n))
            # read straight into the matrix: no second copy of the vectors in memory
            view = memoryview(self.matrix[:n]).cast("B") if n else memoryview(b"")
            if n and f.readinto(view) != len(view):
                raise ValueError(f"{path}: truncated snapshot")
        self.n = n
        self._ids = header["ids"]
        self._uris = header["uris"]
        self._tags = header["tags"]
        self._rows = {doc_id: row for row, doc_id in enumerate(self._ids)}

    def close(self) -> None:
        super().close()


__all__ = ["MemoryStore"]
