"""Shoes (Guo et al. 2018) relative captions over the Attribute Discovery images.

    <root>/relative_captions_shoes.json   [{"ImageName", "ReferenceImageName", "RelativeCaption"}]
    <root>/train_im_names.txt             10,000 image names, one a line
    <root>/eval_im_names.txt              4,658 image names
    <root>/womens_*/.../*.jpg             images (found by file name, at any depth)

Only triplets whose reference and target both belong to the split are kept
(8,990 train / 1,761 eval on the full data, the convention of MLCL's data
prep).  The eval gallery is every name in eval_im_names.txt.
Plain Python: no LAVIS, no Jina.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CAPTIONS_FILE = "relative_captions_shoes.json"
SPLIT_FILES = {"train": "train_im_names.txt", "eval": "eval_im_names.txt"}
SPLIT_ALIASES = {"val": "eval", "test": "eval"}
FIELDS = ("ImageName", "ReferenceImageName", "RelativeCaption")


def resolve_split(split: str) -> str:
    split = SPLIT_ALIASES.get(split, split)
    if split not in SPLIT_FILES:
        raise ValueError(f"Shoes: unknown split {split!r}; choose from {tuple(SPLIT_FILES)} (or val/test)")
    return split


def _read_names(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"Shoes: missing file {path}")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


class Shoes:
    """Triplets, gallery and image paths of one split ("train" or "eval").

    triplets: list of {"id": str(index in the captions file), "reference",
    "target", "caption"}.
    """

    def __init__(self, root: str | Path, split: str = "eval") -> None:
        self.root = Path(root).expanduser()
        self.split = resolve_split(split)
        self.gallery: list[str] = _read_names(self.root / SPLIT_FILES[self.split])
        self.triplets: list[dict[str, Any]] = self._read_triplets(set(self.gallery))
        self._paths: dict[str, Path] | None = None

    def _read_triplets(self, names: set[str]) -> list[dict[str, Any]]:
        path = self.root / CAPTIONS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"Shoes: missing file {path}")
        with open(path, encoding="utf-8") as f:
            try:
                entries = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"Shoes: {path} is not valid JSON: {exc}") from exc
        if not isinstance(entries, list):
            raise ValueError(f"Shoes: {path} must be a JSON list")
        out = []
        for i, entry in enumerate(entries):
            for field in FIELDS:
                if field not in entry:
                    raise KeyError(f"Shoes: {path} entry {i} lacks the field {field!r}")
            ref, tgt = entry["ReferenceImageName"], entry["ImageName"]
            if ref in names and tgt in names:
                out.append(
                    {"id": str(i), "reference": ref, "target": tgt, "caption": entry["RelativeCaption"].strip()}
                )
        return out

    def _index_images(self) -> dict[str, Path]:
        # One walk over the tree: images sit in womens_*/<subfolders>/ at varying depth.
        wanted = set(self.gallery)
        found: dict[str, Path] = {}
        for dirpath, _dirs, files in os.walk(self.root):
            for fname in files:
                if fname in wanted and fname not in found:
                    found[fname] = Path(dirpath) / fname
        return found

    def image_path(self, name: str) -> Path:
        if self._paths is None:
            self._paths = self._index_images()
        try:
            return self._paths[name]
        except KeyError:
            raise FileNotFoundError(
                f"Shoes: image {name!r} of {SPLIT_FILES[self.split]} not found under {self.root}"
            ) from None
