"""Image preprocessing: "target pad" (the authors' padding to a bounded aspect ratio), resize, normalise.

The geometric steps are `mlcl.pixels` (PIL only, shared with serving's decode
workers); this module adds the tensor steps.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from mlcl.pixels import PixelSpec, target_pad


class TargetPad:
    """Pad an image so its aspect ratio is at most `target_ratio` (a torchvision-style transform; see `target_pad`)."""

    def __init__(self, target_ratio: float = 1.25):
        self.target_ratio = target_ratio

    def __call__(self, image: Image.Image) -> Image.Image:
        return target_pad(image, self.target_ratio)


def eval_transform(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    target_ratio: float | None = 1.25,
) -> T.Compose:
    """PIL image -> normalised FloatTensor[3, image_size, image_size] (`PixelSpec`, then `ToTensor` + `Normalize`)."""
    return T.Compose([PixelSpec(image_size, target_ratio), T.ToTensor(), T.Normalize(mean, std)])


def pixels_to_batch(
    pixels: Union[Sequence[np.ndarray], np.ndarray, torch.Tensor],
    mean: Sequence[float],
    std: Sequence[float],
    device: Union[str, torch.device] = "cpu",
) -> torch.Tensor:
    """uint8 images (N, H, W, 3) from `PixelSpec` -> the normalised batch (N, 3, H, W), in one tensor op.

    The same arithmetic as `ToTensor` + `Normalize` per image (x / 255, minus mean, over std), so the
    values equal those of `eval_transform` exactly. A uint8 tensor in pinned memory (a DataLoader's
    `pin_memory`) is copied to the GPU asynchronously; uint8 travels, not float (a quarter of the bytes).
    """
    if isinstance(pixels, torch.Tensor):
        batch = pixels
    else:
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(pixels) if not isinstance(pixels, np.ndarray) else pixels))
    batch = batch.to(device, non_blocking=batch.is_pinned()).permute(0, 3, 1, 2).contiguous().float().div(255)  # contiguous NCHW, as stacked ToTensor output
    m = torch.as_tensor(mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    return batch.sub_(m).div_(s)
