"""Image preprocessing: "target pad" (the authors' padding to a bounded aspect ratio), resize, normalise."""

from __future__ import annotations

from typing import Sequence

import torchvision.transforms.functional as TF
from PIL import Image
from torchvision import transforms as T


class TargetPad:
    """Pad an image so its aspect ratio is at most `target_ratio` (1.25 in CLIP4Cir/MLCL).

    Images already within the ratio are left alone; wider or taller ones get
    centred padding on the short side, so the resize keeps the whole garment.
    """

    def __init__(self, target_ratio: float = 1.25):
        self.target_ratio = target_ratio

    def __call__(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        actual = max(w, h) / min(w, h)
        if actual < self.target_ratio:
            return image
        scaled = max(w, h) / self.target_ratio
        hp = max(int((scaled - w) / 2), 0)
        vp = max(int((scaled - h) / 2), 0)
        return TF.pad(image, [hp, vp, hp, vp], 0, "constant")


def _to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def eval_transform(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    target_ratio: float | None = 1.25,
) -> T.Compose:
    """PIL image -> normalised FloatTensor[3, image_size, image_size]."""
    steps = [_to_rgb]
    if target_ratio:
        steps.append(TargetPad(target_ratio))
    steps += [
        T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(image_size),
        T.ToTensor(),
        T.Normalize(mean, std),
    ]
    return T.Compose(steps)

