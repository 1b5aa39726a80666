"""A Dataset of image files opened lazily, for batched encoding with a DataLoader.

Only paths are held; each item is decoded when the DataLoader asks for it and
dropped once the batch has been encoded, so a 20,000-image gallery never sits
in memory as pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

Preprocess = Callable[["PIL.Image.Image"], torch.Tensor]  # noqa: F821 (PIL imported lazily)


def open_rgb(path: str | Path) -> "PIL.Image.Image":  # noqa: F821
    """Open an image as RGB; the error names the file."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    except OSError as exc:
        raise OSError(f"cannot read image {path}: {exc}") from exc


class ImageFiles(Dataset):
    """Items are `preprocess(PIL image)` for each path, in the given order."""

    def __init__(self, paths: Sequence[str | Path], preprocess: Preprocess) -> None:
        self.paths = [Path(p) for p in paths]
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.preprocess(open_rgb(self.paths[index]))
