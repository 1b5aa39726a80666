"""Encoded image (bytes, file) -> the RGB PIL image the model and the thumbnail are made from. PIL only.

One loader for every path that turns a user's file into model input: the
served encoder's decode workers (through `mlcl_executor.image_source`, which
adds the safety policy), `mlcl encode`'s DataLoader workers, and the data
sets' `open_rgb`. What it does beyond `Image.open(...).convert("RGB")`:

- **JPEG draft decoding** (when told what the image is for): a photo of 4000x3000
  is decoded by the JPEG decoder's scaled DCT at 1/2, 1/4 or 1/8 of its size, the
  smallest scale that still leaves the model input (`PixelSpec`: pad, resize, crop)
  and the thumbnail a downscale of the decoded image. Other formats (PNG, WebP,
  GIF, ...) decode at full size, as before.
- **EXIF orientation** applied (a phone photo stored sideways is encoded upright).
- **Transparency composited on white** (RGBA, LA, palette images with a
  transparent colour): transparent pixels are white, not whatever colour they
  happen to store (often black).
"""

from __future__ import annotations

import io
import math
import os
from typing import BinaryIO, Callable, Optional, Sequence, Union

from PIL import Image, ImageOps

from .pixels import PixelSpec

Source = Union[bytes, str, "os.PathLike[str]", BinaryIO]
#: Called with (width, height) from the header, before any pixel is decoded; raises to refuse the image.
SizeCheck = Callable[[int, int], None]

WHITE = (255, 255, 255)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def max_reduction(size: tuple[int, int], pixels: Optional[PixelSpec] = None, thumbnail: int = 0) -> float:
    """How many times smaller than `size` an image may be decoded and still serve its uses.

    `pixels`: the model input must come from a downscale (`PixelSpec.max_reduction`); `thumbnail`: a
    thumbnail of that many px on the long side must too. No use given: 1 (full size).
    """
    limits = []
    if pixels is not None:
        limits.append(pixels.max_reduction(*size))
    if thumbnail > 0:
        limits.append(max(size) / thumbnail)
    return max(1.0, min(limits)) if limits else 1.0


def draft_size(size: tuple[int, int], reduction: float) -> Optional[tuple[int, int]]:
    """The size to ask `Image.draft` for so that it scales by at most `reduction`; None when no scale (2, 4, 8) fits.

    PIL picks the largest scale s in (8, 4, 2) with s <= min(w // req_w, h // req_h); requesting
    ceil(w / reduction) keeps s <= reduction, and its output (ceil(w / s)) at least w / reduction.
    """
    if reduction < 2:
        return None
    w, h = size
    return max(1, math.ceil(w / reduction)), max(1, math.ceil(h / reduction))


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparent pixels composited on white (an RGB image is returned as it is)."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def auto_decode_workers(device: str, model_threads: int, cpus: Optional[int] = None) -> int:
    """How many decode processes `auto` means: one per core the model leaves free, at least one.

    On the CPU the model keeps `model_threads` cores (its torch threads); on a GPU it keeps one
    (the thread that feeds it). The cores are those this process may run on.
    """
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    taken = 1 if str(device).startswith("cuda") else max(1, int(model_threads))
    return max(1, cpus - taken)


def open_image(
    source: Source,
    pixels: Optional[PixelSpec] = None,
    thumbnail: int = 0,
    formats: Optional[Sequence[str]] = None,
    check_size: Optional[SizeCheck] = None,
    draft: bool = True,
) -> Image.Image:
    """Decode `source` (bytes, a path or a binary file) to an upright RGB image.

    `pixels` / `thumbnail`: what the image is for (the model input, a thumbnail of that many px a
    side); with `draft` a JPEG is decoded at the smallest scale that serves both (none given: full
    size). `formats`: the PIL formats allowed (default: all). `check_size(w, h)` sees the stored size
    before any pixel is decoded. PIL's own errors pass through (OSError, ValueError, ...).
    """
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with Image.open(fp, formats=list(formats) if formats else None) as im:
        if check_size is not None:
            check_size(*im.size)
        if draft and im.format == "JPEG":
            target = draft_size(im.size, max_reduction(im.size, pixels, thumbnail))
            if target is not None:
                im.draft(None, target)  # before load: the decoder's scaled DCT, not a resize afterwards
        im.load()
        ImageOps.exif_transpose(im, in_place=True)
        return to_rgb(im) if im.mode != "RGB" or "transparency" in im.info else im


__all__ = ["SizeCheck", "Source", "WHITE", "auto_decode_workers", "draft_size", "max_reduction", "open_image", "to_rgb"]
