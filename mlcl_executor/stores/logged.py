"""LoggedStore: the durability rules shared by the stores (a write costs O(request), not O(index)).

- Every upsert / delete / clear is first appended to a write-ahead log (one
  framed record per request, `wal.py`), flushed and fsync'ed, then applied;
  so no acknowledged write is lost by a crash or a restart.
- The full state is written as a snapshot only at compaction: on `close()`,
  after replaying a non-empty log at start-up, and when the log grows past
  `compact_ratio` x the snapshot size (and past `compact_min_bytes`): the
  snapshot cost is amortised O(1) per written vector. A snapshot is written to
  a temporary file, fsync'ed and renamed into place, then the log is emptied;
  replaying a log over a snapshot that already holds it is harmless (writes
  are idempotent by id), so a crash between the two is safe.
- At start-up the snapshot is loaded and the log replayed; a torn last record
  (a crash mid-append, never acknowledged) is dropped and cut off.
"""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..filters import Filter, TagColumns
from .base import PERSISTENCE_KEYS, Batch, VectorStore
from .wal import CLEAR, DELETE, UPSERT, WriteAheadLog, decode_batch, encode_batch

logger = logging.getLogger(__name__)


class LoggedStore(VectorStore):
    """A store whose writes go to a write-ahead log first and whose full state is
    written only at compaction (see the module docstring). Subclasses apply
    validated writes to their live index and write/load snapshots."""

    def __init__(
        self,
        dim: int,
        workdir: Optional[Path],
        fsync: bool = True,
        compact_ratio: float = 1.0,
        compact_min_bytes: int = 16 << 20,
    ):
        super().__init__(dim, workdir)
        self.compact_ratio = float(compact_ratio)
        self.compact_min_bytes = int(compact_min_bytes)
        self.fsync = bool(fsync)
        self.snapshot_bytes = 0
        self.log: Optional[WriteAheadLog] = None
        self.compactions = 0
        self._tag_columns = TagColumns()  # filters' columns of `_tags`, dropped at every write

    @classmethod
    def create(cls, dim: int, workdir: Optional[Path], options: Dict[str, Any], persistence: Dict[str, Any]) -> "LoggedStore":
        unknown = set(persistence) - set(PERSISTENCE_KEYS)
        if unknown:
            raise ValueError(f"unknown persistence options {sorted(unknown)}; choose from {PERSISTENCE_KEYS}")
        return cls(dim, workdir, options, **persistence)

    @abstractmethod
    def _apply_upsert(self, batch: Batch) -> None: ...

    @abstractmethod
    def _apply_delete(self, ids: Sequence[str]) -> None:
        """Remove the ids that are stored; ignore the others (a replayed delete may find them gone)."""

    @abstractmethod
    def _apply_clear(self) -> None: ...

    @abstractmethod
    def _write_snapshot(self) -> int:
        """Write the full state durably (temporary file + fsync + rename); return its size in bytes."""

    def _open_log(self, path: Path) -> None:
        """Replay the log over the loaded snapshot; then fold it into a new snapshot."""
        self.log = WriteAheadLog(path, fsync=self.fsync)
        replayed = 0
        for op, payload in self.log.replay():
            if op == UPSERT:
                self._apply_upsert(decode_batch(payload, self.dim))
            elif op == DELETE:
                self._apply_delete(json.loads(payload.decode("utf-8")))
            elif op == CLEAR:
                self._apply_clear()
            replayed += 1
        if replayed:
            logger.info(f"{path}: replayed {replayed} logged writes")
            self.compact()

    def _kept(self, where: Filter) -> np.ndarray:
        """Which entries of `self._tags` (a subclass's tags per row or label: a dict, or None for none) pass `where`."""
        return where.mask(self._tags, self._tag_columns)  # type: ignore[attr-defined]

    def upsert(self, rows: Sequence[Dict[str, Any]]) -> None:
        if not rows:
            return
        batch = Batch.from_rows(rows, self.dim)  # validate before logging: a logged record must replay
        if self.log is not None:
            self.log.append(UPSERT, encode_batch(batch))
        self._tag_columns.invalidate()
        self._apply_upsert(batch)
        self._maybe_compact()

    def delete(self, ids: Sequence[str]) -> None:
        ids = [i for i in dict.fromkeys(ids) if self.exists(i)]
        if not ids:
            return
        if self.log is not None:
            self.log.append(DELETE, json.dumps(ids).encode("utf-8"))
        self._tag_columns.invalidate()
        self._apply_delete(ids)
        self._maybe_compact()

    def clear(self) -> None:
        if self.log is not None:
            self.log.append(CLEAR)
        self._tag_columns.invalidate()
        self._apply_clear()
        if self.log is not None:
            self.compact()

    def _maybe_compact(self) -> None:
        if self.log is not None and self.log.bytes > max(self.compact_min_bytes, self.compact_ratio * self.snapshot_bytes):
            self.compact()

    def compact(self) -> None:
        """Snapshot the whole state, then empty the log (a crash in between only replays it again)."""
        if self.log is None:
            return
        self.snapshot_bytes = self._write_snapshot()
        self.log.reset()
        self.compactions += 1

    def close(self) -> None:
        """Fold the log into the snapshot (a fast next start); writes were durable already."""
        if self.log is not None:
            if self.log.bytes:
                self.compact()
            self.log.close()


__all__ = ["LoggedStore"]
