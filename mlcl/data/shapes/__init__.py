"""The synthetic "shapes" benchmark for composed image retrieval (in the spirit of CSS).

Scenes of 1-5 coloured shapes on a 3x3 grid, rendered with Pillow; each query
is a reference image plus a text modification ("make the red circle blue"),
and the target is the reference scene with the modification applied. See
docs/shapes.md for the layout, phrasing, splits and hit definition.

    from mlcl.data.shapes import ShapesDataset, ensure_shapes
    ds = ShapesDataset(ensure_shapes(split="test"), "test")

Names are imported lazily so that light users (the CLI's argument parser,
`mlcl.data.shapes.config`) do not pay for Pillow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ShapesDataset": "dataset",
    "ensure_shapes": "generate",
    "generate_shapes": "generate",
    "default_root": "generate",
    "GENERATOR_VERSION": "generate",
    "Scene": "scene",
    "Obj": "scene",
    "oracle_baselines": "baselines",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .baselines import oracle_baselines
    from .dataset import ShapesDataset
    from .generate import GENERATOR_VERSION, default_root, ensure_shapes, generate_shapes
    from .scene import Obj, Scene


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
