"""Photo-like JPEGs for benchmarks and checks (no data set host is reachable here).

Two kinds, both as costly to decode as a detailed photograph (pixel noise defeats JPEG's compression):

- `gradient`: a smooth colour gradient plus Gaussian pixel noise (SD 20), saved at quality 90: what
  issue 19 measured (4000x3000 -> ~5.8 MB);
- `scene`: the same background with structures a photo has: soft-edged objects, hard edges, fine
  stripes and a bright/dark contrast, plus the same noise.

    .venv/bin/python bench/photos.py --n 40 --out /tmp/photos          # 40 photos of 4000x3000
    .venv/bin/python bench/photos.py --n 8 --size 640 480 --kind scene --out /tmp/small

`photo_folder(...)` caches a folder under ~/.cache/mlcl/photos/ (keyed by its parameters), so
benchmarks that run again reuse it.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

KINDS = ("gradient", "scene")
CACHE = Path(os.environ.get("MLCL_HOME", Path.home() / ".cache" / "mlcl")).expanduser() / "photos"  # as mlcl.paths


def _background(rng: np.random.Generator, size: Tuple[int, int]) -> Image.Image:
    """A smooth colour gradient: a few random colours on a coarse grid, upsampled bicubically."""
    grid = rng.integers(20, 236, size=(3, 4, 3), dtype=np.uint8)
    return Image.fromarray(grid, "RGB").resize(size, Image.BICUBIC)


def _structures(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """Objects with soft and hard edges, fine stripes and strong contrast, drawn on a quarter-size layer."""
    w, h = image.size
    small = image.resize((max(1, w // 4), max(1, h // 4)), Image.BILINEAR)
    draw = ImageDraw.Draw(small)
    sw, sh = small.size
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = rng.uniform(0, 0.8) * sw, rng.uniform(0, 0.8) * sh
        x1, y1 = x0 + rng.uniform(0.1, 0.4) * sw, y0 + rng.uniform(0.1, 0.4) * sh
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    small = small.filter(ImageFilter.GaussianBlur(radius=max(1, sw // 400)))  # soft object edges
    draw = ImageDraw.Draw(small)
    # fine stripes (a fabric, a fence) and a hard-edged dark/bright block
    x0, y0 = int(rng.uniform(0.05, 0.6) * sw), int(rng.uniform(0.05, 0.6) * sh)
    for k in range(0, sw // 5, 2):
        draw.line((x0 + k, y0, x0 + k, y0 + sh // 4), fill=(250, 250, 250) if k % 4 else (10, 10, 10))
    bx, by = int(rng.uniform(0, 0.7) * sw), int(rng.uniform(0, 0.7) * sh)
    draw.rectangle((bx, by, bx + sw // 6, by + sh // 8), fill=(5, 5, 5))
    draw.polygon([(bx, by), (bx + sw // 8, by + sh // 5), (bx - sw // 10, by + sh // 6)], fill=(250, 245, 230))
    return small.resize((w, h), Image.BICUBIC)


def make_photo(seed: int, size: Tuple[int, int] = (4000, 3000), kind: str = "gradient", noise_sd: float = 20.0,
               quality: int = 90) -> bytes:
    """JPEG bytes of one photo-like image (deterministic for a seed)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    image = _background(rng, size)
    if kind == "scene":
        image = _structures(rng, image)
    arr = np.asarray(image, dtype=np.float32)
    arr = arr + rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(noise_sd)
    out = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _write_one(path: Path, seed: int, size: Tuple[int, int], kind: str, quality: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(make_photo(seed, size, kind, quality=quality))
    tmp.replace(path)


def write_photos(out: Path, n: int, size: Tuple[int, int] = (4000, 3000), kinds: Sequence[str] = ("gradient",),
                 seed: int = 0, quality: int = 90, workers: int = 1) -> list[Path]:
    """n photos `photo_0000.jpg`... in `out` (kinds cycled; `workers` processes); files already there are kept."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"photo_{i:04d}.jpg" for i in range(n)]
    todo = [(p, seed + i, tuple(size), kinds[i % len(kinds)], quality) for i, p in enumerate(paths) if not p.is_file()]
    if workers > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(todo))) as pool:
            list(pool.map(_write_one, *zip(*todo)))
    else:
        for args in todo:
            _write_one(*args)
    return paths


def photo_folder(n: int, size: Tuple[int, int] = (4000, 3000), kinds: Sequence[str] = ("gradient",),
                 seed: int = 0, quality: int = 90, root: Path | None = None, workers: int | None = None) -> Path:
    """A cached folder of exactly `n` photos with these parameters (made on first use, on all cores)."""
    name = f"{size[0]}x{size[1]}_q{quality}_{'+'.join(kinds)}_s{seed}_n{n}"
    folder = Path(root or CACHE) / name
    write_photos(folder, n, size, kinds, seed, quality, workers or os.cpu_count() or 1)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--size", type=int, nargs=2, default=(4000, 3000), metavar=("W", "H"))
    parser.add_argument("--kind", choices=KINDS + ("mixed",), default="gradient")
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    kinds = KINDS if args.kind == "mixed" else (args.kind,)
    paths = write_photos(args.out, args.n, tuple(args.size), kinds, args.seed, args.quality, args.workers)
    total = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} photos in {args.out} ({total / len(paths) / 1e6:.1f} MB each on average)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
