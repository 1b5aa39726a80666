"""Stage-2 feature cache: encode the frozen backbone's inputs once.

In stage 2 the backbone is frozen, so its features of a given input never
change.  Before training, every image of the split (references and targets)
is encoded once, every caption variant once (FashionIQ: all four), and each
reference's SSCL view K times (`run.sscl_cached_views`, each view a fresh
draw of the data set's augmentation policy).  A training step then gathers
rows of these tables and only runs the combiner: one of the K views and one of
the caption variants are drawn per sample per step.

The cache is saved under `run.feature_cache_dir` (default
$MLCL_HOME/cache/features) with a key built from the backbone's weights, the
data set's content, the image preprocessing, the augmentation policy, K and
the seed, so stage-2 runs of several methods from one stage-1 checkpoint
share it.

`FrozenFeatureMemo` does the same for evaluation: wrapped around a stage-2
model, it memoises image and text features by content, so the per-epoch
validation encodes the gallery once per run, not once per epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from training.common import state_fingerprint, to_plain
from training.datasets.base import TripletDataset, epoch_batches

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: hard negatives and groups (procedural shapes), caption variants drawn uniformly


def default_cache_dir() -> Path:
    from mlcl.paths import mlcl_home

    return mlcl_home() / "cache" / "features"


@dataclass
class FeatureCache:
    f_img: torch.Tensor  # [N_img, D] backbone image features (as the combiner consumes them)
    f_txt: torch.Tensor  # [N_txt, D]
    ref_rows: torch.Tensor  # [T] row of each triplet's reference in f_img
    tgt_rows: torch.Tensor  # [T]
    txt_rows: torch.Tensor  # [T, V] rows of each triplet's caption variants in f_txt (padded with -1 to V)
    f_aug: torch.Tensor | None = None  # [R, K, D] SSCL views of each reference
    aug_rows: torch.Tensor | None = None  # [T] row of each triplet's reference in f_aug
    neg_rows: torch.Tensor | None = None  # [T, S] rows in f_img of each triplet's hard negatives (procedural shapes)
    group_size: int = 1  # batches are whole groups of this many consecutive triplets
    txt_counts: torch.Tensor | None = None  # [T] variants per triplet (None: all V slots are variants)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ref_rows.shape[0])

    @property
    def views(self) -> int:
        return 0 if self.f_aug is None else int(self.f_aug.shape[1])

    def to(self, device: torch.device | str) -> "FeatureCache":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return FeatureCache(**moved)

    def batch(self, indices: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Features of a batch of triplets: one caption variant and one SSCL view drawn per sample."""
        dev = self.f_img.device
        idx = indices.to(dev)
        n = idx.shape[0]
        v = self.txt_rows.shape[1]
        if v > 1:
            # uniform over each triplet's own variants (not over padded slots)
            counts = self.txt_counts[idx] if self.txt_counts is not None else torch.full((n,), v, device=dev)
            pick = (torch.rand(n, generator=generator).to(dev) * counts).long().clamp_(max=v - 1)
        else:
            pick = torch.zeros(n, dtype=torch.long, device=dev)
        out = {
            "index": idx,
            "f_ref": self.f_img[self.ref_rows[idx]],
            "f_tgt": self.f_img[self.tgt_rows[idx]],
            "f_txt": self.f_txt[self.txt_rows[idx, pick]],
        }
        if self.f_aug is not None:
            k = torch.randint(0, self.views, (n,), generator=generator).to(dev)
            out["f_ref_aug"] = self.f_aug[self.aug_rows[idx], k]
        if self.neg_rows is not None and self.neg_rows.shape[1]:
            out["f_neg"] = self.f_img[self.neg_rows[idx].reshape(-1)]
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({k: v for k, v in self.__dict__.items()}, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FeatureCache":
        data = torch.load(path, map_location="cpu", weights_only=True)
        return cls(**data)


    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.__dict__.values() if isinstance(v, torch.Tensor))


def cache_key(model: Any, dataset: TripletDataset, views: int, seed: int) -> tuple[str, dict[str, Any]]:
    """(hex key, the description it hashes) of a cache for `model`'s frozen backbone on `dataset`."""
    desc = {
        "version": CACHE_VERSION,
        "backbone": model.config["backbone"]["model_name"],
        "backbone_weights": state_fingerprint(model.backbone),
        "normalize_features": bool(model.normalize_features),
        "data": dataset.identity(),
        "image": {"size": dataset.spec.size, "mean": list(dataset.spec.mean), "std": list(dataset.spec.std),
                  "pad_ratio": dataset.spec.pad_ratio},
        "augment": dataset.augment.describe() if views else None,
        "views": int(views),
        "seed": int(seed),
    }
    key = hashlib.sha1(json.dumps(to_plain(desc), sort_keys=True).encode()).hexdigest()[:20]
    return key, desc


