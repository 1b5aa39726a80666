"""Training and evaluation are disjoint: the scenes each side may draw.

The splits are kept apart by seed, but the scene space is small (432
one-object scenes), so a training stream drawn independently would re-draw
evaluation scenes, pixel for pixel.  Two rules keep them apart:

- every training sampler (the train split, the procedural stream) re-draws a
  reference, target or hard negative whose scene key is in
  `training_exclusion()`: the images of the config's
  `training_exclusion.splits` (default sizes) of its `seeds`;
- small scenes (config `reserved_scenes`: at most one object) are split in
  two by a hash of their key, and evaluation splits draw only from their
  share (`TrainingShare`), so the exclusion leaves training the other share
  rather than none.

Keys are regenerated from the seeds (no file is read, no pixel rendered) and
kept for the process: a few seconds once.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from .config import load_config


def reserved_for_training(key: str) -> bool:
    """True for a small scene (config reserved_scenes) in training's share; evaluation splits never draw it."""
    cfg = load_config()
    n_objects = key.count("|") + 1 if key else 0
    if n_objects > cfg.reserved_max_objects:
        return False
    u = int.from_bytes(hashlib.sha1(f"mlcl-shapes-share/{key}".encode()).digest()[:8], "big") / 2**64
    return u >= cfg.reserved_evaluation_share


class TrainingShare:
    """The keys evaluation splits may not draw (`key in TrainingShare()`), as a container."""

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and reserved_for_training(key)


@lru_cache(maxsize=64)
def gallery_scenes(seed: int, split: str, n: int | None = None) -> frozenset[str]:
    """Scene keys of every image of a split of n queries (default size): its gallery."""
    from .generate import make_group, queries_per_group

    n = load_config().default_sizes[split] if n is None else int(n)
    k = queries_per_group(split)
    return frozenset(key for g in range(-(-n // k))
                     for key in make_group(seed, split, g, keep=min(k, n - g * k)).images.values())


@lru_cache(maxsize=8)
def training_exclusion(extra_seeds: tuple[int, ...] = ()) -> frozenset[str]:
    """Scene keys of the evaluation galleries of the config's exclusion seeds (and `extra_seeds`)."""
    cfg = load_config()
    seeds = dict.fromkeys(cfg.training_exclusion_seeds + tuple(int(s) for s in extra_seeds))
    return frozenset().union(*(gallery_scenes(seed, split) for seed in seeds
                               for split in cfg.training_exclusion_splits))


def exclusion_fingerprint(excluded: frozenset[str]) -> str:
    """sha1 of the sorted keys (part of the identity of data drawn with this exclusion)."""
    return hashlib.sha1("\n".join(sorted(excluded)).encode()).hexdigest()
