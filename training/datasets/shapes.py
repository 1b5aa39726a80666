"""Shapes training triplets with the split's images preloaded as one uint8 tensor.

Decoding a PNG per image per step would cost more than the model's step on
2 cores; instead every image of the split is decoded once (after the model's
geometric preprocessing, so at the model's input size), kept as
uint8[N,3,S,S] and cached as a .npy file next to the data; batches are then
gathered, converted and augmented with batched tensor ops.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from training.common import ImageSpec, files_fingerprint
from training.datasets.base import TripletDataset

log = logging.getLogger(__name__)


class _Decode(Dataset):
    def __init__(self, owner: "ShapesTriplets", names: list[str]):
        self.owner, self.names = owner, names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> torch.Tensor:
        from torchvision.transforms.functional import pil_to_tensor

        return pil_to_tensor(self.owner.geometric(self.owner.load_pil(self.names[i])))


class ShapesTriplets(TripletDataset):
    dataset_name = "shapes"

    def __init__(self, source: Any, split: str, spec: ImageSpec, augment: Any = "shapes", options: dict | None = None):
        super().__init__(source, split, spec, augment, options)
        self.preload = bool(self.options.get("preload", True))
        self.fast_batches = self.preload
        self.paraphrases = bool(self.options.get("paraphrases", False))
        self._pixels: torch.Tensor | None = None
        self._rows: dict[str, int] = {}
        self._ref_rows = self._tgt_rows = None
        self._caption_cache: dict[int, list[str]] = {}

    def _spec_changed(self) -> None:
        self._pixels = None

    def load_pil(self, name: str):
        return self.source.load_image(name)

    # ----------------------------------------------------------- captions
    def captions_of(self, i: int) -> list[str]:
        if not self.paraphrases:
            return [self.triplets[i]["caption"]]
        if i not in self._caption_cache:
            self._caption_cache[i] = list(self.source.paraphrases(self.source_index[i]))
        return self._caption_cache[i]

    def caption_mode(self) -> str:
        return "paraphrases" if self.paraphrases else "caption"

    # ------------------------------------------------------------ preload
    def _cache_path(self, names: list[str]) -> Path | None:
        option = self.options.get("image_cache", True)
        if option is False or option is None:
            return None
        base = Path(option) if isinstance(option, str) else Path(self.source.root) / ".mlcl_cache"
        fp = files_fingerprint(self.image_path(n) for n in names)
        return base / f"{self.split}-{self.spec.key()}-{fp[:16]}.npy"

    def pixels(self, num_workers: int = 0, progress: bool = True) -> torch.Tensor:
        """uint8[N,3,S,S] of image_names(), decoded once (and cached on disk)."""
        if self._pixels is not None:
            return self._pixels
        import numpy as np

        names = self.image_names()
        path = self._cache_path(names)
        pixels = None
        if path is not None and path.is_file():
            try:
                arr = np.load(path)
                if arr.shape == (len(names), 3, self.spec.size, self.spec.size):
                    pixels = torch.from_numpy(arr)
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable image cache %s: %s", path, exc)
        if pixels is None:
            pixels = self._decode(names, num_workers, progress)
            if path is not None:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                    with open(tmp, "wb") as f:
                        np.save(f, pixels.numpy())
                    os.replace(tmp, path)
                    (path.parent / "README.json").write_text(json.dumps(
                        {"what": "preloaded uint8 images for mlcl training (safe to delete)"}) + "\n")
                except OSError as exc:
                    log.warning("could not write the image cache %s: %s", path, exc)
        self._pixels = pixels
        self._rows = {n: i for i, n in enumerate(names)}
        self._ref_rows = torch.tensor([self._rows[t["reference"]] for t in self.triplets])
        self._tgt_rows = torch.tensor([self._rows[t["target"]] for t in self.triplets])
        return pixels

    def _decode(self, names: list[str], num_workers: int, progress: bool) -> torch.Tensor:
        from tqdm.auto import tqdm

        out = torch.empty((len(names), 3, self.spec.size, self.spec.size), dtype=torch.uint8)
        loader = DataLoader(_Decode(self, names), batch_size=256, num_workers=num_workers)
        i = 0
        for batch in tqdm(loader, desc=f"decode shapes {self.split} ({self.spec.size}px)", unit="batch",
                          disable=not progress, leave=False):
            out[i : i + len(batch)] = batch
            i += len(batch)
        return out

    # ------------------------------------------------------------ batches
    def _float(self, rows: torch.Tensor) -> torch.Tensor:
        return self.pixels().index_select(0, rows).float().div_(255.0)

    def _augmented(self, x: torch.Tensor) -> torch.Tensor:
        aug = self.augment
        if aug.pil_ops:  # uncommon for shapes: per image through PIL
            from torchvision.transforms.functional import to_pil_image, to_tensor

            x = torch.stack([to_tensor(aug.pil(to_pil_image(img))) for img in x])
        return aug.tensor(x) if aug.tensor_ops else x

    def get_batch(self, indices: Sequence[int]) -> dict[str, Any]:
        if not self.preload:
            return super().get_batch(indices)
        self.pixels()
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        ref = self._float(self._ref_rows[idx])
        batch: dict[str, Any] = {
            "index": idx,
            "ref": self.spec.normalize(ref),
            "tgt": self.spec.normalize(self._float(self._tgt_rows[idx])),
            "text": [self.train_caption(i) for i in idx.tolist()],
        }
        if self.return_aug:
            batch["ref_aug"] = self.spec.normalize(self._augmented(ref))
        return batch

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not self.preload:
            return super().__getitem__(i)
        batch = self.get_batch([i])
        return {k: (v[0] if isinstance(v, (torch.Tensor, list)) else v) for k, v in batch.items()} | {"index": i}

    def image_batches(self, names: Sequence[str], augment: bool = False, batch_size: int = 64,
                      num_workers: int = 0) -> Iterator[torch.Tensor]:
        if not self.preload:
            yield from super().image_batches(names, augment, batch_size, num_workers)
            return
        self.pixels()
        rows = torch.tensor([self._rows[n] for n in names])
        for s in range(0, len(rows), batch_size):
            x = self._float(rows[s : s + batch_size])
            yield self.spec.normalize(self._augmented(x) if augment else x)