@torch.no_grad()
def _encode_images(model: Any, dataset: TripletDataset, names: Sequence[str], augment: bool, batch_size: int,
                   num_workers: int, device: torch.device, desc: str, progress: bool) -> torch.Tensor:
    from tqdm.auto import tqdm

    feats = []
    total = -(-len(names) // batch_size)
    for batch in tqdm(dataset.image_batches(names, augment, batch_size, num_workers), total=total, desc=desc,
                      unit="batch", disable=not progress, leave=False):
        feats.append(model.image_features(batch.to(device, non_blocking=True)).float())
    return torch.cat(feats)


@torch.no_grad()
def _encode_texts(model: Any, texts: Sequence[str], batch_size: int, device: torch.device, progress: bool) -> torch.Tensor:
    from tqdm.auto import tqdm

    feats = []
    for s in tqdm(range(0, len(texts), batch_size), desc="cache captions", unit="batch", disable=not progress,
                  leave=False):
        feats.append(model.text_features(list(texts[s : s + batch_size])).float())
    return torch.cat(feats)


def build_feature_cache(model: Any, dataset: TripletDataset, views: int = 4, batch_size: int = 256,
                        num_workers: int = 0, device: torch.device | str = "cpu", seed: int = 0,
                        cache_dir: str | Path | None = None, progress: bool = True) -> FeatureCache:
    """Encode `dataset` with `model`'s (frozen) backbone; load it instead when a matching cache file exists.

    model: an MLCLModel.  views: SSCL views per reference (0 = none, for methods without SSCL).
    cache_dir: where cache files live; False/"none" = do not save.
    """
    device = torch.device(device)
    key, desc = cache_key(model, dataset, views, seed)
    save = cache_dir not in (False, "none", "")
    path = Path(cache_dir or default_cache_dir()) / f"{dataset.dataset_name}-{dataset.split}-{key}.pt" if save else None
    if path is not None and path.is_file():
        try:
            cache = FeatureCache.load(path)
            log.info("feature cache: loaded %s (%d triplets, %d views)", path, len(cache), cache.views)
            cache.meta = {**cache.meta, "path": str(path), "loaded": True}
            return cache
        except Exception as exc:  # a truncated or foreign file: rebuild
            log.warning("feature cache %s unreadable (%s); rebuilding", path, exc)

    t0 = time.time()
    with _eval_seeded(model, seed):
        names = dataset.image_names()
        row = {n: i for i, n in enumerate(names)}
        f_img = _encode_images(model, dataset, names, False, batch_size, num_workers, device, "cache images", progress)
        variants = [dataset.captions_of(i) for i in range(len(dataset))]
        texts = list(dict.fromkeys(c for vs in variants for c in vs))
        trow = {c: i for i, c in enumerate(texts)}
        f_txt = _encode_texts(model, texts, batch_size, device, progress)
        v = max(len(vs) for vs in variants)
        txt_rows = torch.tensor([[trow[vs[j]] if j < len(vs) else -1 for j in range(v)] for vs in variants],
                                dtype=torch.long)
        txt_counts = torch.tensor([len(vs) for vs in variants], dtype=torch.long)
        f_aug = aug_rows = None
        if views > 0:
            refs = dataset.reference_names()
            rrow = {n: i for i, n in enumerate(refs)}
            f_aug = torch.stack(
                [_encode_images(model, dataset, refs, True, batch_size, num_workers, device,
                                f"cache SSCL view {k + 1}/{views}", progress) for k in range(views)], dim=1)
            aug_rows = torch.tensor([rrow[t["reference"]] for t in dataset.triplets], dtype=torch.long)
        neg_rows = None
        if hasattr(dataset, "negative_names"):
            neg_rows = torch.tensor([[row[n] for n in dataset.negative_names(i)] for i in range(len(dataset))],
                                    dtype=torch.long).reshape(len(dataset), -1)
    cache = FeatureCache(
        f_img=f_img.cpu(), f_txt=f_txt.cpu(),
        ref_rows=torch.tensor([row[t["reference"]] for t in dataset.triplets], dtype=torch.long),
        tgt_rows=torch.tensor([row[t["target"]] for t in dataset.triplets], dtype=torch.long),
        txt_rows=txt_rows, f_aug=None if f_aug is None else f_aug.cpu(), aug_rows=aug_rows,
        neg_rows=neg_rows, group_size=int(getattr(dataset, "group_size", 1)), txt_counts=txt_counts,
        meta=to_plain({"key": key, "desc": desc, "seconds": round(time.time() - t0, 2), "images": len(names),
                       "texts": len(texts), "views": views}),
    )
    log.info("feature cache: encoded %d images, %d captions, %d SSCL views in %.1f s", len(names), len(texts), views,
             time.time() - t0)
    if path is not None:
        cache.save(path)
        cache.meta["path"] = str(path)
    cache.meta["loaded"] = False
    return cache


@torch.no_grad()
def redraw_sscl_views(cache: FeatureCache, model: Any, dataset: TripletDataset, seed: int, batch_size: int = 256,
                      num_workers: int = 0, device: torch.device | str = "cpu", progress: bool = False) -> None:
    """Replace the cache's K SSCL views by K fresh draws (seeded), in place.

    The authors draw a fresh augmentation every step; caching K views is our
    departure (docs/training.md).  `run.sscl_redraw_every: N` calls this every
    N epochs, so a run sees K * (epochs / N) views per reference instead of K.
    """
    if cache.f_aug is None:
        return
    device = torch.device(device)
    with _eval_seeded(model, seed):
        refs = dataset.reference_names()
        views = [_encode_images(model, dataset, refs, True, batch_size, num_workers, device,
                                f"redraw SSCL view {k + 1}/{cache.views}", progress) for k in range(cache.views)]
        cache.f_aug = torch.stack(views, dim=1).to(cache.f_img.device)


@contextlib.contextmanager
def _eval_seeded(model: Any, seed: int) -> Iterator[None]:
    """The model in eval mode and torch's RNG seeded (the views are reproducible) for the block; both restored."""
    was_training = model.training
    model.eval()
    rng_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(rng_state)
        model.train(was_training)


class CachedFeatureLoader:
    """Epochs of batches of cached features (same interface as TripletLoader)."""

    def __init__(self, cache: FeatureCache, batch_size: int, shuffle: bool = True, drop_last: bool = True,
                 seed: int = 0, device: torch.device | str = "cpu"):
        if len(cache) < batch_size and drop_last:
            raise ValueError(f"{len(cache)} cached triplets, fewer than one batch of {batch_size}; "
                             "lower run.batch_size_train")
        self.cache = cache.to(device)
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.group_size = int(cache.group_size)
        if batch_size % self.group_size:
            raise ValueError(f"run.batch_size_train={batch_size} must be a multiple of the queries per group "
                             f"({self.group_size})")

    def __len__(self) -> int:
        n, bs = len(self.cache) // self.group_size, self.batch_size // self.group_size
        return n // bs if self.drop_last else -(-n // bs)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        gs = self.group_size
        batches = epoch_batches(len(self.cache) // gs, self.batch_size // gs, self.shuffle, self.drop_last, self.seed,
                                epoch)
        for b in batches[start:]:
            # whole groups: triplets g*gs .. g*gs+gs-1 of each group g
            idx = (torch.tensor(b).view(-1, 1) * gs + torch.arange(gs).view(1, -1)).reshape(-1)
            yield self.cache.batch(idx)


class FrozenFeatureMemo:
    """An MLCLModel with a frozen backbone whose image/text features are memoised by input content.

    Only for models whose backbone does not change (stage 2); everything else
    is delegated to the wrapped model.
    """

    def __init__(self, model: Any):
        self._model = model
        self._images: dict[str, torch.Tensor] = {}
        self._texts: dict[tuple[str, ...], torch.Tensor] = {}
        self.hits = self.misses = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach()
        h = hashlib.sha1(str((tuple(x.shape), str(x.dtype))).encode())
        h.update(x.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        key = h.hexdigest()
        if key not in self._images:
            self.misses += 1
            self._images[key] = self._model.image_features(images)
        else:
            self.hits += 1
        return self._images[key]

    def text_features(self, texts: Any) -> torch.Tensor:
        if isinstance(texts, torch.Tensor):
            return self._model.text_features(texts)
        key = tuple(texts)
        if key not in self._texts:
            self._texts[key] = self._model.text_features(list(texts))
        return self._texts[key]
