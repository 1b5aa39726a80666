"""The write-ahead log of the stores, and the row codec of its upsert records.

No docarray and no Jina here: a record is bytes, a batch of rows is numpy
arrays plus JSON-able ids, uris and tags.

Record: op (1 byte: U upsert, D delete, C clear), payload length (8 bytes,
little-endian), CRC32 of the payload (4 bytes), payload. `append` returns once
the record is flushed (and fsync'ed, unless `fsync=False`): the write is then
durable. A torn or corrupt tail (a crash mid-append, never acknowledged) ends
the replay and is cut off.

Upsert payload: 8-byte length of a JSON header {ids, uris, tags}, the header,
then the float32 vectors (little-endian, row-major, `len(ids) x dim`).
Delete payload: a JSON list of ids. Clear: empty.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple

import numpy as np

from .base import Batch

logger = logging.getLogger(__name__)

UPSERT, DELETE, CLEAR = b"U", b"D", b"C"


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"tags must hold JSON values; got {type(value).__name__}")


def encode_batch(batch: Batch) -> bytes:
    """An upsert as a log payload: JSON (ids, uris, tags) + the float32 vectors, raw."""
    meta = json.dumps({"ids": batch.ids, "uris": batch.uris, "tags": batch.tags}, default=json_default).encode("utf-8")
    return struct.pack("<Q", len(meta)) + meta + np.ascontiguousarray(batch.vectors, dtype="<f4").tobytes()


def decode_batch(payload: bytes, dim: int) -> Batch:
    (n,) = struct.unpack_from("<Q", payload)
    meta = json.loads(payload[8 : 8 + n].decode("utf-8"))
    vectors = np.frombuffer(payload[8 + n :], dtype="<f4").reshape(len(meta["ids"]), dim).astype(np.float32)
    return Batch(meta["ids"], vectors, meta["uris"], meta["tags"])


class WriteAheadLog:
    """Append-only log of write requests, one framed record per request (see the module docstring)."""

    HEADER = struct.Struct("<cQI")
    OPS = (UPSERT, DELETE, CLEAR)

    def __init__(self, path: Path, fsync: bool = True):
        self.path = path
        self.fsync = fsync
        self.bytes = path.stat().st_size if path.is_file() else 0
        self._file: Optional[Any] = None

    def replay(self) -> Iterator[Tuple[bytes, bytes]]:
        """The valid records, in order. A torn or corrupt tail (a crash mid-append, never
        acknowledged) ends the replay and is cut off once the caller has consumed the rest."""
        if not self.path.is_file():
            return
        good = 0
        with open(self.path, "rb") as f:
            while True:
                head = f.read(self.HEADER.size)
                if len(head) < self.HEADER.size:
                    break
                op, length, crc = self.HEADER.unpack(head)
                if op not in self.OPS:
                    break
                payload = f.read(length)
                if len(payload) < length or zlib.crc32(payload) != crc:
                    break
                good = f.tell()
                yield op, payload
        size = self.path.stat().st_size
        if size > good:
            logger.warning(f"{self.path}: dropping a torn record at the end of the log ({size - good} bytes)")
            os.truncate(self.path, good)
        self.bytes = good

    def append(self, op: bytes, payload: bytes = b"") -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")
        start = self._file.tell()
        try:
            self._file.write(self.HEADER.pack(op, len(payload), zlib.crc32(payload)))
            self._file.write(payload)
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
        except BaseException:
            # Leave no torn record behind: later (acknowledged) records must stay replayable.
            try:
                self._file.truncate(start)
                self._file.seek(start)
            except OSError:
                pass
            raise
        self.bytes = self._file.tell()

    def reset(self) -> None:
        """Empty the log (after a snapshot holds everything it recorded)."""
        self.close()
        if self.path.exists():
            with open(self.path, "r+b") as f:
                f.truncate(0)
                if self.fsync:
                    os.fsync(f.fileno())
        self.bytes = 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


__all__ = ["CLEAR", "DELETE", "UPSERT", "WriteAheadLog", "decode_batch", "encode_batch", "fsync_dir", "json_default"]
