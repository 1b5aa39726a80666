"""The checkpoint formats of other code that `mlcl import-weights` reads, as data, without torch.

The sources (the MLCL authors' code, CLIP4Cir) and their key mappings live in
`mlcl/model/configs/imports.yaml`; `mlcl.model.import_weights` does the work.
This module only reads that file and names the preprocessing choices, so the
command line can list them without importing torch.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

IMPORTS_FILE = Path(__file__).resolve().parent / "model" / "configs" / "imports.yaml"

# The sources' preprocessing choices (their --transform) and the target-pad ratio each one means.
TRANSFORMS: dict[str, str] = {
    "targetpad": "pad to the aspect ratio --target-ratio, resize, centre crop (the authors' default)",
    "squarepad": "pad to a square (target pad with ratio 1), resize, centre crop",
    "clip": "no padding: CLIP's resize and centre crop",
}


@lru_cache(maxsize=None)
def import_sources() -> dict[str, dict[str, Any]]:
    """The sources `mlcl import-weights --from` knows (model/configs/imports.yaml)."""
    with open(IMPORTS_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def pad_ratio(transform: str, target_ratio: float) -> float | None:
    """Our `target_pad_ratio` for one of the sources' --transform choices."""
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; choose from {', '.join(TRANSFORMS)}")
    return {"targetpad": target_ratio, "squarepad": 1.0, "clip": None}[transform]


__all__ = ["IMPORTS_FILE", "TRANSFORMS", "import_sources", "pad_ratio"]
