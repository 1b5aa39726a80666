"""Document images -> model-ready pixels (and gallery thumbnails), in worker processes or inline.

Why processes: the encoder's model and an image decoder both run Python that
needs the GIL, so a decoding thread only takes turns with the model; a worker
process decodes the next request's images on another core while the model
encodes this one's (docs/performance.md). A worker (`decode_worker.py`) imports
only PIL and numpy (`image_source`, `thumbnails`, `mlcl.pixels`): no torch, no
jina; it exits when its pipe closes or the encoder process goes.

What a worker returns per image is `(pixels, thumbnail)` (uint8 HxWx3 from
`PixelSpec`, a data URI or None) or an error string; the encoder normalises the
pixels of a batch in one tensor op (`MLCLModel.images_from_pixels`).

A worker that dies (e.g. a decoder crash on a hostile file) fails only the
images it held: they get an error, the worker is started again, the encoder serves on.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Awaitable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from mlcl.image_decode import auto_decode_workers
from mlcl.pixels import PixelSpec

from .image_source import ImagePolicy, ImageSourceError, Uses, load_image
from .thumbnails import make_thumbnail

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIPE_BYTES = 1 << 20  # the default cap of an unprivileged pipe (/proc/sys/fs/pipe-max-size)

#: One image's outcome: (pixels, thumbnail data URI or None), or why it could not be used.
Decoded = Union[Tuple[np.ndarray, Optional[str]], str]


@dataclass(frozen=True)
class DecodeSpec:
    """Everything a worker needs (picklable): where images may come from, the model's input, thumbnails.

    `draft`: JPEGs decode at the smallest scale that serves the model input and the thumbnail
    (`mlcl.image_decode`); False: at full size."""

    policy: ImagePolicy
    pixels: PixelSpec
    thumbnail_size: int = 128
    thumbnail_max_bytes: int = 32768
    draft: bool = True


def decode_one(value: Any, spec: DecodeSpec, thumbnail: bool = False) -> Decoded:
    """Decode one `image` value under the policy; a failure is returned as its message, never raised."""
    try:
        uses = Uses(spec.pixels, spec.thumbnail_size if thumbnail else 0, spec.draft)
        image = load_image(value, spec.policy, uses)
        small = make_thumbnail(image, spec.thumbnail_size, spec.thumbnail_max_bytes) if thumbnail else None
        return spec.pixels(image), small
    except ImageSourceError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - one image's failure must not fail the others
        return f"image could not be preprocessed ({type(exc).__name__}: {exc})"


def decode_many(values: Sequence[Any], spec: DecodeSpec, thumbnail: bool = False) -> List[Decoded]:
    """`decode_one` over a chunk: the unit of work sent to a worker (one round trip per chunk)."""
    return [decode_one(v, spec, thumbnail) for v in values]


def portable(value: Any) -> Any:
    """An image value a worker can unpickle without torch or docarray: tensors become plain numpy arrays."""
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if hasattr(value, "detach"):  # torch, docarray's TorchTensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):  # docarray's NdArray is a subclass: drop it
        return np.asarray(value).view(np.ndarray)
    return value


def resolve_workers(setting: Union[int, str], device: str, model_threads: int) -> int:
    """The `decode_workers` setting (a count >= 0, or "auto") as a count; ValueError names a bad value."""
    text = str(setting).strip().lower()
    if text == "auto":
        return auto_decode_workers(device, model_threads)
    if isinstance(setting, bool) or not text.isdigit():
        raise ValueError(f"decode_workers must be 'auto' or a count >= 0, got {setting!r}")
    return int(text)


class WorkerDied(RuntimeError):
    """A decode worker process ended while it held images."""


def widen_pipe(stream: Any) -> None:
    """Let a pipe hold up to PIPE_BYTES (Linux; elsewhere, or above the system's cap, it keeps its size):
    a photo of several MB then crosses in a few writes, not a hundred 64 KB ones each waking the other side."""
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


def write_frame(stream: Any, data: bytes) -> None:
    """One message on a pipe: 8-byte length, then the bytes."""
    stream.write(struct.pack("<Q", len(data)))
    stream.write(data)
    stream.flush()


def read_frame(stream: Any) -> bytes:
    """The next message's bytes, or EOFError when the other side has gone."""
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError
    size = struct.unpack("<Q", head)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return data


# Answers travel worker -> encoder in a fixed binary layout, not as pickles: a worker that a hostile image
# took over must not be able to run code in the encoder by what it sends back.
_NONE = 0xFFFFFFFF


def pack_results(key: int, results: Sequence[Decoded]) -> bytes:
    """(key, results) -> bytes: per result an error (tag 0, text) or pixels (tag 1, H, W, C, bytes, thumbnail)."""
    parts = [struct.pack("<QI", key, len(results))]
    for result in results:
        if isinstance(result, str):
            text = result.encode("utf-8")
            parts += [struct.pack("<BI", 0, len(text)), text]
            continue
        pixels, thumb = result
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        h, w, c = pixels.shape
        thumb_bytes = thumb.encode("utf-8") if thumb is not None else b""
        parts += [struct.pack("<BIII", 1, h, w, c), pixels.tobytes(),
                  struct.pack("<I", len(thumb_bytes) if thumb is not None else _NONE), thumb_bytes]
    return b"".join(parts)


def unpack_results(data: bytes) -> Tuple[int, List[Decoded]]:
    """`pack_results` read back; ValueError (struct.error) for bytes that do not follow the layout."""
    view = memoryview(data)
    key, n = struct.unpack_from("<QI", view, 0)
    pos, out = 12, []
    for _ in range(n):
        (tag,) = struct.unpack_from("<B", view, pos)
        if tag == 0:
            (size,) = struct.unpack_from("<I", view, pos + 1)
            text = bytes(view[pos + 5 : pos + 5 + size])
            if len(text) != size:
                raise ValueError("truncated decode answer")
            out.append(text.decode("utf-8"))
            pos += 5 + size
        elif tag == 1:
            h, w, c = struct.unpack_from("<III", view, pos + 1)
            pos += 13
            size = h * w * c
            if c != 3 or pos + size > len(view):
                raise ValueError("malformed decode answer")
            pixels = np.frombuffer(view[pos : pos + size], dtype=np.uint8).reshape(h, w, c).copy()
            pos += size
            (tsize,) = struct.unpack_from("<I", view, pos)
            pos += 4
            thumb = None
            if tsize != _NONE:
                thumb = bytes(view[pos : pos + tsize]).decode("utf-8")
                pos += tsize
            out.append((pixels, thumb))
        else:
            raise ValueError(f"decode answer with unknown tag {tag}")
    if pos != len(view):
        raise ValueError("trailing bytes in a decode answer")
    return key, out


class _Worker:
    """One decode process, `python -m mlcl_executor.decode_worker`, fed chunks over its stdin.

    Not `multiprocessing`: its spawned children re-import the parent's main script, and a user's
    script that builds a Flow without an `if __name__ == "__main__"` guard would run twice.

    Its own threads write the chunks and read the answers: a caller (the encoder's event loop) never
    waits on a pipe, and the reader never waits for the writer (a chunk of large images blocks in
    the pipe until the worker has written its previous answer, which the reader must drain).
    """

    def __init__(self, spec: DecodeSpec) -> None:
        # the worker imports this very copy of mlcl (a checkout on sys.path or the installed package)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen([sys.executable, "-m", "mlcl_executor.decode_worker", str(os.getpid())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        for stream in (self.proc.stdin, self.proc.stdout):
            widen_pipe(stream)
        self._lock = threading.Lock()  # guards `_pending` and `dead`
        self._pending: Dict[int, Future] = {}
        self._ids = itertools.count()
        self._outbox: "queue.SimpleQueue[Optional[bytes]]" = queue.SimpleQueue()
        self.dead: Optional[str] = None
        self._outbox.put(pickle.dumps(spec))  # encoder -> worker: the encoder's own data
        threading.Thread(target=self._write, name="mlcl-decode-writer", daemon=True).start()
        threading.Thread(target=self._read, name="mlcl-decode-reader", daemon=True).start()

    def submit(self, values: List[Any], thumbnails: bool) -> Future:
        fut: Future = Future()
        with self._lock:
            if self.dead:
                fut.set_exception(WorkerDied(self.dead))
                return fut
            key = next(self._ids)
            self._pending[key] = fut
        self._outbox.put(pickle.dumps((key, values, thumbnails), protocol=pickle.HIGHEST_PROTOCOL))
        return fut

    def _write(self) -> None:
        while (data := self._outbox.get()) is not None:
            try:
                write_frame(self.proc.stdin, data)
            except (OSError, ValueError):  # the pipe closed: the worker is gone; the reader fails what it held
                self.proc.kill()
                return
        try:
            self.proc.stdin.close()  # the worker's read sees the end and it exits
        except OSError:
            pass

    def _read(self) -> None:
        try:
            while True:
                key, results = unpack_results(read_frame(self.proc.stdout))
                with self._lock:
                    fut = self._pending.pop(key, None)
                if fut is not None:
                    fut.set_result(results)
        except (EOFError, OSError, ValueError, struct.error, UnicodeDecodeError):
            self.proc.kill()  # gone, or it sent what is not an answer: either way it is not trusted again
        code = self.proc.wait()
        with self._lock:
            self.dead = f"decode worker exited with code {code}"
            pending, self._pending = list(self._pending.values()), {}
        self._outbox.put(None)  # ends the writer
        for fut in pending:
            fut.set_exception(WorkerDied(self.dead))

    def close(self) -> None:
        self._outbox.put(None)  # after what is queued: the writer closes stdin, the worker exits
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class ImageDecoder:
    """Decodes the images of a request, in `workers` processes (0: in the calling thread).

    A request's images go to the workers in chunks of `chunk` (one round trip each, round robin),
    so several workers share a large request; results come back in order.
    """

    def __init__(self, spec: DecodeSpec, workers: int = 1, chunk: int = 32) -> None:
        if workers < 0:
            raise ValueError(f"decode workers must be >= 0, got {workers}")
        self.spec, self.chunk = spec, max(1, int(chunk))
        self._restart = threading.Lock()
        self._next = itertools.count()
        self._workers: List[_Worker] = [_Worker(spec) for _ in range(int(workers))]

    @property
    def pids(self) -> List[int]:
        return [w.proc.pid for w in self._workers]

    def _worker(self) -> _Worker:
        """The next worker, round robin; one that died (a crash on a hostile file) is started again first."""
        i = next(self._next) % len(self._workers)
        worker = self._workers[i]
        if worker.dead:
            with self._restart:
                if self._workers[i] is worker:
                    worker.close()
                    self._workers[i] = _Worker(self.spec)
                worker = self._workers[i]
        return worker

    def _submit(self, values: Sequence[Any], thumbnails: bool) -> List[Tuple[int, Future]]:
        items = [portable(v) for v in values]
        # a request is shared by all workers (chunks of at most `chunk`): photos take tens of ms each
        size = max(1, min(self.chunk, -(-len(items) // len(self._workers))))
        chunks = [items[s : s + size] for s in range(0, len(items), size)]
        return [(len(c), self._worker().submit(c, thumbnails)) for c in chunks]

    @staticmethod
    def _failed(n: int, exc: BaseException) -> List[Decoded]:
        return [f"the image decoder process stopped while this image was queued or decoding ({exc}); "
                "an image in this request may be malformed"] * n

    def decode(self, values: Sequence[Any], thumbnails: bool = False) -> List[Decoded]:
        """Decode `values` (blocking); one result per value, in order."""
        if not self._workers:
            return decode_many(values, self.spec, thumbnails)
        out: List[Decoded] = []
        for n, fut in self._submit(values, thumbnails):
            try:
                out.extend(fut.result())
            except WorkerDied as exc:
                out.extend(self._failed(n, exc))
        return out

    async def decode_async(self, values: Sequence[Any], thumbnails: bool = False) -> List[Decoded]:
        """Decode `values` without blocking the event loop (inline, so blocking, with 0 workers)."""
        return await self.decode_soon(values, thumbnails)

    def decode_soon(self, values: Sequence[Any], thumbnails: bool = False) -> Awaitable[List[Decoded]]:
        """Start decoding `values` now (queued to the workers in order; with 0 workers: decoded here, now) and
        return what to await for the results, so that a caller can queue several parts before awaiting one."""
        if not self._workers:
            done = decode_many(values, self.spec, thumbnails)

            async def ready() -> List[Decoded]:
                return done

            return ready()
        return self._collect(self._submit(values, thumbnails))

    async def _collect(self, submitted: List[Tuple[int, Future]]) -> List[Decoded]:
        results = await asyncio.gather(*(asyncio.wrap_future(f) for _, f in submitted), return_exceptions=True)
        out: List[Decoded] = []
        for (n, _), result in zip(submitted, results):
            if isinstance(result, WorkerDied):
                out.extend(self._failed(n, result))
            elif isinstance(result, BaseException):
                raise result
            else:
                out.extend(result)
        return out

    def close(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()


__all__ = ["DecodeSpec", "Decoded", "ImageDecoder", "WorkerDied", "decode_many", "decode_one", "pack_results",
           "portable", "read_frame", "resolve_workers", "unpack_results", "write_frame"]
