"""The geometric part of the eval transform, in PIL and numpy only (no torch).

An image becomes model-ready in two steps: `PixelSpec` (RGB, "target pad",
bicubic resize of the short side, centre crop -> uint8 HxWx3) and a batched
normalisation on tensors (`mlcl.model.transforms.pixels_to_batch`). The first
step is the costly, per-image one; keeping it free of torch lets a serving
process run it in light worker processes. `eval_transform` is built from it,
so training, evaluation and serving share one implementation; it reproduces
torchvision's Resize + CenterCrop on PIL images bit for bit (tests/test_pixels.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image, ImageOps


def target_pad(image: Image.Image, target_ratio: float) -> Image.Image:
    """Pad `image` so its aspect ratio is at most `target_ratio` (1.25 in CLIP4Cir/MLCL).

    Images already within the ratio are left alone; wider or taller ones get
    centred black padding on the short side, so the resize keeps the whole garment.
    """
    w, h = image.size
    if max(w, h) / min(w, h) < target_ratio:
        return image
    scaled = max(w, h) / target_ratio
    hp = max(int((scaled - w) / 2), 0)
    vp = max(int((scaled - h) / 2), 0)
    fill = 0 if len(image.getbands()) == 1 else (0,) * len(image.getbands())
    return ImageOps.expand(image, border=(hp, vp, hp, vp), fill=fill)


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
    """Bicubic resize so the short side is `size` (the long side rounded down, as torchvision does)."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return image
    return image.resize((new_w, new_h), Image.BICUBIC)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The centred `size` x `size` square of an image whose short side is at least `size`."""
    w, h = image.size
    if w < size or h < size:
        raise ValueError(f"center_crop: image {w}x{h} is smaller than the crop {size}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


@dataclass(frozen=True)
class PixelSpec:
    """PIL image -> uint8 array (image_size, image_size, 3): what the model's image encoder sees, before normalising.

    Small and picklable: a decode worker process receives it once.
    """

    image_size: int
    target_ratio: Optional[float] = 1.25

    def max_reduction(self, width: int, height: int) -> float:
        """How many times smaller than width x height an image may be and still be shrunk, never enlarged, to
        the model input (what JPEG draft decoding may skip, `mlcl.image_decode`).

        Padded images (aspect ratio >= `target_ratio`) reach the input through their long side (short side
        after padding = long / ratio); others through their short side.
        """
        short, long = sorted((int(width), int(height)))
        if short <= 0:
            return 1.0
        if self.target_ratio and long / short >= self.target_ratio:
            return long / (self.image_size * self.target_ratio)
        return short / self.image_size

    def __call__(self, image: Image.Image) -> np.ndarray:
        if image.mode != "RGB":  # (convert would copy an RGB image, e.g. every decoded one)
            image = image.convert("RGB")
        if self.target_ratio:
            image = target_pad(image, self.target_ratio)
        image = center_crop(resize_short_side(image, self.image_size), self.image_size)
        return np.array(image, dtype=np.uint8)  # a writable copy (torch refuses to wrap read-only memory)


__all__ = ["PixelSpec", "center_crop", "resize_short_side", "target_pad"]
