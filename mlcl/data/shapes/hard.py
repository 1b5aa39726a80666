"""The hard split: crowded scenes, two edits per caption, relational references.

Evaluation only (training never draws such scenes).  A group is a reference
of 6 to 8 objects (config `hard.objects_per_scene`) and 4 queries, each of
one edit (as the other splits) or, for a share `hard.two_edits`, of two
edits in one caption:

- on one object: "make the red circle blue and move it to the top left"
  (share `hard.same_object`; the second edit says "it");
- on two objects: "remove the green square and make the circle left of the
  red triangle small" (the edits touch different cells, so their order does
  not matter).

Every object acted on is named in the *reference* image: by a relational
expression ("the circle left of the red triangle", refer.RelationalExpression)
for a share `hard.relational` of the objects that have one, else by the
minimal expression of the other splits.  The gallery holds, besides the
reference, the targets and the usual hard negatives (more two-edit variants of
the reference; per query, its target with one more edit to an object the
caption leaves alone), each two-edit query's one-edit intermediates (only the
first edit, only the second): what a model that does half of the caption
retrieves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from .config import load_config
from .modify import Modification, apply, options, random_scene, sample_modification
from .phrasing import caption
from .refer import Expression, RelationalExpression, minimal_expression, relational_expressions
from .scene import Obj, Scene

PRONOUN = {"pronoun": "it"}  # the expression of a second edit on the first one's object
_ATTRIBUTE_KINDS = ("colour", "shape", "size", "move")


@dataclass(frozen=True)
class HardQuery:
    mods: tuple[Modification, ...]  # in order; mods[1].obj is as it is after mods[0]
    target: Scene
    caption: str
    expressions: tuple[dict[str, Any] | None, ...]  # per edit: its referring expression (None: add)
    same_object: bool
    partials: tuple[Scene, ...]  # the one-edit intermediates

    @property
    def kind(self) -> str:
        return "+".join(m.kind for m in self.mods)

    @property
    def relational(self) -> bool:
        return any(e is not None and e.get("relation") for e in self.expressions)

    @property
    def form(self) -> str:
        """one edit / two edits, one object / two edits, two objects (breakdown group)."""
        if len(self.mods) == 1:
            return "one edit"
        return "two edits, one object" if self.same_object else "two edits, two objects"


def _name(rng: random.Random, scene: Scene, obj: Obj) -> Expression | RelationalExpression:
    """How a caption names `obj` of the reference: relational (share hard.relational, when one exists) or minimal."""
    rel = relational_expressions(scene, obj)
    if rel and rng.random() < load_config().hard.relational:
        return rel[rng.randrange(len(rel))]
    return minimal_expression(scene, obj)


def _try_apply(scene: Scene, mod: Modification, limits: tuple[int, int]) -> Scene | None:
    try:
        return apply(scene, mod, limits)
    except ValueError:
        return None


def sample_query(rng: random.Random, ref: Scene) -> HardQuery | None:
    """One query of the hard split on `ref` (None when no edit fits)."""
    cfg = load_config()
    h = cfg.hard
    lim, held = h.limits, cfg.held_out_pairs
    first = sample_modification(rng, ref, cfg.kinds, forbidden=held, limits=lim)
    if first is None:
        return None
    mid = apply(ref, first, lim)
    expr1 = None if first.kind == "add" else _name(rng, ref, first.obj)
    text1 = caption(first, ref, rng, ref_text=None if expr1 is None else expr1.text())
    if rng.random() >= h.two_edits:
        return HardQuery((first,), mid, text1, (None if expr1 is None else expr1.to_json(),), False, ())
    second = None
    same = first.kind not in ("add", "remove") and rng.random() < h.same_object
    if same:
        obj = first.new_object()
        opts = [m for kind in _ATTRIBUTE_KINDS if kind != first.kind
                for m in options(mid, kind, forbidden=held, limits=lim) if m.obj == obj]
        second = opts[rng.randrange(len(opts))] if opts else None
        same = second is not None
    if second is None:
        # Another object, and cells the first edit leaves alone: the edits commute.
        second = sample_modification(rng, mid, cfg.kinds, forbidden=held, protected=first.changed_cells(), limits=lim)
        if second is None:
            return None
    target = apply(mid, second, lim)
    if same:
        expr2: dict[str, Any] | None = dict(PRONOUN)
        text2 = caption(second, mid, rng, ref_text="it")
        alone = _try_apply(ref, Modification(second.kind, first.obj, second.value), lim)
    else:
        named = None if second.kind == "add" else _name(rng, ref, second.obj)
        expr2 = None if named is None else named.to_json()
        text2 = caption(second, ref, rng, ref_text=None if named is None else named.text())
        alone = _try_apply(ref, second, lim)
    # (the second edit alone on the original object may make a held-out pair: that scene is left out)
    partials = tuple(p for p in (mid, alone) if p is not None and p != target and not p.pairs() & held)
    return HardQuery((first, second), target, f"{text1} and {text2}",
                     (None if expr1 is None else expr1.to_json(), expr2), same, partials)


def _sample_group(rng: random.Random, k: int) -> tuple[Scene, list[HardQuery]]:
    cfg = load_config()
    h = cfg.hard
    counts = range(h.min_objects, h.max_objects + 1)
    for _ in range(1000):
        ref = random_scene(rng, counts[rng.randrange(len(counts))], forbidden=cfg.held_out_pairs)
        queries: list[HardQuery] = []
        targets: set[Scene] = set()
        for _ in range(20 * k):
            if len(queries) == k:
                break
            q = sample_query(rng, ref)
            if q is not None and q.target not in targets:
                targets.add(q.target)
                queries.append(q)
        if len(queries) == k:
            return ref, queries
    raise RuntimeError("could not sample a hard query group; check hard.objects_per_scene")


def make_hard_group(seed: int, split: str, group: int, keep: int | None = None) -> Any:
    """Group `group` of the hard split (a GroupRecord, as generate.make_group)."""
    from .generate import GroupRecord, _group_rng, _siblings, queries_per_group

    cfg = load_config()
    h = cfg.hard
    rng = _group_rng(seed, split, group)
    k = queries_per_group(split)
    keep = k if keep is None else keep
    ref, queries = _sample_group(rng, k)
    roles: list[tuple[str, Scene, int | None]] = [("reference", ref, None)]
    roles += [(f"target_{i}", q.target, i) for i, q in enumerate(queries)]
    avoid = {ref, *(q.target for q in queries)}
    # Image-only hard negatives: more two-edit variants of the reference, drawn like the queries.
    for _ in range(20 * cfg.reference_siblings):
        n_sib = sum(1 for r, _, _ in roles if r.startswith("reference_sibling"))
        if n_sib == cfg.reference_siblings:
            break
        q = sample_query(rng, ref)
        if q is not None and q.target not in avoid:
            avoid.add(q.target)
            roles.append((f"reference_sibling_{n_sib}", q.target, None))
    for i, q in enumerate(queries):
        if h.partial_negatives:
            for j, p in enumerate(q.partials):
                if p not in avoid:
                    avoid.add(p)
                    roles.append((f"partial_{i}_{j}", p, i))
        # Text-only hard negatives: one more edit to an object neither edit touches.
        protected = set().union(*(m.changed_cells() for m in q.mods))
        for j, s in enumerate(_siblings(rng, q.target, cfg.target_siblings, avoid, cfg.kinds,
                                        forbidden=cfg.held_out_pairs, protected=protected, limits=h.limits)):
            roles.append((f"target_sibling_{i}_{j}", s, i))
    slots = list(range(len(roles)))
    rng.shuffle(slots)
    names = {role: f"{split}_{group:06d}_{slot:02d}" for (role, _, _), slot in zip(roles, slots)}
    triplets = []
    for i, q in enumerate(queries[:keep]):
        triplets.append({
            "id": f"{split}-{group * k + i:06d}",
            "reference": names["reference"],
            "target": names[f"target_{i}"],
            "caption": q.caption,
            "kind": q.kind,
            "modifications": [m.to_json() for m in q.mods],
            "expressions": list(q.expressions),
            "form": q.form,
            "relational": q.relational,
            "reference_scene": ref.to_json(),
            "target_scene": q.target.to_json(),
            "reference_key": ref.key,
            "target_key": q.target.key,
        })
    images = {names[role]: s.key for role, s, owner in roles if owner is None or owner < keep}
    return GroupRecord(triplets, images)
