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
    """Open an image as upright RGB at full size (EXIF orientation applied, transparency on white, as
    served: `mlcl.image_decode`); the error names the file."""
    from mlcl.image_decode import open_image

    try:
        return open_image(path)
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


class PixelFiles(Dataset):
    """Items are `(position, pixels, error)` per file: the model's uint8 input (`PixelSpec`, H x W x 3) decoded
    as the served encoder decodes it (`mlcl.image_decode`: JPEG draft, EXIF, transparency on white), or
    None and why the file could not be used. One bad file does not stop a batch; `collate_pixels` batches."""

    def __init__(self, paths: Sequence[str | Path], pixels: "PixelSpec", draft: bool = True) -> None:  # noqa: F821
        self.paths = [Path(p) for p in paths]
        self.pixels, self.draft = pixels, draft

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, "np.ndarray | None", "str | None"]:  # noqa: F821
        from mlcl.image_decode import open_image

        try:
            return index, self.pixels(open_image(self.paths[index], self.pixels, draft=self.draft)), None
        except Exception as exc:  # noqa: BLE001 - reported per file, the rest is encoded
            return index, None, f"{type(exc).__name__}: {exc}"


def collate_pixels(items: Sequence[tuple]) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    """PixelFiles items -> (positions decoded, uint8 tensor (N, H, W, 3) of them or None, [(position, error)])."""
    import numpy as np

    good = [(i, px) for i, px, err in items if err is None]
    errors = [(i, err) for i, _, err in items if err is not None]
    batch = torch.from_numpy(np.stack([px for _, px in good])) if good else None
    return [i for i, _ in good], batch, errors
