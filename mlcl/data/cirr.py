"""CIRR (Liu et al. 2021), version rc2, in its official layout.

    <root>/cirr/captions/cap.rc2.{train,val,test1}.json
    <root>/cirr/image_splits/split.rc2.{train,val,test1}.json   {name: "./dev/dev-0-0-img0.png"}
    <root>/train/..., <root>/dev/..., <root>/test1/...            (images)

Relative image paths are resolved against `<root>` (the folder that holds
`cirr/`), as the official release and CLIP4Cir do.  `root` may also be the
`cirr/` folder itself.  Plain Python: no LAVIS, no Jina.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VERSION = "rc2"
SPLITS: tuple[str, ...] = ("train", "val", "test1")
SPLIT_ALIASES = {"test": "test1", "dev": "val"}
TRIPLET_FIELDS = ("pairid", "reference", "caption", "img_set")
TARGET_FIELDS = ("target_hard",)  # absent from test1


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"CIRR: missing file {path}")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"CIRR: {path} is not valid JSON: {exc}") from exc


def resolve_root(root: str | Path) -> Path:
    """The folder that holds cirr/ (and the image folders)."""
    root = Path(root).expanduser()
    if not (root / "cirr" / "captions").is_dir() and (root / "captions").is_dir() and root.name == "cirr":
        root = root.parent
    if not (root / "cirr" / "captions").is_dir():
        raise FileNotFoundError(
            f"CIRR: no cirr/captions/ folder in {root}; expected the official CIRR layout, "
            "see docs/evaluation.md"
        )
    return root


class CIRR:
    """Triplets, gallery and image paths of one split.

    triplets: list of {"id": str(pairid), "pairid": int, "reference",
    "target" (target_hard; None on test1), "target_soft" (dict, {} on test1),
    "caption", "members": the img_set members (reference included),
    "img_set_id"}.
    gallery: every image name of split.rc2.{split}.json, in file order.
    """

    def __init__(self, root: str | Path, split: str = "val") -> None:
        split = SPLIT_ALIASES.get(split, split)
        if split not in SPLITS:
            raise ValueError(f"CIRR: unknown split {split!r}; choose from {SPLITS}")
        self.root = resolve_root(root)
        self.split = split
        self.split_file = self.root / "cirr" / "image_splits" / f"split.{VERSION}.{split}.json"
        self.caption_file = self.root / "cirr" / "captions" / f"cap.{VERSION}.{split}.json"
        relpaths = _read_json(self.split_file)
        if not isinstance(relpaths, dict):
            raise ValueError(f"CIRR: {self.split_file} must be a JSON object name -> relative path")
        self.name_to_relpath: dict[str, str] = relpaths
        self.gallery: list[str] = list(relpaths)
        self.triplets: list[dict[str, Any]] = self._read_triplets()

    @property
    def has_targets(self) -> bool:
        return self.split != "test1"

    def _read_triplets(self) -> list[dict[str, Any]]:
        entries = _read_json(self.caption_file)
        if not isinstance(entries, list):
            raise ValueError(f"CIRR: {self.caption_file} must be a JSON list of triplets")
        required = TRIPLET_FIELDS + (TARGET_FIELDS if self.has_targets else ())
        out = []
        for i, entry in enumerate(entries):
            for field in required:
                if field not in entry:
                    raise KeyError(f"CIRR: {self.caption_file} entry {i} lacks the field {field!r}")
            img_set = entry["img_set"]
            if "members" not in img_set:
                raise KeyError(f"CIRR: {self.caption_file} entry {i} lacks the field 'img_set.members'")
            out.append(
                {
                    "id": str(entry["pairid"]),
                    "pairid": int(entry["pairid"]),
                    "reference": entry["reference"],
                    "target": entry.get("target_hard"),
                    "target_soft": dict(entry.get("target_soft") or {}),
                    "caption": entry["caption"],
                    "members": list(img_set["members"]),
                    "img_set_id": img_set.get("id"),
                }
            )
        return out

    def image_path(self, name: str) -> Path:
        try:
            rel = self.name_to_relpath[name]
        except KeyError:
            raise KeyError(f"CIRR: image {name!r} is not listed in {self.split_file}") from None
        return self.root / rel
