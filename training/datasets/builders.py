"""LAVIS dataset builders: fashioniq, cirr, shoes, shapes.

Each builder reads its defaults from training/configs/datasets/<name>/defaults.yaml
(merged with the run config's `datasets.<name>` section by LAVIS's Config) and
builds {lavis split: TripletDataset} over the plain loaders of `mlcl.data`.
Nothing is downloaded: real data sets need `root`; shapes are generated when
missing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lavis.datasets.builders.base_dataset_builder import BaseDatasetBuilder

from training.common import ImageSpec, to_plain
from training.datasets.augment import check_policy
from training.datasets.base import TripletDataset
from training.datasets.real import CIRRTriplets, FashionIQTriplets, ShoesTriplets, load_source
from training.datasets.shapes import ShapesTriplets
from training.registration import register_once

log = logging.getLogger(__name__)
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "datasets"
# Keys of a dataset section that are not passed to the dataset class as options.
_BUILD_KEYS = {"data_type", "root", "splits", "augment", "type", "build_info", "vis_processor", "text_processor"}


class CIRBuilder(BaseDatasetBuilder):
    """Base builder for composed-retrieval triplet data sets."""

    name = ""
    dataset_cls: type[TripletDataset] = TripletDataset

    def __init__(self, cfg: Any = None):
        super().__init__(cfg)
        self.image_spec: ImageSpec | None = None  # set by the task from the model config

    @classmethod
    def default_config_path(cls, type: str = "default") -> str:
        if type != "default":
            raise KeyError(f"dataset {cls.name!r} has only the 'default' config type, got {type!r}")
        return str(CONFIG_DIR / cls.name / "defaults.yaml")

    def build_datasets(self) -> dict[str, TripletDataset]:
        # LAVIS's version downloads annotations first; these data sets are local.
        return self.build()

    def options(self) -> dict[str, Any]:
        cfg = to_plain(self.config)
        return {k: v for k, v in cfg.items() if k not in _BUILD_KEYS}

    def splits(self) -> dict[str, str]:
        splits = to_plain(self.config.get("splits")) or {"train": "train", "val": "val"}
        if not isinstance(splits, dict):
            raise ValueError(f"datasets.{self.name}.splits must map LAVIS splits to data set splits, got {splits!r}")
        return splits

    def load_source(self, split: str) -> Any:
        return load_source(self.name, self.config.get("root"), split, self.options())

    def build(self) -> dict[str, TripletDataset]:
        spec = self.image_spec or ImageSpec.from_model_cfg({"backbone": self.config.get("backbone", "mlcl-tiny")})
        augment = to_plain(self.config.get("augment", "none"))
        check_policy(augment)
        out: dict[str, TripletDataset] = {}
        for lavis_split, data_split in self.splits().items():
            source = self.load_source(data_split)
            out[lavis_split] = self.dataset_cls(source, data_split, spec, augment, self.options())
            log.info("%s %s: %d triplets", self.name, data_split, len(out[lavis_split]))
        return out


@register_once("builder", "fashioniq")
class FashionIQBuilder(CIRBuilder):
    name = "fashioniq"
    dataset_cls = FashionIQTriplets


@register_once("builder", "cirr")
class CIRRBuilder(CIRBuilder):
    name = "cirr"
    dataset_cls = CIRRTriplets


@register_once("builder", "shoes")
class ShoesBuilder(CIRBuilder):
    name = "shoes"
    dataset_cls = ShoesTriplets


@register_once("builder", "shapes")
class ShapesBuilder(CIRBuilder):
    """Shapes: an existing split under `root` is used as it is; a missing one is
    generated (`seed`, `image_size`, `sizes`).  root null = mlcl's default data dir."""

    name = "shapes"
    dataset_cls = ShapesTriplets

    def build(self) -> dict[str, TripletDataset]:
        """As the base builder; with `procedural: {...}` the train split is drawn procedurally (no files)."""
        if not to_plain(self.config.get("procedural")):
            return super().build()
        from training.datasets.procedural import ProceduralShapesTriplets

        spec = self.image_spec or ImageSpec.from_model_cfg({"backbone": self.config.get("backbone", "mlcl-tiny")})
        augment = to_plain(self.config.get("augment", "none"))
        check_policy(augment)
        out: dict[str, TripletDataset] = {}
        for lavis_split, data_split in self.splits().items():
            if lavis_split == "train":
                out[lavis_split] = ProceduralShapesTriplets(data_split, spec, augment, self.options())
                log.info("shapes train: procedural, %s", out[lavis_split].describe())
            else:
                out[lavis_split] = self.dataset_cls(self.load_source(data_split), data_split, spec, augment,
                                                    self.options())
                log.info("%s %s: %d triplets", self.name, data_split, len(out[lavis_split]))
        return out

    def load_source(self, split: str) -> Any:
        from mlcl.data.shapes import ShapesDataset, ensure_shapes

        seed = int(self.config.get("seed", 0))
        size = int(self.config.get("image_size", 64))
        sizes = to_plain(self.config.get("sizes")) or {}
        root = self.config.get("root")
        if root in (None, ""):
            # mlcl's default location: regenerated when stale, like `mlcl eval`.
            return ShapesDataset(ensure_shapes(None, split, seed, size, n=sizes.get(split), progress=True), split)
        root = Path(root).expanduser()
        try:
            return ShapesDataset(root, split)
        except FileNotFoundError:
            log.info("generating shapes split %s under %s", split, root)
            return ShapesDataset(ensure_shapes(root, split, seed, size, n=sizes.get(split), progress=True), split)
