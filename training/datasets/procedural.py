"""Shapes training triplets drawn procedurally, in whole groups that carry their hard negatives.

`datasets.shapes.procedural: {groups: N, queries_per_group: k, target_siblings: s, seed: S}`
replaces the fixed train split by N groups per epoch of mlcl.data.shapes.procedural
(k queries sharing a reference, s text-only hard negatives per query), drawn
and rendered on demand; each epoch draws new groups of the stream (the stream
never draws a scene of an evaluation gallery, and its small scenes do recur:
mlcl.data.shapes.procedural).  Batches are
whole groups (`group_size`), so the in-batch negatives of a query include the
other edits of its reference and the siblings of its target, as in the
evaluation galleries.

Stage 1 calls `get_group_batch(groups)`.  The stage-2 feature cache needs
named images: `triplets`, `image_names()` etc. materialise the pool's
records on first use (keep N small there: every image is encoded once).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from training.common import ImageSpec
from training.datasets.base import TripletDataset


class ProceduralShapesTriplets(TripletDataset):
    dataset_name = "shapes"
    fast_batches = True

    def __init__(self, split: str, spec: ImageSpec, augment: Any = "shapes", options: dict | None = None):
        # No file-backed source: the base __init__ reads source.triplets, so set the fields here.
        self.source = None
        self.split = split
        self.spec = spec
        self.augment_spec = augment
        self.options = dict(options or {})
        self.return_aug = False
        self._augment = None
        self._geometric = None
        proc = dict(self.options.get("procedural") or {})
        self.groups = int(proc.get("groups", 50000))
        self.group_size = int(proc.get("queries_per_group", 4))
        self.target_siblings = int(proc.get("target_siblings", 1))
        self.seed = int(proc.get("seed", 1))
        self.data_size = int(self.options.get("image_size", 64))
        if self.groups < 1 or self.group_size < 1 or self.target_siblings < 0:
            raise ValueError(f"datasets.shapes.procedural needs groups >= 1, queries_per_group >= 1, "
                             f"target_siblings >= 0; got {proc}")
        self._records: list[dict[str, Any]] | None = None
        self._scenes: dict[str, Any] = {}
        self.group_cache = lru_cache(maxsize=4096)(self._group)

    def describe(self) -> dict[str, Any]:
        return {"groups": self.groups, "queries_per_group": self.group_size,
                "target_siblings": self.target_siblings, "seed": self.seed, "image_size": self.data_size}

    def __len__(self) -> int:
        return self.groups * self.group_size

    def _group(self, g: int):
        from mlcl.data.shapes.procedural import training_group

        return training_group(self.seed, g, self.group_size, self.target_siblings)

    # ------------------------------------------------------------ pixels
    def _pixels(self, scenes: Sequence[Any]) -> torch.Tensor:
        """Normalised float[N,3,S,S] of scenes, through the model's geometric preprocessing when sizes differ."""
        from mlcl.data.shapes.procedural import render_array

        arr = torch.from_numpy(np.stack([render_array(s, self.data_size) for s in scenes]))
        if self.data_size != self.spec.size:
            from torchvision.transforms.functional import pil_to_tensor, to_pil_image

            arr = torch.stack([pil_to_tensor(self.geometric(to_pil_image(a))) for a in arr])
        return arr.float().div_(255.0)

    def get_group_batch(self, groups: Sequence[int], epoch: int = 0) -> dict[str, Any]:
        """Batch of whole groups: refs [G] (one per group), ref_index [G*k], tgt [G*k], text [G*k], neg [G*k*s].

        Epoch e draws groups e*N .. e*N+N-1 of the stream (N = `groups`): no triplet is seen twice.
        """
        groups = [int(g) + epoch * self.groups for g in groups]
        recs = [self._group(g) for g in groups]
        k, s = self.group_size, self.target_siblings
        refs = self._pixels([r.reference for r in recs])
        batch: dict[str, Any] = {
            "index": torch.as_tensor([int(g) * k + i for g in groups for i in range(k)]),
            "ref": self.spec.normalize(refs),
            "ref_index": torch.arange(len(recs)).repeat_interleave(k),
            "tgt": self.spec.normalize(self._pixels([t for r in recs for t in r.targets])),
            "text": [c for r in recs for c in r.captions],
        }
        if s:
            batch["neg"] = self.spec.normalize(self._pixels([n for r in recs for negs in r.negatives for n in negs]))
        if self.return_aug:
            aug = self.augment.tensor(refs[batch["ref_index"]]) if self.augment.tensor_ops else refs[batch["ref_index"]]
            batch["ref_aug"] = self.spec.normalize(aug)
        return batch

    def get_batch(self, indices: Sequence[int]) -> dict[str, Any]:
        raise TypeError("procedural shapes batches are whole groups: use get_group_batch (TripletLoader does)")

    def __getitem__(self, i: int) -> dict[str, Any]:
        raise TypeError("procedural shapes batches are whole groups: use get_group_batch (TripletLoader does)")

    # ---------------------------------------------- named view (feature cache)
    def _materialise(self) -> None:
        if self._records is not None:
            return
        recs, scenes = [], {}
        for g in range(self.groups):
            grp = self.group_cache(g)
            ref = f"p{g:07d}_r"
            scenes[ref] = grp.reference
            for i in range(self.group_size):
                tgt = f"p{g:07d}_t{i}"
                scenes[tgt] = grp.targets[i]
                negs = []
                for j, n in enumerate(grp.negatives[i]):
                    negs.append(f"p{g:07d}_n{i}_{j}")
                    scenes[negs[-1]] = n
                recs.append({"reference": ref, "target": tgt, "caption": grp.captions[i], "negatives": negs,
                             "kind": grp.mods[i].kind})
        self._records, self._scenes = recs, scenes

    @property
    def triplets(self) -> list[dict[str, Any]]:  # type: ignore[override]
        self._materialise()
        return self._records  # type: ignore[return-value]

    @triplets.setter
    def triplets(self, value: Any) -> None:  # the base class assigns it; ignored
        pass

    @property
    def source_index(self) -> list[int]:  # type: ignore[override]
        return list(range(len(self)))

    @source_index.setter
    def source_index(self, value: Any) -> None:
        pass

    def image_names(self) -> list[str]:
        self._materialise()
        return list(self._scenes)

    def negative_names(self, i: int) -> list[str]:
        return list(self.triplets[i]["negatives"])

    def identity(self) -> dict[str, Any]:
        from mlcl.data.shapes.exclusion import exclusion_fingerprint, training_exclusion
        from mlcl.data.shapes.generate import GENERATOR_VERSION

        # The groups depend on the scenes they must avoid (every evaluation gallery's) and on the generator.
        return {"dataset": self.dataset_name, "split": self.split, "procedural": self.describe(),
                "generator": f"mlcl.data.shapes.procedural/{GENERATOR_VERSION}",
                "excluded": exclusion_fingerprint(training_exclusion())}

    def image_batches(self, names: Sequence[str], augment: bool = False, batch_size: int = 64,
                      num_workers: int = 0) -> Iterator[torch.Tensor]:
        self._materialise()
        for s in range(0, len(names), batch_size):
            x = self._pixels([self._scenes[n] for n in names[s : s + batch_size]])
            if augment and self.augment.tensor_ops:
                x = self.augment.tensor(x)
            yield self.spec.normalize(x)
