"""Document images -> model-ready pixels (and gallery thumbnails), in worker processes or inline.

Why processes: the encoder's model and an image decoder both run Python that
needs the GIL, so a decoding thread only takes turns with the model; a worker
process decodes the next request's images on another core while the model
encodes this one's (docs/performance.md). A worker imports only PIL and numpy
(`image_source`, `thumbnails`, `mlcl.pixels`): no torch, no jina.

What a worker returns per image is `(pixels, thumbnail)` (uint8 HxWx3 from
`PixelSpec`, a data URI or None) or an error string; the encoder normalises the
pixels of a batch in one tensor op (`MLCLModel.images_from_pixels`).

A worker that dies (e.g. a decoder crash on a hostile file) fails only the
images it held: they get an error, the pool starts again, the encoder serves on.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from mlcl.pixels import PixelSpec

from .image_source import ImagePolicy, ImageSourceError, load_image
from .thumbnails import make_thumbnail

#: One image's outcome: (pixels, thumbnail data URI or None), or why it could not be used.
Decoded = Union[Tuple[np.ndarray, Optional[str]], str]


@dataclass(frozen=True)
class DecodeSpec:
    """Everything a worker needs (picklable): where images may come from, the model's input, thumbnails."""

    policy: ImagePolicy
    pixels: PixelSpec
    thumbnail_size: int = 128
    thumbnail_max_bytes: int = 32768


def decode_one(value: Any, spec: DecodeSpec, thumbnail: bool = False) -> Decoded:
    """Decode one `image` value under the policy; a failure is returned as its message, never raised."""
    try:
        image = load_image(value, spec.policy)
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


def _worker_init(parent: int) -> None:
    # Ctrl-C reaches the whole process group: the encoder shuts its pool down, the worker must not print a
    # traceback. And a worker must not outlive an encoder killed without shutting down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="mlcl-decode-watch", daemon=True).start()


def _ready() -> bool:
    return True


class ImageDecoder:
    """Decodes the images of a request, in `workers` processes (0: in the calling thread).

    A request's images go to the workers in chunks of `chunk` (one round trip each), so several
    workers share a large request and results come back in order.
    """

    def __init__(self, spec: DecodeSpec, workers: int = 1, chunk: int = 32) -> None:
        if workers < 0:
            raise ValueError(f"decode workers must be >= 0, got {workers}")
        self.spec, self.workers, self.chunk = spec, int(workers), max(1, int(chunk))
        self._pool: Optional[ProcessPoolExecutor] = None
        self._restart = threading.Lock()
        if self.workers:
            self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # spawn: the encoder process has torch's threads running, and a fork of it may deadlock
        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init, initargs=(os.getpid(),))
        for _ in range(self.workers):  # start the workers now (beside the model's load), not at the first request
            pool.submit(_ready)
        return pool

    def _chunks(self, values: Sequence[Any]) -> List[List[Any]]:
        items = [portable(v) for v in values]
        return [items[s : s + self.chunk] for s in range(0, len(items), self.chunk)]

    def _restarted(self, pool: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """A pool in place of `pool`, whose worker died (started once, however many requests notice)."""
        with self._restart:
            if self._pool is pool:
                pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._start()
            return self._pool  # type: ignore[return-value]

    def _submit(self, submit: Callable[[ProcessPoolExecutor, List[Any]], Any], chunks: List[List[Any]]) -> Tuple[ProcessPoolExecutor, List[Any]]:
        """One task per chunk; a pool whose worker died since the last request refuses work: started again first."""
        for attempt in (0, 1):
            pool = self._pool
            assert pool is not None
            try:
                return pool, [submit(pool, chunk) for chunk in chunks]
            except BrokenProcessPool:
                if attempt:
                    raise
                self._restarted(pool)
        raise AssertionError("unreachable")

    def _failed(self, pool: ProcessPoolExecutor, n: int, exc: BaseException) -> List[Decoded]:
        """The images of a chunk whose worker died: each gets the reason; the pool is started again."""
        self._restarted(pool)
        return [f"the image decoder process stopped while decoding this image ({type(exc).__name__}); "
                "the image may be malformed"] * n

    def decode(self, values: Sequence[Any], thumbnails: bool = False) -> List[Decoded]:
        """Decode `values` (blocking); one result per value, in order."""
        if self._pool is None:
            return decode_many(values, self.spec, thumbnails)
        chunks = self._chunks(values)
        pool, futures = self._submit(lambda p, c: p.submit(decode_many, c, self.spec, thumbnails), chunks)
        out: List[Decoded] = []
        for chunk, fut in zip(chunks, futures):
            try:
                out.extend(fut.result())
            except BrokenProcessPool as exc:
                out.extend(self._failed(pool, len(chunk), exc))
        return out

    async def decode_async(self, values: Sequence[Any], thumbnails: bool = False) -> List[Decoded]:
        """Decode `values` without blocking the event loop (inline, so blocking, with 0 workers)."""
        if self._pool is None:
            return decode_many(values, self.spec, thumbnails)
        chunks = self._chunks(values)
        loop = asyncio.get_running_loop()
        pool, futures = self._submit(lambda p, c: loop.run_in_executor(p, decode_many, c, self.spec, thumbnails), chunks)
        out: List[Decoded] = []
        for chunk, result in zip(chunks, await asyncio.gather(*futures, return_exceptions=True)):
            if isinstance(result, BrokenProcessPool):
                out.extend(self._failed(pool, len(chunk), result))
            elif isinstance(result, BaseException):
                raise result
            else:
                out.extend(result)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


__all__ = ["DecodeSpec", "Decoded", "ImageDecoder", "decode_many", "decode_one", "portable"]
