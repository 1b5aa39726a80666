"""Loads the benchmark's configuration (colours, phrasing, splits) from config.yaml."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

CONFIG_PATH = Path(__file__).with_name("config.yaml")
SPLITS = ("train", "val", "test", "novel", "hard")
EVAL_SPLITS = ("val", "test", "novel", "hard")  # splits with a gallery (evaluation protocol)
RELATIONS = ("left", "right", "above", "below")


@dataclass(frozen=True)
class HardConfig:
    """The hard split's generation settings (config.yaml `hard`)."""

    min_objects: int
    max_objects: int
    two_edits: float
    same_object: float
    relational: float
    partial_negatives: bool

    @property
    def limits(self) -> tuple[int, int]:
        return self.min_objects, self.max_objects


@dataclass(frozen=True)
class ShapesConfig:
    """Typed view of config.yaml; see that file for the meaning of each field."""

    background: tuple[int, int, int]
    colours: dict[str, tuple[int, int, int]]
    shapes: tuple[str, ...]
    half_sizes: dict[str, int]
    reference_canvas: int
    min_image_size: int
    grid: int
    cell_names: tuple[str, ...]
    column_phrases: tuple[str, ...]
    row_phrases: tuple[str, ...]
    min_objects: int
    max_objects: int
    held_out_pairs: frozenset[tuple[str, str]]
    kinds: tuple[str, ...]
    novel_kinds: tuple[str, ...]
    train_queries_per_reference: int
    eval_queries_per_reference: int
    reference_siblings: int
    target_siblings: int
    default_sizes: dict[str, int]
    templates: dict[str, tuple[str, ...]]
    size_words: dict[str, dict[str, str]]
    training_exclusion_seeds: tuple[int, ...]
    training_exclusion_splits: tuple[str, ...]
    reserved_max_objects: int
    reserved_evaluation_share: float
    hard: HardConfig
    relation_phrases: dict[str, str]
    sha256: str

    @property
    def n_cells(self) -> int:
        return self.grid * self.grid

    @property
    def size_names(self) -> tuple[str, ...]:
        return tuple(self.half_sizes)


def _parse(raw: dict[str, Any], sha: str) -> ShapesConfig:
    grid = int(raw["grid"])
    cfg = ShapesConfig(
        background=tuple(raw["background"]),
        colours={k: tuple(v) for k, v in raw["colours"].items()},
        shapes=tuple(raw["shapes"]),
        half_sizes={k: int(v) for k, v in raw["sizes"].items()},
        reference_canvas=int(raw["reference_canvas"]),
        min_image_size=int(raw["min_image_size"]),
        grid=grid,
        cell_names=tuple(raw["cell_names"]),
        column_phrases=tuple(raw["column_phrases"]),
        row_phrases=tuple(raw["row_phrases"]),
        min_objects=int(raw["objects_per_scene"][0]),
        max_objects=int(raw["objects_per_scene"][1]),
        held_out_pairs=frozenset((c, s) for c, s in raw["held_out_pairs"]),
        kinds=tuple(raw["kinds"]),
        novel_kinds=tuple(raw["novel_kinds"]),
        train_queries_per_reference=int(raw["train_queries_per_reference"]),
        eval_queries_per_reference=int(raw["eval_queries_per_reference"]),
        reference_siblings=int(raw["reference_siblings"]),
        target_siblings=int(raw["target_siblings"]),
        default_sizes={k: int(v) for k, v in raw["default_sizes"].items()},
        templates={k: tuple(v) for k, v in raw["templates"].items()},
        size_words={k: dict(v) for k, v in raw["size_words"].items()},
        training_exclusion_seeds=tuple(int(x) for x in raw["training_exclusion"]["seeds"]),
        training_exclusion_splits=tuple(raw["training_exclusion"]["splits"]),
        reserved_max_objects=int(raw["reserved_scenes"]["max_objects"]),
        reserved_evaluation_share=float(raw["reserved_scenes"]["evaluation_share"]),
        hard=HardConfig(
            min_objects=int(raw["hard"]["objects_per_scene"][0]),
            max_objects=int(raw["hard"]["objects_per_scene"][1]),
            two_edits=float(raw["hard"]["two_edits"]),
            same_object=float(raw["hard"]["same_object"]),
            relational=float(raw["hard"]["relational"]),
            partial_negatives=bool(raw["hard"]["partial_negatives"]),
        ),
        relation_phrases={k: str(v) for k, v in raw["relation_phrases"].items()},
        sha256=sha,
    )
    _validate(cfg)
    return cfg


def _validate(cfg: ShapesConfig) -> None:
    """Fail early, naming the offending field, rather than generate odd data."""
    problems = []
    if len(cfg.cell_names) != cfg.n_cells:
        problems.append(f"cell_names has {len(cfg.cell_names)} entries, grid needs {cfg.n_cells}")
    for name, phrases in (("column_phrases", cfg.column_phrases), ("row_phrases", cfg.row_phrases)):
        if len(phrases) != cfg.grid:
            problems.append(f"{name} has {len(phrases)} entries, grid needs {cfg.grid}")
    if not 1 <= cfg.min_objects <= cfg.max_objects < cfg.n_cells:
        problems.append("objects_per_scene must satisfy 1 <= min <= max < number of cells")
    for colour, shape in cfg.held_out_pairs:
        if colour not in cfg.colours or shape not in cfg.shapes:
            problems.append(f"held_out_pairs: unknown pair ({colour}, {shape})")
    for kind in cfg.kinds + cfg.novel_kinds:
        if kind not in cfg.templates or not cfg.templates[kind]:
            problems.append(f"no templates for kind {kind!r}")
    if set(cfg.size_words) != set(cfg.half_sizes):
        problems.append("size_words must have one entry per size")
    if set(cfg.default_sizes) != set(SPLITS):
        problems.append(f"default_sizes must name exactly the splits {SPLITS}")
    if cfg.train_queries_per_reference < 1 or cfg.eval_queries_per_reference < 1:
        problems.append("*_queries_per_reference must be at least 1")
    bad = [s for s in cfg.training_exclusion_splits if s not in EVAL_SPLITS]
    if bad:
        problems.append(f"training_exclusion.splits: {bad} are not evaluation splits {EVAL_SPLITS}")
    if not 0 < cfg.reserved_evaluation_share < 1:
        problems.append("reserved_scenes.evaluation_share must be in (0, 1)")
    h = cfg.hard
    if not 1 <= h.min_objects <= h.max_objects < cfg.n_cells:
        problems.append("hard.objects_per_scene must satisfy 1 <= min <= max < number of cells")
    if not all(0 <= x <= 1 for x in (h.two_edits, h.same_object, h.relational)):
        problems.append("hard.two_edits, hard.same_object and hard.relational are fractions in [0, 1]")
    if set(cfg.relation_phrases) != set(RELATIONS):
        problems.append(f"relation_phrases must name exactly {RELATIONS}")
    if problems:
        raise ValueError(f"invalid shapes config {CONFIG_PATH}: " + "; ".join(problems))


@lru_cache(maxsize=1)
def load_config() -> ShapesConfig:
    """The packaged configuration (parsed once per process)."""
    import yaml

    data = CONFIG_PATH.read_bytes()
    return _parse(yaml.safe_load(data), hashlib.sha256(data).hexdigest())
