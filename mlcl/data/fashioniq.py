"""FashionIQ (Wu et al. 2021) in the common layout of CLIP4Cir / SPRC / MLCL.

    fashionIQ_dataset/
      captions/cap.{category}.{split}.json        [{"candidate", "target", "captions": [c1, c2]}]
      image_splits/split.{category}.{split}.json  [image name, ...]
      images/{name}.jpg                           (some copies hold .png)

`root` may be the `fashionIQ_dataset` folder or the folder that contains it.
Plain Python: no LAVIS, no Jina; images are only located, never opened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from mlcl.data.captions import fiq_eval_caption

CATEGORIES: tuple[str, ...] = ("dress", "shirt", "toptee")
SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".png")
DIR_NAME = "fashionIQ_dataset"


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"FashionIQ: missing file {path}")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"FashionIQ: {path} is not valid JSON: {exc}") from exc


def resolve_root(root: str | Path) -> Path:
    """The folder holding captions/, image_splits/ and images/."""
    root = Path(root).expanduser()
    if not (root / "captions").is_dir() and (root / DIR_NAME / "captions").is_dir():
        root = root / DIR_NAME
    if not (root / "captions").is_dir():
        raise FileNotFoundError(
            f"FashionIQ: no captions/ folder in {root} (nor in {root / DIR_NAME}); "
            "expected the fashionIQ_dataset layout, see docs/evaluation.md"
        )
    return root


class FashionIQ:
    """Triplets and per-category galleries of one split.

    triplets: list of {"id": "dress/0", "category", "reference", "target"
    (None when the file has no targets), "captions": [c1, c2], "caption":
    the evaluation variant "C1 and c2"}.
    galleries: category -> every name in split.{category}.{split}.json (the
    "original split" gallery of the official protocol).
    """

    def __init__(
        self, root: str | Path, split: str = "val", categories: Sequence[str] = CATEGORIES
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"FashionIQ: unknown split {split!r}; choose from {SPLITS}")
        unknown = [c for c in categories if c not in CATEGORIES]
        if unknown:
            raise ValueError(f"FashionIQ: unknown categories {unknown}; choose from {CATEGORIES}")
        self.root = resolve_root(root)
        self.split = split
        self.categories = tuple(categories)
        self.triplets: list[dict[str, Any]] = []
        self.galleries: dict[str, list[str]] = {}
        for category in self.categories:
            self.galleries[category] = self._read_gallery(category)
            self.triplets.extend(self._read_triplets(category))

    def _read_gallery(self, category: str) -> list[str]:
        path = self.root / "image_splits" / f"split.{category}.{self.split}.json"
        names = _read_json(path)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"FashionIQ: {path} must be a JSON list of image names")
        return names

    def _read_triplets(self, category: str) -> list[dict[str, Any]]:
        path = self.root / "captions" / f"cap.{category}.{self.split}.json"
        entries = _read_json(path)
        if not isinstance(entries, list):
            raise ValueError(f"FashionIQ: {path} must be a JSON list of triplets")
        out = []
        for i, entry in enumerate(entries):
            for field in ("candidate", "captions") + (("target",) if self.split != "test" else ()):
                if field not in entry:
                    raise KeyError(f"FashionIQ: {path} entry {i} lacks the field {field!r}")
            captions = list(entry["captions"])
            if len(captions) != 2:
                raise ValueError(f"FashionIQ: {path} entry {i} has {len(captions)} captions, expected 2")
            out.append(
                {
                    "id": f"{category}/{i}",
                    "category": category,
                    "reference": entry["candidate"],
                    "target": entry.get("target"),
                    "captions": captions,
                    "caption": fiq_eval_caption(captions),
                }
            )
        return out

    @property
    def gallery(self) -> list[str]:
        """All categories' gallery names, first occurrence order."""
        return list(dict.fromkeys(n for c in self.categories for n in self.galleries[c]))

    def triplets_of(self, category: str) -> list[dict[str, Any]]:
        return [t for t in self.triplets if t["category"] == category]

    def image_path(self, name: str) -> Path:
        """images/{name}.jpg, else images/{name}.png; the error names both."""
        images = self.root / "images"
        if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
            candidates = [images / name]
        else:
            candidates = [images / f"{name}{ext}" for ext in IMAGE_EXTENSIONS]
        for path in candidates:
            if path.is_file():
                return path
        raise FileNotFoundError(
            f"FashionIQ: image {name!r} not found (tried {', '.join(map(str, candidates))})"
        )
