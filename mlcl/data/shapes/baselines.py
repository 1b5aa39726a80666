"""Oracle baselines computed from scene descriptions (no model).

They show what one input alone can achieve, so that a model's numbers can be
read against them:

- image only: rank the gallery by how close each scene is to the reference
  scene (per cell: 0 if equal, 1 per differing colour/shape/size, 3 if one
  side is empty); the target is always one edit away, but so are the
  reference's other edits.
- text only: parse the caption (no reference) and rank first every scene that
  satisfies what the text says about the target (e.g. "make the red circle
  blue" -> the scene holds a blue circle); the rest of the scene is unknown.
- image and text: parse the caption, resolve it in the reference scene, apply
  it: ranks the target first (R@1 = 1 by construction; a check that image and
  text together determine the target).

Ties are broken at random (seeded). The reference image is excluded from its
query's ranking; a hit is any image whose scene equals the target scene.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from .config import load_config
from .modify import apply
from .phrasing import ParsedCaption, interpret, parse_caption
from .refer import Expression
from .scene import Scene

if TYPE_CHECKING:
    from .dataset import ShapesDataset

DEFAULT_KS = (1, 5, 10, 50)
EMPTY = -1


class _GalleryArrays:
    """Gallery scenes as (G, cells) integer arrays: colour, shape, size index (-1 = empty)."""

    def __init__(self, scenes: Sequence[Scene]):
        cfg = load_config()
        self.colour_ix = {c: i for i, c in enumerate(cfg.colours)}
        self.shape_ix = {s: i for i, s in enumerate(cfg.shapes)}
        self.size_ix = {z: i for i, z in enumerate(cfg.size_names)}
        g, n = len(scenes), cfg.n_cells
        self.colour = np.full((g, n), EMPTY, np.int8)
        self.shape = np.full((g, n), EMPTY, np.int8)
        self.size = np.full((g, n), EMPTY, np.int8)
        for i, s in enumerate(scenes):
            for o in s:
                self.colour[i, o.cell] = self.colour_ix[o.colour]
                self.shape[i, o.cell] = self.shape_ix[o.shape]
                self.size[i, o.cell] = self.size_ix[o.size]
        self.occupied = self.shape != EMPTY
        self.count = self.occupied.sum(1)
        grid = cfg.grid
        self.rows = np.arange(n) // grid
        self.cols = np.arange(n) % grid

    def arrays_of(self, scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = load_config().n_cells
        c, s, z = (np.full(n, EMPTY, np.int8) for _ in range(3))
        for o in scene:
            c[o.cell], s[o.cell], z[o.cell] = self.colour_ix[o.colour], self.shape_ix[o.shape], self.size_ix[o.size]
        return c, s, z

    def distance_to(self, scene: Scene) -> np.ndarray:
        c, s, z = self.arrays_of(scene)
        occ = s != EMPTY
        both = self.occupied & occ
        attr = (self.colour != c).astype(np.int16) + (self.shape != s) + (self.size != z)
        one_empty = self.occupied ^ occ
        return (np.where(both, attr, 0) + 3 * one_empty).sum(1)

    def matches(self, e: Expression, *, use_position: bool = True) -> np.ndarray:
        """(G, cells) mask of objects that `e` describes."""
        m = self.shape == self.shape_ix[e.shape]
        if e.colour is not None:
            m &= self.colour == self.colour_ix[e.colour]
        if e.size is not None:
            m &= self.size == self.size_ix[e.size]
        if use_position and e.row is not None:
            m &= (self.rows == e.row)[None, :]
        if use_position and e.column is not None:
            m &= (self.cols == e.column)[None, :]
        return m

    def text_consistent(self, p: ParsedCaption) -> np.ndarray:
        """(G,) scenes that satisfy what the caption alone says about the target."""
        cfg = load_config()
        if p.kind == "add":
            o = p.new_object
            assert o is not None
            return ((self.colour[:, o.cell] == self.colour_ix[o.colour])
                    & (self.shape[:, o.cell] == self.shape_ix[o.shape])
                    & (self.size[:, o.cell] == self.size_ix[o.size])
                    & (self.count > cfg.min_objects))
        e = p.expression
        assert e is not None
        if p.kind == "remove":
            # The described object was unique in the reference and is gone.
            return ~self.matches(e).any(1) & (self.count < cfg.max_objects)
        if p.kind in ("colour", "shape", "size"):
            # The edited object keeps its other attributes and its cell.
            changed = Expression(**{**e.to_json(), p.kind: p.value})
            return self.matches(changed).any(1)
        if p.kind == "move":
            moved = self.matches(e, use_position=False)
            return moved[:, int(p.value)]  # type: ignore[arg-type]
        raise ValueError(f"unknown modification kind {p.kind!r}")


def _rank_of_first_hit(score: np.ndarray, tiebreak: np.ndarray, hit: np.ndarray, valid: np.ndarray) -> int:
    """0-based rank of the best-ranked hit when sorting by (score, tiebreak) descending."""
    hs, ht = score[hit & valid], tiebreak[hit & valid]
    if hs.size == 0:
        return np.iinfo(np.int64).max
    best = np.lexsort((ht, hs))[-1]
    s, t = hs[best], ht[best]
    better = (score > s) | ((score == s) & (tiebreak > t))
    return int((better & valid).sum())


def oracle_baselines(ds: "ShapesDataset", ks: Sequence[int] = DEFAULT_KS, seed: int = 0,
                     limit: int | None = None) -> dict[str, dict[str, float]]:
    """Recall@K (in percent) of the text-only, image-only and image+text oracles on `ds`.

    Ranks `ds.gallery` for each query (the reference image excluded); `limit`
    evaluates only the first queries.
    """
    names = ds.gallery
    scenes = [ds.scene(n) for n in names]
    arrays = _GalleryArrays(scenes)
    keys = np.array([s.key for s in scenes], dtype=object)
    index = {n: i for i, n in enumerate(names)}
    rng = np.random.default_rng(seed)
    triplets = ds.triplets if limit is None else ds.triplets[:limit]
    ranks: dict[str, list[int]] = {"text_only": [], "image_only": [], "image_and_text": []}
    for t in triplets:
        ref = Scene.from_json(t["reference_scene"])
        hit = keys == t["target_key"]
        valid = np.ones(len(names), bool)
        if t["reference"] in index:
            valid[index[t["reference"]]] = False
        tiebreak = rng.random(len(names))
        readings = parse_caption(t["caption"])
        if len(readings) != 1:
            raise ValueError(f"caption {t['caption']!r} of {t['id']} has {len(readings)} readings")
        text_score = arrays.text_consistent(readings[0]).astype(np.int64)
        image_score = -arrays.distance_to(ref)
        predicted = apply(ref, interpret(t["caption"], ref)).key
        both_score = (keys == predicted).astype(np.int64)
        ranks["text_only"].append(_rank_of_first_hit(text_score, tiebreak, hit, valid))
        ranks["image_only"].append(_rank_of_first_hit(image_score, tiebreak, hit, valid))
        ranks["image_and_text"].append(_rank_of_first_hit(both_score, tiebreak, hit, valid))
    out: dict[str, dict[str, float]] = {}
    for method, r in ranks.items():
        arr = np.asarray(r)
        out[method] = {f"R@{k}": float(100.0 * (arr < k).mean()) for k in ks}
    return out
