"""Modifications (add, remove, change colour/shape/size, move) and their sampling."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Collection

from .config import load_config
from .scene import Obj, Scene


@dataclass(frozen=True)
class Modification:
    """One edit of a scene.

    `obj` is the object acted on as it is in the reference (for "add": the new
    object). `value` is the new colour/shape/size name, or for "move" the
    destination cell; None for "add" and "remove".
    """

    kind: str
    obj: Obj
    value: str | int | None = None

    def changed_cells(self) -> set[int]:
        """Cells whose content differs between reference and target."""
        return {self.obj.cell, self.value} if self.kind == "move" else {self.obj.cell}  # type: ignore[arg-type]

    def new_object(self) -> Obj | None:
        """The object as it is in the target (None for "remove")."""
        k, o, v = self.kind, self.obj, self.value
        if k == "add":
            return o
        if k == "remove":
            return None
        if k == "move":
            return o.with_(cell=int(v))  # type: ignore[arg-type]
        if k in ("colour", "shape", "size"):
            return o.with_(**{k: v})
        raise ValueError(f"unknown modification kind {k!r}")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "object": self.obj.to_json(), "value": self.value}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Modification":
        return cls(kind=d["kind"], obj=Obj.from_json(d["object"]), value=d["value"])


def object_limits(limits: tuple[int, int] | None = None) -> tuple[int, int]:
    """(fewest, most) objects a scene may hold: `limits`, else the config's objects_per_scene."""
    if limits is not None:
        return int(limits[0]), int(limits[1])
    cfg = load_config()
    return cfg.min_objects, cfg.max_objects


def apply(scene: Scene, mod: Modification, limits: tuple[int, int] | None = None) -> Scene:
    """The scene with `mod` applied; raises ValueError if it does not apply.

    limits: (fewest, most) objects the result may hold (default: the config's objects_per_scene).
    """
    lo, hi = object_limits(limits)
    present = scene.at(mod.obj.cell)
    if mod.kind == "add":
        if present is not None:
            raise ValueError(f"cannot add at occupied cell {mod.obj.cell} of {scene}")
        out = scene.with_object(mod.obj)
    else:
        if present != mod.obj:
            raise ValueError(f"{mod.obj} is not in {scene}")
        out = scene.without(mod.obj.cell)
        new = mod.new_object()
        if new is not None:
            if out.at(new.cell) is not None:
                raise ValueError(f"cannot move onto occupied cell {new.cell} of {scene}")
            out = out.with_object(new)
    if not lo <= len(out) <= hi:
        raise ValueError(f"{mod} leaves {len(out)} objects; allowed {lo}..{hi}")
    return out


def allowed_pairs(forbidden: Collection[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    cfg = load_config()
    return [(c, s) for c in cfg.colours for s in cfg.shapes if (c, s) not in forbidden]


def random_scene(rng: random.Random, n_objects: int, forbidden: Collection[tuple[str, str]] = ()) -> Scene:
    """`n_objects` objects on distinct random cells, no (colour, shape) pair in `forbidden`."""
    cfg = load_config()
    pairs = allowed_pairs(forbidden)
    objs = []
    for cell in rng.sample(range(cfg.n_cells), n_objects):
        colour, shape = rng.choice(pairs)
        objs.append(Obj(cell, colour, shape, rng.choice(cfg.size_names)))
    return Scene(objs)


def options(
    scene: Scene,
    kind: str,
    *,
    forbidden: Collection[tuple[str, str]] = (),
    require: Collection[tuple[str, str]] | None = None,
    protected: Collection[int] = (),
    limits: tuple[int, int] | None = None,
) -> list[Modification]:
    """Every modification of `kind` that keeps the scene valid.

    forbidden: (colour, shape) pairs the target must not gain.
    require:   if given, the modification must create one of these pairs.
    protected: cells the modification must not touch (act on, add to, move to).
    limits:    (fewest, most) objects of the target (default: the config's objects_per_scene).
    """
    cfg = load_config()
    lo, hi = object_limits(limits)
    n = len(scene)
    free = [c for c in scene.empty_cells() if c not in protected]
    movable = [o for o in scene if o.cell not in protected]

    def ok(pair: tuple[str, str]) -> bool:
        return pair not in forbidden and (require is None or pair in require)

    out: list[Modification] = []
    if kind == "add":
        if n < hi:
            for cell in free:
                for colour in cfg.colours:
                    for shape in cfg.shapes:
                        if ok((colour, shape)):
                            out += [Modification("add", Obj(cell, colour, shape, z)) for z in cfg.size_names]
    elif kind == "remove":
        if n > lo and require is None:
            out = [Modification("remove", o) for o in movable]
    elif kind == "colour":
        out = [Modification("colour", o, c) for o in movable for c in cfg.colours
               if c != o.colour and ok((c, o.shape))]
    elif kind == "shape":
        out = [Modification("shape", o, s) for o in movable for s in cfg.shapes
               if s != o.shape and ok((o.colour, s))]
    elif kind == "size":
        if require is None:
            out = [Modification("size", o, z) for o in movable for z in cfg.size_names if z != o.size]
    elif kind == "move":
        if require is None:
            out = [Modification("move", o, c) for o in movable for c in free]
    else:
        raise ValueError(f"unknown modification kind {kind!r}; expected one of {cfg.kinds}")
    return out


def sample_modification(
    rng: random.Random,
    scene: Scene,
    kinds: Collection[str],
    *,
    forbidden: Collection[tuple[str, str]] = (),
    require: Collection[tuple[str, str]] | None = None,
    protected: Collection[int] = (),
    limits: tuple[int, int] | None = None,
) -> Modification | None:
    """A kind drawn uniformly among those possible here, then a uniform option of it.

    Same distribution as drawing from `options()`, but a kind is enumerated
    only when drawn, and "add" (cells x pairs x sizes, a product) is drawn
    factor by factor: this is the generator's inner loop.
    """
    cfg = load_config()
    remaining = list(kinds)
    while remaining:
        kind = remaining.pop(rng.randrange(len(remaining)))
        if kind == "add":
            free = [c for c in scene.empty_cells() if c not in protected]
            pairs = [p for p in allowed_pairs(forbidden) if require is None or p in require]
            if len(scene) < object_limits(limits)[1] and free and pairs:
                cell = free[rng.randrange(len(free))]
                colour, shape = pairs[rng.randrange(len(pairs))]
                size = cfg.size_names[rng.randrange(len(cfg.size_names))]
                return Modification("add", Obj(cell, colour, shape, size))
            continue
        opts = options(scene, kind, forbidden=forbidden, require=require, protected=protected, limits=limits)
        if opts:
            return opts[rng.randrange(len(opts))]
    return None
