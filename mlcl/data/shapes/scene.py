"""Scenes: a few coloured shapes, each on its own cell of a 3x3 grid.

A scene's canonical key (`Scene.key`) is a string that is equal for two
scenes iff the scenes are equal; retrieval hits are decided by it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Iterator

from .config import load_config


@dataclass(frozen=True, order=True)
class Obj:
    """One object. Ordered by cell first, so sorted objects are row-major."""

    cell: int
    colour: str
    shape: str
    size: str

    @property
    def pair(self) -> tuple[str, str]:
        return (self.colour, self.shape)

    def with_(self, **changes: Any) -> "Obj":
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {"cell": self.cell, "colour": self.colour, "shape": self.shape, "size": self.size}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Obj":
        return cls(cell=int(d["cell"]), colour=d["colour"], shape=d["shape"], size=d["size"])

    def key(self) -> str:
        return f"{self.cell}:{self.size}-{self.colour}-{self.shape}"

    def describe(self) -> str:
        """Full description with indefinite article, e.g. 'a large green square'."""
        return f"a {self.size} {self.colour} {self.shape}"


class Scene:
    """An immutable set of objects on distinct cells."""

    __slots__ = ("objects", "_key")

    def __init__(self, objects: Iterable[Obj]):
        objs = tuple(sorted(objects))
        cells = [o.cell for o in objs]
        if len(set(cells)) != len(cells):
            raise ValueError(f"two objects share a cell in {objs}")
        self.objects: tuple[Obj, ...] = objs
        self._key = "|".join(o.key() for o in objs)

    # -- identity -------------------------------------------------------
    @property
    def key(self) -> str:
        return self._key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scene) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"Scene({self._key!r})"

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self) -> Iterator[Obj]:
        return iter(self.objects)

    # -- queries --------------------------------------------------------
    def at(self, cell: int) -> Obj | None:
        for o in self.objects:
            if o.cell == cell:
                return o
        return None

    def empty_cells(self) -> list[int]:
        used = {o.cell for o in self.objects}
        return [c for c in range(load_config().n_cells) if c not in used]

    def pairs(self) -> set[tuple[str, str]]:
        return {o.pair for o in self.objects}

    # -- edits (return new scenes) -----------------------------------------
    def without(self, cell: int) -> "Scene":
        return Scene(o for o in self.objects if o.cell != cell)

    def with_object(self, obj: Obj) -> "Scene":
        return Scene([o for o in self.objects if o.cell != obj.cell] + [obj])

    # -- serialisation ----------------------------------------------------
    def to_json(self) -> list[dict[str, Any]]:
        return [o.to_json() for o in self.objects]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> "Scene":
        return cls(Obj.from_json(d) for d in data)

    @classmethod
    def from_key(cls, key: str) -> "Scene":
        """Inverse of `key`: '0:large-red-circle|4:small-blue-square'."""
        objs = []
        for part in filter(None, key.split("|")):
            cell, rest = part.split(":")
            size, colour, shape = rest.split("-")
            objs.append(Obj(int(cell), colour, shape, size))
        return cls(objs)
