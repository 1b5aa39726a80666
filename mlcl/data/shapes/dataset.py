"""Reads one generated split of the shapes benchmark."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import SPLITS
from .generate import captions_file, gallery_file, images_dir, manifest_file, read_manifest, scenes_file
from .modify import Modification
from .phrasing import all_captions
from .scene import Scene

if TYPE_CHECKING:  # Pillow is imported when an image is loaded
    from PIL import Image


class ShapesDataset:
    """Triplets, gallery and scenes of one split (train, val, test or novel).

    A retrieved image is a hit when its scene equals the target's
    (`scene_key(a) == scene_key(b)`); the query's reference image is excluded.
    """

    def __init__(self, root: str | os.PathLike[str], split: str):
        if split not in SPLITS:
            raise ValueError(f"unknown shapes split {split!r}; expected one of {', '.join(SPLITS)}")
        self.root = Path(root).expanduser()
        self.split = split
        manifest = read_manifest(self.root, split)
        if manifest is None:
            raise FileNotFoundError(
                f"shapes split {split!r} is missing or incomplete under {self.root} "
                f"(no {manifest_file(self.root, split).name}); generate it with "
                f"`mlcl data shapes --out {self.root} --splits {split}` or "
                f"mlcl.data.shapes.ensure_shapes(root, split={split!r})"
            )
        self.manifest: dict[str, Any] = manifest
        self.triplets: list[dict[str, Any]] = json.loads(captions_file(self.root, split).read_text("utf-8"))
        self.gallery: list[str] = json.loads(gallery_file(self.root, split).read_text("utf-8"))
        self._scenes: dict[str, str] = json.loads(scenes_file(self.root, split).read_text("utf-8"))
        self._images = images_dir(self.root, split)

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.triplets[i]

    def __repr__(self) -> str:
        return (f"ShapesDataset(root={str(self.root)!r}, split={self.split!r}, "
                f"triplets={len(self)}, gallery={len(self.gallery)})")

    @property
    def image_size(self) -> int:
        return int(self.manifest["image_size"])

    @property
    def image_names(self) -> list[str]:
        """Every image of the split (for evaluation splits, the same as the gallery)."""
        return list(self._scenes)

    def image_path(self, name: str) -> Path:
        if name not in self._scenes:
            raise KeyError(f"no image {name!r} in shapes split {self.split!r} under {self.root}")
        return self._images / f"{name}.png"

    def scene_key(self, name: str) -> str:
        """Canonical scene string; equal for two images iff their scenes are equal."""
        try:
            return self._scenes[name]
        except KeyError:
            raise KeyError(f"no image {name!r} in shapes split {self.split!r} under {self.root}") from None

    def scene(self, name: str) -> Scene:
        return Scene.from_key(self.scene_key(name))

    def load_image(self, name: str) -> "Image.Image":
        from PIL import Image

        with Image.open(self.image_path(name)) as img:
            return img.convert("RGB")

    def paraphrases(self, i: int) -> list[str]:
        """Every phrasing of triplet i's modification (its caption is one of them)."""
        t = self.triplets[i]
        return all_captions(Modification.from_json(t["modification"]), Scene.from_json(t["reference_scene"]))
