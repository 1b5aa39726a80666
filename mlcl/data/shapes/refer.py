"""Referring expressions: the fewest attributes that pick one object out of a scene.

The head noun is always the shape ("the circle"). Colour and size are added
first ("the red circle", "the small red circle"); position is used only when
colour, shape and size cannot tell the object from another one, and then as
little of it as needed: a column or a row counts as one attribute ("the red
circle on the left"), a full cell as two ("the circle in the top left").
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

from .config import load_config
from .scene import Obj, Scene


@dataclass(frozen=True)
class Expression:
    """A definite description; None fields are not mentioned."""

    shape: str
    colour: str | None = None
    size: str | None = None
    row: int | None = None
    column: int | None = None

    def matches(self, obj: Obj) -> bool:
        g = load_config().grid
        return (
            obj.shape == self.shape
            and (self.colour is None or obj.colour == self.colour)
            and (self.size is None or obj.size == self.size)
            and (self.row is None or obj.cell // g == self.row)
            and (self.column is None or obj.cell % g == self.column)
        )

    def referents(self, scene: Scene) -> list[Obj]:
        return [o for o in scene if self.matches(o)]

    @property
    def n_attributes(self) -> int:
        """Attributes mentioned besides the head noun (a cell counts as row + column)."""
        return sum(v is not None for v in (self.colour, self.size, self.row, self.column))

    def position_phrase(self) -> str | None:
        cfg = load_config()
        if self.row is not None and self.column is not None:
            return "in the " + cfg.cell_names[self.row * cfg.grid + self.column]
        if self.column is not None:
            return cfg.column_phrases[self.column]
        if self.row is not None:
            return cfg.row_phrases[self.row]
        return None

    def text(self) -> str:
        words = ["the", self.size, self.colour, self.shape, self.position_phrase()]
        return " ".join(w for w in words if w)

    def to_json(self) -> dict[str, Any]:
        return {"shape": self.shape, "colour": self.colour, "size": self.size,
                "row": self.row, "column": self.column}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Expression":
        return cls(shape=d["shape"], colour=d.get("colour"), size=d.get("size"),
                   row=d.get("row"), column=d.get("column"))


# Candidate attribute sets in order of preference (see module docstring).
_INTRINSIC: tuple[tuple[str, ...], ...] = ((), ("colour",), ("size",), ("colour", "size"))


def _positional_candidates() -> list[tuple[str, ...]]:
    cands = []
    for positions in (("column",), ("row",), ("row", "column")):
        for intrinsic in _INTRINSIC:
            cands.append(intrinsic + positions)
    # Fewest attributes first; at equal count, less position, then listed order.
    order = {c: i for i, c in enumerate(cands)}
    pos_count = lambda c: sum(a in ("row", "column") for a in c)  # noqa: E731
    return sorted(cands, key=lambda c: (len(c), pos_count(c), order[c]))


CANDIDATE_ATTRIBUTE_SETS: tuple[tuple[str, ...], ...] = _INTRINSIC + tuple(_positional_candidates())


def expression_for(obj: Obj, attributes: tuple[str, ...]) -> Expression:
    g = load_config().grid
    values = {"colour": obj.colour, "size": obj.size, "row": obj.cell // g, "column": obj.cell % g}
    return Expression(shape=obj.shape, **{a: values[a] for a in attributes})


def minimal_expression(scene: Scene, obj: Obj) -> Expression:
    """The preferred expression that matches `obj` and nothing else in `scene`."""
    if obj not in scene.objects:
        raise ValueError(f"{obj} is not in {scene}")
    for attrs in CANDIDATE_ATTRIBUTE_SETS:
        expr = expression_for(obj, attrs)
        if len(expr.referents(scene)) == 1:
            return expr
    raise AssertionError("unreachable: a full cell always picks out one object")


def all_attribute_subsets() -> list[tuple[str, ...]]:
    """Every attribute set, for tests that check minimality by brute force."""
    names = ("colour", "size", "row", "column")
    return [c for k in range(len(names) + 1) for c in combinations(names, k)]


# ------------------------------------------------------------- relations
def related(obj: Obj, relation: str, anchor: Obj) -> bool:
    """obj stands in `relation` to anchor: left/right = same row, a column to that side; above/below = same column."""
    g = load_config().grid
    (ro, co), (ra, ca) = divmod(obj.cell, g), divmod(anchor.cell, g)
    if relation == "left":
        return ro == ra and co < ca
    if relation == "right":
        return ro == ra and co > ca
    if relation == "above":
        return co == ca and ro < ra
    if relation == "below":
        return co == ca and ro > ra
    raise ValueError(f"unknown relation {relation!r}")


@dataclass(frozen=True)
class RelationalExpression:
    """'the square left of the red circle': an object described by its own
    attributes (no position) and its relation to an anchor that an intrinsic
    description picks out alone."""

    head: Expression
    relation: str
    anchor: Expression

    def referents(self, scene: Scene) -> list[Obj]:
        anchors = self.anchor.referents(scene)
        return [o for o in scene if self.head.matches(o) and any(a != o and related(o, self.relation, a)
                                                                 for a in anchors)]

    def text(self) -> str:
        return f"{self.head.text()} {load_config().relation_phrases[self.relation]} {self.anchor.text()}"

    def to_json(self) -> dict[str, Any]:
        return {**self.head.to_json(), "relation": self.relation, "anchor": self.anchor.to_json()}


def referring_expression_from_json(d: dict[str, Any]) -> "Expression | RelationalExpression":
    if d.get("relation"):
        return RelationalExpression(Expression.from_json(d), d["relation"], Expression.from_json(d["anchor"]))
    return Expression.from_json(d)


def _intrinsic_expression(scene: Scene, obj: Obj) -> Expression | None:
    """The fewest intrinsic attributes (no position) that pick out `obj` alone, or None."""
    for attrs in _INTRINSIC:
        expr = expression_for(obj, attrs)
        if len(expr.referents(scene)) == 1:
            return expr
    return None


def relational_expressions(scene: Scene, obj: Obj) -> list[RelationalExpression]:
    """Every relational expression with the fewest head attributes that picks out `obj` alone in `scene`."""
    from .config import RELATIONS

    found: list[tuple[int, RelationalExpression]] = []
    for anchor in scene:
        if anchor == obj:
            continue
        anchor_expr = _intrinsic_expression(scene, anchor)
        if anchor_expr is None:
            continue
        for relation in RELATIONS:
            if not related(obj, relation, anchor):
                continue
            for attrs in _INTRINSIC:
                expr = RelationalExpression(expression_for(obj, attrs), relation, anchor_expr)
                if expr.referents(scene) == [obj]:
                    found.append((len(attrs), expr))
                    break
    if not found:
        return []
    fewest = min(n for n, _ in found)
    return [e for n, e in found if n == fewest]
