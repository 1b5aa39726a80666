"""Procedural training groups: fresh shapes triplets drawn on demand, with hard negatives.

The benchmark is procedural, so training can draw fresh triplets: group g of a seed is a reference scene, k edits of it (k queries with
distinct targets, sampled like an evaluation split's queries) and, per query,
`target_siblings` text-only hard negatives (its target with one more change to
an object the caption does not mention, as in the evaluation galleries).  A
batch of whole groups therefore carries the gallery's hard negatives: the
reference's other edits (the group's other targets) and the siblings.

Group g depends only on (seed, g) (its own RNG, as in generate.py), never on
which other groups were drawn; the RNG stream is distinct from the fixed
splits' streams.  Held-out (colour, shape) pairs never occur, as in train.

No scene of an evaluation gallery occurs either (mlcl.data.shapes.exclusion):
a reference, target or hard negative whose scene is one is re-drawn.  The
space of small scenes is small, so the stream does repeat itself: 6.7 % of
the (reference, target) pairs of the 64,000 groups of the shipped stage 1 are
an earlier group's (scripts/shapes_overlap.py counts them).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from .config import load_config
from .exclusion import training_exclusion
from .generate import _sample_group, _siblings
from .modify import Modification, apply
from .phrasing import caption
from .render import render
from .scene import Scene


@dataclass(frozen=True)
class TrainingGroup:
    reference: Scene
    mods: tuple[Modification, ...]
    targets: tuple[Scene, ...]
    captions: tuple[str, ...]
    negatives: tuple[tuple[Scene, ...], ...]  # per query: its hard negatives


def training_group(seed: int, group: int, k: int = 4, target_siblings: int = 1,
                   excluded: frozenset[str] | None = None) -> TrainingGroup:
    """Group `group` of the procedural training stream of `seed` (deterministic).

    excluded: scene keys no image of the group may have (default: every
    evaluation gallery's, `training_exclusion()`; frozenset() draws without).
    """
    if k < 1 or target_siblings < 0:
        raise ValueError(f"need k >= 1 queries per group and target_siblings >= 0, got k={k}, {target_siblings}")
    cfg = load_config()
    if excluded is None:
        excluded = training_exclusion()
    rng = random.Random(f"mlcl-shapes-procedural/{seed}/{group}")
    ref, mods = _sample_group(rng, False, k, excluded)
    targets = [apply(ref, m) for m in mods]
    texts = [caption(m, ref, rng) for m in mods]
    avoid = {ref, *targets}
    negatives = []
    for m, t in zip(mods, targets):
        sib = _siblings(rng, t, target_siblings, avoid, cfg.kinds, excluded, forbidden=cfg.held_out_pairs,
                        protected=m.changed_cells())
        if len(sib) < target_siblings:  # rare (a crowded scene): fill with more edits of the reference
            sib += _siblings(rng, ref, target_siblings - len(sib), avoid, cfg.kinds, excluded,
                             forbidden=cfg.held_out_pairs)
        while len(sib) < target_siblings:  # degenerate: repeat one (still a negative)
            sib.append(sib[-1] if sib else ref)
        negatives.append(tuple(sib))
    return TrainingGroup(ref, tuple(mods), tuple(targets), tuple(texts), tuple(negatives))


def render_array(scene: Scene, image_size: int = 64) -> np.ndarray:
    """uint8[3,S,S] pixels of a scene (the same pixels as its PNG)."""
    return np.asarray(render(scene, image_size), dtype=np.uint8).transpose(2, 0, 1)
