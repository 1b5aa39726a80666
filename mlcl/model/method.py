"""Method configurations (MLCL and the combiners it is compared with), as data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

METHODS_FILE = Path(__file__).resolve().parent / "configs" / "methods.yaml"
LEVELS = ("sum", "cat", "hybrid")


@dataclass(frozen=True)
class MethodConfig:
    name: str
    levels: tuple[str, ...] = LEVELS
    sscl: bool = True
    learnable_scale: bool = True
    level_weights: str = "learned"  # "learned" (MLCL's w) or "equal"
    stage: int = 2
    description: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.levels) - set(LEVELS)
        if unknown or not self.levels:
            raise ValueError(f"method {self.name!r}: levels must be a non-empty subset of {LEVELS}, got {self.levels}")
        if self.level_weights not in ("learned", "equal"):
            raise ValueError(f"method {self.name!r}: level_weights must be 'learned' or 'equal', got {self.level_weights!r}")
        if self.level_weights == "learned" and not {"cat", "hybrid"} <= set(self.levels):
            raise ValueError(f"method {self.name!r}: learned level weights trade cat against hybrid; both levels are needed")
        if self.sscl and "hybrid" not in self.levels:
            raise ValueError(f"method {self.name!r}: SSCL compares high-level fusions; add the hybrid level")
        if self.stage not in (1, 2):
            raise ValueError(f"method {self.name!r}: stage must be 1 or 2, got {self.stage}")
        if self.stage == 1 and tuple(self.levels) != ("sum",):
            raise ValueError(f"method {self.name!r}: a stage-1 method trains the backbone with sum fusion only")

    @property
    def uses_combiner(self) -> bool:
        return bool({"cat", "hybrid"} & set(self.levels))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["levels"] = list(self.levels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MethodConfig":
        d = dict(d)
        d["levels"] = tuple(d.get("levels", LEVELS))
        return cls(**d)


def available_methods() -> dict[str, dict[str, Any]]:
    with open(METHODS_FILE) as f:
        return yaml.safe_load(f)


def get_method(name_or_config: str | dict[str, Any] | MethodConfig) -> MethodConfig:
    """A method by name (configs/methods.yaml), or from an explicit mapping."""
    if isinstance(name_or_config, MethodConfig):
        return name_or_config
    if isinstance(name_or_config, dict):
        return MethodConfig.from_dict(name_or_config)
    methods = available_methods()
    if name_or_config not in methods:
        raise KeyError(f"unknown method {name_or_config!r}; known: {', '.join(methods)}")
    return MethodConfig.from_dict({"name": name_or_config, **methods[name_or_config]})
