"""Image decoding in worker processes (decoding.py): the same pixels, thumbnails and errors as decoding inline;
a worker that dies fails only the images it held, and the next request is served."""

import asyncio
import io
import os

import numpy as np
import pytest
import torch

from helpers import data_uri, png_bytes
from mlcl.pixels import PixelSpec
from mlcl_executor.decoding import DecodeSpec, ImageDecoder
from mlcl_executor.image_source import ImagePolicy


class WorkerKiller:
    """A value whose unpickling ends the process that receives it (a decoder crash on a hostile file)."""

    def __reduce__(self):
        return (os._exit, (3,))


def values():
    return [
        png_bytes((200, 30, 30), (40, 30)),
        data_uri(png_bytes((30, 200, 30), (90, 20))),
        np.full((16, 24, 3), 120, np.uint8),
        torch.linspace(0, 1, 1200).reshape(3, 20, 20),  # a float CxHxW tensor
        b"corrupt",
        "/etc/passwd",
        png_bytes((10, 10, 10), (300, 200)),
    ]


@pytest.fixture(scope="module")
def spec():
    return DecodeSpec(ImagePolicy.create(), PixelSpec(32, 1.25), thumbnail_size=16, thumbnail_max_bytes=4096)


def same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, str):
            assert x == y
        else:
            np.testing.assert_array_equal(x[0], y[0])
            assert x[1] == y[1]


def test_workers_decode_like_the_calling_thread(spec):
    inline = ImageDecoder(spec, workers=0).decode(values(), thumbnails=True)
    assert [type(r).__name__ for r in inline] == ["tuple"] * 4 + ["str", "str", "tuple"]
    assert inline[0][0].shape == (32, 32, 3) and inline[0][0].dtype == np.uint8 and inline[0][1].startswith("data:image/")
    decoder = ImageDecoder(spec, workers=2, chunk=3)  # three chunks over two workers, answers in order
    try:
        same(decoder.decode(values(), thumbnails=True), inline)
        same(asyncio.run(decoder.decode_async(values(), thumbnails=True)), inline)
        assert decoder.decode([], thumbnails=False) == []
        # the workers import PIL and numpy, not torch (nor jina)
        for pid in decoder.pids:
            maps = open(f"/proc/{pid}/maps").read() if os.path.exists(f"/proc/{pid}/maps") else ""
            assert "libtorch" not in maps and "/torch/" not in maps
    finally:
        decoder.close()


@pytest.mark.parametrize("use_async", [False, True])
def test_a_dead_worker_fails_only_its_images_and_the_pool_restarts(spec, use_async):
    decoder = ImageDecoder(spec, workers=1, chunk=1)
    run = (lambda vs: asyncio.run(decoder.decode_async(vs))) if use_async else decoder.decode
    try:
        out = run([png_bytes(), WorkerKiller()])
        assert isinstance(out[1], str) and "decoder process stopped" in out[1]
        assert isinstance(out[0], (str, tuple))  # queued beside the crash: decoded, or failed with it
        again = run(values())  # a new worker serves the next request
        same(again, ImageDecoder(spec, workers=0).decode(values()))
    finally:
        decoder.close()


def test_workers_exit_when_closed(spec):
    import psutil

    decoder = ImageDecoder(spec, workers=2)
    pids = decoder.pids
    assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    decoder.close()
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    assert decoder.decode([png_bytes()])[0][0].shape == (32, 32, 3)  # closed: decodes inline


def test_negative_workers_are_refused(spec):
    with pytest.raises(ValueError, match="decode workers must be >= 0"):
        ImageDecoder(spec, workers=-1)


def test_answers_use_a_fixed_layout_that_refuses_anything_else():
    import struct

    from mlcl_executor.decoding import pack_results, unpack_results

    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    results = ["document: not an image", (pixels, None), (pixels[:2], "data:image/png;base64,AAAA"), ""]
    data = pack_results(7, results)
    key, back = unpack_results(data)
    assert key == 7 and back[0] == results[0] and back[3] == ""
    np.testing.assert_array_equal(back[1][0], pixels)
    assert back[1][1] is None and back[2][1] == "data:image/png;base64,AAAA"
    assert back[2][0].shape == (2, 5, 3) and back[1][0].flags.writeable
    for bad in (data[:-1], data + b"x", b"garbage", data[:12] + b"\x09" + data[13:]):
        with pytest.raises((ValueError, struct.error)):
            unpack_results(bad)


@pytest.mark.timeout(120)
def test_large_chunks_in_flight_together_do_not_block(spec):
    """Chunks and answers larger than a pipe's buffer, several requests at once: the writer and the reader
    are separate threads (a writer holding up the reader deadlocked here before), and the event loop keeps
    running while chunks queue."""
    from PIL import Image

    def noise_png(seed):
        arr = np.random.default_rng(seed).integers(0, 256, (200, 200, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG")
        return buf.getvalue()

    values = [noise_png(i) for i in range(32)]  # ~4 MB a chunk, ~100 KB an answer
    decoder = ImageDecoder(spec, workers=1, chunk=32)

    async def main():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        ticker = asyncio.create_task(tick())
        out = await asyncio.wait_for(asyncio.gather(*(decoder.decode_async(values) for _ in range(4))), 90)
        ticker.cancel()
        return out, ticks

    try:
        out, ticks = asyncio.run(main())
        assert [len(o) for o in out] == [32] * 4 and all(isinstance(r, tuple) for o in out for r in o)
        assert ticks > 1  # the loop ran while the workers decoded
    finally:
        decoder.close()


@pytest.mark.skipif(not hasattr(__import__("fcntl"), "F_GETPIPE_SZ"), reason="pipe sizes are a Linux feature")
def test_worker_pipes_hold_a_photo_in_few_writes(spec):
    """The pipes to and from a worker are widened (a photo of several MB in a few writes, not a hundred)."""
    import fcntl

    from mlcl_executor.decoding import PIPE_BYTES

    cap = int(open("/proc/sys/fs/pipe-max-size").read())
    decoder = ImageDecoder(spec, workers=1)
    try:
        worker = decoder._worker()
        for stream in (worker.proc.stdin, worker.proc.stdout):
            assert fcntl.fcntl(stream.fileno(), fcntl.F_GETPIPE_SZ) >= min(PIPE_BYTES, cap)
        assert decoder.decode(values()[:1])[0][0].shape == (32, 32, 3)
    finally:
        decoder.close()
