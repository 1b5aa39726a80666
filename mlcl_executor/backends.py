"""Vector stores over docarray's document indexes, with one score convention.

Whatever the backend, `search` returns cosine similarity (higher is better):
- `memory`: `InMemoryExactNNIndex`, exact; its `cosine_sim` scores are
  already similarities.
- `hnsw`: `HnswDocumentIndex` (hnswlib + SQLite in a work dir). Its default
  space is l2; we configure `cosine`, whose scores are cosine *distances*, and
  convert: similarity = 1 - distance.

Persistence (both backends; a write costs O(request), not O(index)):
- Every upsert / delete / clear is first appended to a write-ahead log
  (`index.log` / `hnsw.log`, one length + CRC32 framed record per request),
  flushed and fsync'ed, then applied; so no acknowledged write is lost by a
  crash or a restart.
- The full state is written as a snapshot only at compaction: on `close()`,
  after replaying a non-empty log at start-up, and when the log grows past
  `compact_ratio` x the snapshot size (and past `compact_min_bytes`): the
  snapshot cost is amortised O(1) per written vector. A snapshot is written to a
  temporary file, fsync'ed and renamed into place, then the log is emptied;
  replaying a log over a snapshot that already holds it is harmless (writes
  are idempotent by id), so a crash between the two is safe.
- At start-up the snapshot is loaded and the log replayed; a torn last record
  (a crash mid-append, never acknowledged) is dropped and cut off.
- `memory`: the snapshot is `index.bin` (docarray binary of the documents).
- `hnsw`: SQLite (the documents) commits per write, O(request). docarray
  0.41 would also rewrite the whole hnswlib graph file (`save_index`) and
  resize the graph to the exact new size on every write, both O(index), with
  no option to turn that off: the store wraps docarray's hnswlib index (a
  private attribute) so that `save_index` is deferred to compaction and the
  capacity grows geometrically; the log is replayed into the graph after a crash.

Both wrap only docarray's public index API except where noted.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import sqlite3
import struct
import zlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type

import numpy as np
from docarray import BaseDoc, DocList

from .schemas import stored_doc_schema

BACKENDS = ("memory", "hnsw", "milvus")  # milvus: milvus_store.py (an optional dependency)

logger = logging.getLogger(__name__)

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


def _fsync_dir(path: Path) -> None:
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


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"tags must hold JSON values; got {type(value).__name__}")


class WriteAheadLog:
    """Append-only log of write requests, one framed record per request.

    Record: op (1 byte: U upsert, D delete, C clear), payload length (8 bytes),
    CRC32 of the payload (4 bytes), payload. `append` returns once the record is
    flushed (and fsync'ed, unless `fsync=False`): the write is then durable.
    """

    HEADER = struct.Struct("<cQI")
    OPS = (b"U", b"D", b"C")

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
            self._file.write(self.HEADER.pack(op, len(payload), zlib.crc32(payload)) + payload)
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


def encode_rows(rows: Sequence[Dict[str, Any]], dim: int) -> bytes:
    """An upsert as a log payload: JSON (ids, uris, tags) + the float32 vectors, raw."""
    meta = json.dumps(
        {"ids": [r["id"] for r in rows], "uris": [r.get("uri") for r in rows], "tags": [r.get("tags") or {} for r in rows]},
        default=_json_default,
    ).encode("utf-8")
    vectors = np.stack([np.asarray(r["embedding"], dtype="<f4").reshape(dim) for r in rows])
    return struct.pack("<Q", len(meta)) + meta + vectors.tobytes()


def decode_rows(payload: bytes, dim: int) -> List[Dict[str, Any]]:
    (n,) = struct.unpack_from("<Q", payload)
    meta = json.loads(payload[8 : 8 + n].decode("utf-8"))
    vectors = np.frombuffer(payload[8 + n :], dtype="<f4").reshape(len(meta["ids"]), dim).astype(np.float32)
    return [
        {"id": i, "embedding": v, "uri": u, "tags": t}
        for i, v, u, t in zip(meta["ids"], vectors, meta["uris"], meta["tags"])
    ]


class LoggedStore(VectorStore):
    """A store whose writes go to a write-ahead log first and whose full state is
    written only at compaction (see the module docstring)."""

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

    # subclasses: apply a (validated) write to the live index; write/measure the snapshot
    @abstractmethod
    def _apply_upsert(self, docs: DocList) -> None: ...

    @abstractmethod
    def _apply_delete(self, ids: Sequence[str], replay: bool) -> None: ...

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
            if op == b"U":
                self._apply_upsert(self.make_docs(decode_rows(payload, self.dim)))
            elif op == b"D":
                self._apply_delete(json.loads(payload.decode("utf-8")), replay=True)
            else:
                self._apply_clear()
            replayed += 1
        if replayed:
            logger.info(f"{path}: replayed {replayed} logged writes")
            self.compact()

    def upsert(self, rows: Sequence[Dict[str, Any]]) -> None:
        if not rows:
            return
        docs = self.make_docs(rows)  # validate before logging: a logged record must replay
        if self.log is not None:
            self.log.append(b"U", encode_rows(rows, self.dim))
        self._apply_upsert(docs)
        self._maybe_compact()

    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        if self.log is not None:
            self.log.append(b"D", json.dumps(list(ids)).encode("utf-8"))
        self._apply_delete(ids, replay=False)
        self._maybe_compact()

    def clear(self) -> None:
        if self.log is not None:
            self.log.append(b"C")
        self._apply_clear()
        if self.log is not None:
            self.compact()

    # Both stores keep a docarray document index in `self.index`.
    def exists(self, doc_id: str) -> bool:
        return self.index._doc_exists(doc_id)  # docarray has no public "contains id"

    def count(self) -> int:
        return self.index.num_docs()

    def _search(self, queries: np.ndarray, limit: int):
        result = self.index.find_batched(queries, search_field="embedding", limit=limit)
        return result.documents, result.scores

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


class MemoryStore(LoggedStore):
    """Exact search in memory; snapshot `index.bin` + write-ahead log `index.log` in the workspace."""

    name = "memory"

    def __init__(self, dim: int, workdir: Optional[Path], **persistence: Any):
        from docarray.index import InMemoryExactNNIndex

        super().__init__(dim, workdir, **persistence)
        self._cls = InMemoryExactNNIndex[self.schema]  # type: ignore[index]
        self.index = self._cls()
        self.file = self.workdir / "index.bin" if self.workdir else None
        if self.file is None:
            return
        if self.file.is_file():
            # Load through `index()` (public API) rather than docarray's own file loading.
            stored = DocList[self.schema].load_binary(file=str(self.file))  # type: ignore[index]
            if len(stored):
                self.index.index(stored)
            self.snapshot_bytes = self.file.stat().st_size
        self._open_log(self.workdir / "index.log")

    def _apply_upsert(self, docs: DocList) -> None:
        self.index.index(docs)

    def _apply_delete(self, ids: Sequence[str], replay: bool) -> None:
        present = [i for i in ids if self.exists(i)]
        if present:
            del self.index[present]

    def _apply_clear(self) -> None:
        self.index = self._cls()

    def _write_snapshot(self) -> int:
        assert self.file is not None
        self.file.parent.mkdir(parents=True, exist_ok=True)
        if self.count() == 0:
            if self.file.exists():
                self.file.unlink()
                _fsync_dir(self.file.parent)
            return 0
        tmp = self.file.with_suffix(".bin.tmp")
        self.index.persist(file=str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.file)  # atomic: a crash mid-write keeps the previous snapshot
        _fsync_dir(self.file.parent)
        return self.file.stat().st_size

    def _to_similarity(self, scores: np.ndarray) -> np.ndarray:
        return scores  # space "cosine_sim": already a similarity


class _DeferredSaveIndex:
    """Stands in for the hnswlib index inside docarray's HnswDocumentIndex.

    docarray calls `save_index` (a full rewrite of the graph file) after every
    write and resizes the graph to the exact new size; here `save_index` is a
    no-op (HnswStore writes snapshots at compaction) and capacity grows
    geometrically. Everything else goes to the real index.
    """

    def __init__(self, real: Any):
        self.real = real

    def save_index(self, path: str) -> None:
        pass

    def resize_index(self, size: int) -> None:
        self.real.resize_index(max(int(size), 2 * self.real.get_max_elements()))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class HnswStore(LoggedStore):
    """hnswlib graph + SQLite in `<workspace>/hnsw`, write-ahead log `<workspace>/hnsw.log`."""

    name = "hnsw"
    PERSISTENCE_KEYS = ("fsync", "compact_ratio", "compact_min_bytes")

    def __init__(self, dim: int, workdir: Optional[Path], **options: Any):
        if workdir is None:
            raise ValueError("the hnsw backend needs a workspace (it persists in it)")
        persistence = {k: options.pop(k) for k in self.PERSISTENCE_KEYS if k in options}
        # `allow_replace_deleted: False`: with True, hnswlib refuses to re-add an id
        # that was deleted before (delete then index the same id again).
        self.options = {"ef": 128, "ef_construction": 200, "M": 16, "max_elements": 1024, "num_threads": 1}
        self.options.update(options)
        self.options.update(space="cosine", allow_replace_deleted=False)
        super().__init__(dim, workdir, **persistence)
        assert self.workdir is not None
        self.path = self.workdir / "hnsw"
        for trash in self.workdir.glob("hnsw.trash-*"):  # an interrupted clear
            shutil.rmtree(trash, ignore_errors=True)
        self._open()
        self.snapshot_bytes = self._graph_bytes()
        self._open_log(self.workdir / "hnsw.log")

    def _schema(self) -> Type[BaseDoc]:
        return stored_doc_schema(self.dim, **self.options)

    def _open(self) -> None:
        from docarray.index import HnswDocumentIndex

        self.index = HnswDocumentIndex[self.schema](work_dir=str(self.path))  # type: ignore[index]
        # Private attributes of docarray 0.41 below.
        # Jina runs endpoints in a thread pool, so requests may come from any thread;
        # docarray opens SQLite bound to the creating thread. Reopen it unbound
        # (access is serialised by the indexer's lock).
        self.index._sqlite_conn.close()
        self.index._sqlite_conn = sqlite3.connect(self.index._sqlite_db_path, check_same_thread=False)
        self.index._sqlite_cursor = self.index._sqlite_conn.cursor()
        # No full graph rewrite per write (see _DeferredSaveIndex); snapshots in _write_snapshot.
        for col, real in list(self.index._hnsw_indices.items()):
            self.index._hnsw_indices[col] = _DeferredSaveIndex(real)

    def _graphs(self) -> List[Tuple[Any, str]]:
        return [(idx.real, self.index._hnsw_locations[col]) for col, idx in self.index._hnsw_indices.items()]

    def _graph_bytes(self) -> int:
        return sum(os.path.getsize(loc) for _, loc in self._graphs() if os.path.exists(loc))

    def _apply_upsert(self, docs: DocList) -> None:
        self.index.index(docs)  # SQLite: INSERT OR REPLACE + commit; graph: add_items, in memory

    def _apply_delete(self, ids: Sequence[str], replay: bool) -> None:
        present = [i for i in ids if self.exists(i)]
        if present:
            del self.index[present]  # SQLite delete + commit; graph: mark_deleted, in memory
        if replay:
            # After a crash SQLite (committed per write) may already lack ids that the
            # graph snapshot still holds: mark them deleted in the graph too.
            for doc_id in set(ids) - set(present):
                for real, _ in self._graphs():
                    try:
                        real.mark_deleted(self.index._to_hashed_id(doc_id))
                    except RuntimeError:
                        pass  # not in the graph, or deleted already

    def _apply_clear(self) -> None:
        self._release()
        if self.path.exists():
            trash = self.workdir / f"hnsw.trash-{os.getpid()}"  # type: ignore[operator]
            os.replace(self.path, trash)  # atomic: no half-deleted index is ever opened
            shutil.rmtree(trash, ignore_errors=True)
        self._open()

    def _write_snapshot(self) -> int:
        self.index._sqlite_conn.commit()  # (docarray commits per write already)
        for real, location in self._graphs():
            tmp = location + ".tmp"
            real.save_index(tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, location)
        _fsync_dir(self.path)
        return self._graph_bytes()

    def _to_similarity(self, scores: np.ndarray) -> np.ndarray:
        return 1.0 - scores  # space "cosine": scores are cosine distances

    def _release(self) -> None:
        conn = getattr(self.index, "_sqlite_conn", None)  # no public close in docarray 0.41
        if conn is not None:
            conn.close()
        self.index = None
        gc.collect()

    def close(self) -> None:
        if self.index is None:
            return
        super().close()
        self._release()


def create_store(
    backend: str,
    dim: int,
    workdir: Optional[Path],
    hnsw: Optional[Dict[str, Any]] = None,
    persistence: Optional[Dict[str, Any]] = None,
    milvus: Optional[Dict[str, Any]] = None,
) -> VectorStore:
    """`persistence`: `fsync` (default true), `compact_ratio` (1.0), `compact_min_bytes` (16 MiB).
    `milvus`: the options of `milvus_store.MilvusStore` (uri, collection, index_type, ...);
    Milvus owns its persistence, so `persistence` does not apply to it."""
    if backend == "milvus":
        from .milvus_store import MilvusStore

        return MilvusStore(dim, workdir, **(milvus or {}))  # type: ignore[return-value]  (same contract, duck-typed)
    persistence = dict(persistence or {})
    unknown = set(persistence) - set(HnswStore.PERSISTENCE_KEYS)
    if unknown:
        raise ValueError(f"unknown persistence options {sorted(unknown)}; choose from {HnswStore.PERSISTENCE_KEYS}")
    if backend == "memory":
        return MemoryStore(dim, workdir, **persistence)
    if backend == "hnsw":
        return HnswStore(dim, workdir, **{**(hnsw or {}), **persistence})
    raise ValueError(f"unknown index backend {backend!r}; choose one of {BACKENDS}")


__all__ = ["BACKENDS", "HnswStore", "LoggedStore", "MemoryStore", "VectorStore", "WriteAheadLog", "create_store"]
