"""Training triplets for composed retrieval, over the plain loaders of `mlcl.data`.

A `TripletDataset` wraps one split of a plain loader (`source`: ShapesDataset,
FashionIQ, CIRR or Shoes) and yields, per triplet, the preprocessed reference
and target images, a training caption and, when SSCL needs it, an augmented
view of the reference.  Images get the model's own geometric preprocessing
(target pad, bicubic resize, centre crop) and normalisation, so training and
evaluation see the same pixels.

Two access paths:
* per item (`__getitem__` + `collater`), for DataLoader workers (real data
  sets, whose JPEGs are decoded and augmented in the workers);
* per batch (`get_batch(indices)`), which subclasses with preloaded pixels
  (shapes) implement with batched tensor ops.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from training.common import ImageSpec
from training.datasets.augment import Augment, build_augment


class TripletDataset(Dataset):
    """Triplets (reference, caption, target) of one split, as training samples."""

    dataset_name = ""  # the evaluation protocol's name (mlcl.eval.protocols.PROTOCOLS)
    fast_batches = False  # True when get_batch is a batched fast path (no DataLoader needed)

    def __init__(self, source: Any, split: str, spec: ImageSpec, augment: Any = None, options: dict | None = None):
        self.source = source
        self.split = split
        self.spec = spec
        self.augment_spec = augment
        self.options = dict(options or {})
        self.return_aug = False  # set by the task: stage 2 with SSCL and no feature cache
        # Triplets with a target (test splits may have none); source_index maps back to the loader's list.
        self.source_index: list[int] = [i for i, t in enumerate(source.triplets) if t.get("target") is not None]
        self.triplets: list[dict[str, Any]] = [source.triplets[i] for i in self.source_index]
        self._augment: Augment | None = None
        self._geometric = None

    # ------------------------------------------------------------ set-up
    def set_image_spec(self, spec: ImageSpec) -> None:
        if spec != self.spec:
            self.spec = spec
            self._augment = None
            self._geometric = None
            self._spec_changed()

    def _spec_changed(self) -> None:
        pass

    @property
    def augment(self) -> Augment:
        if self._augment is None:
            self._augment = build_augment(self.augment_spec, self.spec.size)
        return self._augment

    @property
    def geometric(self):
        if self._geometric is None:
            self._geometric = self.spec.geometric()
        return self._geometric

    # ----------------------------------------------------------- content
    def __len__(self) -> int:
        return len(self.triplets)

    def captions_of(self, i: int) -> list[str]:
        """Every training variant of triplet i's caption (one for most data sets)."""
        return [self.triplets[i]["caption"]]

    def train_caption(self, i: int) -> str:
        variants = self.captions_of(i)
        return variants[0] if len(variants) == 1 else random.choice(variants)

    def image_names(self) -> list[str]:
        """Unique images used by the triplets (references and targets), first-use order."""
        return list(dict.fromkeys(n for t in self.triplets for n in (t["reference"], t["target"])))

    def reference_names(self) -> list[str]:
        return list(dict.fromkeys(t["reference"] for t in self.triplets))

    def image_path(self, name: str) -> Path:
        return Path(self.source.image_path(name))

    def load_pil(self, name: str):
        from mlcl.data.images import open_rgb

        return open_rgb(self.image_path(name))

    def identity(self) -> dict[str, Any]:
        """What identifies this split's training content (feature-cache keys)."""
        names = self.image_names()
        h = hashlib.sha1()
        for t in self.triplets:
            h.update(f"{t['reference']}\0{t['target']}\0".encode())
            for c in t.get("captions") or [t.get("caption") or ""]:
                h.update(c.encode() + b"\0")
        h.update("\n".join(names).encode())
        h.update(self.caption_mode().encode())
        root = getattr(self.source, "root", None)
        return {"dataset": self.dataset_name, "split": self.split, "root": str(root) if root else None,
                "triplets": len(self.triplets), "images": len(names), "content": h.hexdigest()}

    def caption_mode(self) -> str:
        """Names how captions_of() forms the training variants (part of cache keys)."""
        return "caption"

    # ---------------------------------------------------------- per item
    def image_tensor(self, name: str, augment: bool = False) -> torch.Tensor:
        """FloatTensor[3,S,S], normalised; `augment` applies the SSCL policy."""
        from torchvision.transforms.functional import to_tensor

        image = self.geometric(self.load_pil(name))
        if augment:
            image = self.augment.pil(image)
        x = to_tensor(image)
        if augment and self.augment.tensor_ops:
            x = self.augment.tensor(x)
        return self.spec.normalize(x.unsqueeze(0))[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        t = self.triplets[i]
        item = {
            "index": i,
            "ref": self.image_tensor(t["reference"]),
            "tgt": self.image_tensor(t["target"]),
            "text": self.train_caption(i),
        }
        if self.return_aug:
            item["ref_aug"] = self.image_tensor(t["reference"], augment=True)
        return item

    @staticmethod
    def collater(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {}
        for key in samples[0]:
            values = [s[key] for s in samples]
            if isinstance(values[0], torch.Tensor):
                batch[key] = torch.stack(values)
            elif isinstance(values[0], int):
                batch[key] = torch.tensor(values)
            else:
                batch[key] = values
        return batch

    def get_batch(self, indices: Sequence[int]) -> dict[str, Any]:
        return self.collater([self[i] for i in indices])

    # ------------------------------------------------- image batches (cache)
    def image_batches(self, names: Sequence[str], augment: bool = False, batch_size: int = 64,
                      num_workers: int = 0) -> Iterator[torch.Tensor]:
        """Normalised image batches of `names` in order (feature cache); `augment`: SSCL views."""
        loader = DataLoader(_Images(self, list(names), augment), batch_size=batch_size, shuffle=False,
                            num_workers=num_workers)
        yield from loader


class _Images(Dataset):
    def __init__(self, owner: TripletDataset, names: list[str], augment: bool):
        self.owner, self.names, self.augment = owner, names, augment

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.owner.image_tensor(self.names[i], augment=self.augment)


def epoch_batches(n: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch; the order depends only on (seed, epoch), so a resumed run can skip ahead."""
    if shuffle:
        g = torch.Generator().manual_seed(int(seed) * 100003 + int(epoch))
        order = torch.randperm(n, generator=g).tolist()
    else:
        order = list(range(n))
    stop = (n // batch_size) * batch_size if drop_last else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


class TripletLoader:
    """Epochs of training batches from a TripletDataset.

    Fast-batch data sets (shapes, preloaded) are batched in this process with
    tensor ops; others go through a DataLoader with workers.  `epoch(e, start)`
    yields the batches of epoch e from batch `start` on (resume mid-epoch).
    """

    def __init__(self, dataset: TripletDataset, batch_size: int, shuffle: bool = True, drop_last: bool = True,
                 num_workers: int = 0, seed: int = 0, pin_memory: bool = False):
        # Grouped data sets (procedural shapes) are batched in whole groups of `group_size` queries.
        self.group_size = int(getattr(dataset, "group_size", 1))
        if batch_size % self.group_size:
            raise ValueError(f"run.batch_size_train={batch_size} must be a multiple of the data set's "
                             f"queries per group ({self.group_size})")
        if len(dataset) < batch_size and drop_last:
            raise ValueError(f"{dataset.dataset_name} {dataset.split}: {len(dataset)} triplets, fewer than one "
                             f"batch of {batch_size}; lower run.batch_size_train")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.num_workers, self.seed, self.pin_memory = num_workers, seed, pin_memory

    def __len__(self) -> int:
        n, bs = len(self.dataset) // self.group_size, self.batch_size // self.group_size
        return n // bs if self.drop_last else -(-n // bs)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, Any]]:
        gs = self.group_size
        batches = epoch_batches(len(self.dataset) // gs, self.batch_size // gs, self.shuffle, self.drop_last,
                                self.seed, epoch)
        batches = batches[start:]
        if not batches:
            return
        if gs > 1:
            for b in batches:
                yield self.dataset.get_group_batch(b, epoch=epoch)
            return
        if self.dataset.fast_batches or self.num_workers == 0:
            for b in batches:
                yield self.dataset.get_batch(b)
            return
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers,
                            collate_fn=self.dataset.collater, pin_memory=self.pin_memory)
        yield from loader
