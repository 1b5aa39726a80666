"""Shared helpers for the evaluation tests (no tests here).

* `FakeModel`: the model API of `mlcl.model` with hand-predictable scores.
  An image's id is its red value / 4; its feature is one_hot(id).  A caption
  such as "2 3:0.4 6:0.3" gives text feature 1.0*e2 + 0.4*e3 + 0.3*e6 (weight
  1 when omitted).  query = normalize(f_txt + 0.5 * f_ref), gallery = one_hot,
  so a gallery image's score is proportional to its caption weight, plus 0.5
  for the reference image itself.
* `write_*_fixture`: tiny trees in the official layouts of PROTOCOLS.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F

DIM = 64
REF_WEIGHT = 0.5


def write_image(path: Path, image_id: int) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (image_id * 4, 0, 0)).save(path)
    return path


def fake_preprocess(img) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(np.asarray(img, dtype="float32")).permute(2, 0, 1)


class FakeModel:
    preprocess = staticmethod(fake_preprocess)
    embed_dim = DIM

    def __init__(self) -> None:
        self.weighting = "train"
        self.seen_image_batches: list[int] = []

    def eval(self) -> "FakeModel":
        return self

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        self.seen_image_batches.append(images.shape[0])
        # real images (shapes CLI test) may have any red value: wrap into range
        ids = torch.round(images[:, 0].mean(dim=(1, 2)) / 4).long() % DIM
        return F.one_hot(ids, DIM).float()

    def text_features(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), DIM)
        for i, text in enumerate(texts):
            for num, weight in re.findall(r"(\d+)(?::([\d.]+))?", text):
                out[i, int(num)] = float(weight) if weight else 1.0
        return out

    def compose(self, f_ref: torch.Tensor, f_txt: torch.Tensor) -> torch.Tensor:
        return F.normalize(f_txt + REF_WEIGHT * f_ref, dim=-1)

    def gallery_vectors(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(f, dim=-1)

    def set_inference_weighting(self, name: str) -> None:
        self.weighting = name


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


# ------------------------------------------------------------------ FashionIQ
# dress: 12 images d0..d11 (ids 0..11), d11 stored as .png; shirt: ids 20..22; toptee: ids 40..42.
FIQ_GALLERIES = {
    "dress": [f"d{i}" for i in range(12)],
    "shirt": [f"s{i}" for i in range(3)],
    "toptee": [f"t{i}" for i in range(3)],
}
FIQ_IDS = {**{f"d{i}": i for i in range(12)}, **{f"s{i}": 20 + i for i in range(3)},
           **{f"t{i}": 40 + i for i in range(3)}}
FIQ_VAL = {
    # dress q0: caption points at d1 = target -> rank 1.
    # dress q1: caption points at d2, target d3 has weight 0; reference d0 is NOT excluded
    #           on FashionIQ, so d2, d0 and the 9 zero-score images (pessimistic ties) rank
    #           above d3 -> rank 12: miss at 10, hit at 50.
    "dress": [
        {"candidate": "d0", "target": "d1", "captions": ["1 is longer.", "has sleeves?"]},
        {"candidate": "d0", "target": "d3", "captions": ["2", "is red"]},
    ],
    "shirt": [{"candidate": "s0", "target": "s2", "captions": ["22", "x"]}],  # rank 1
    "toptee": [{"candidate": "t0", "target": "t1", "captions": ["41:0.4 42", "y"]}],  # t2, t0 above -> rank 3
}


def write_fashioniq_fixture(parent: Path, split: str = "val") -> Path:
    root = parent / "fashionIQ_dataset"
    for category, gallery in FIQ_GALLERIES.items():
        _dump(root / "image_splits" / f"split.{category}.{split}.json", gallery)
        _dump(root / "captions" / f"cap.{category}.{split}.json", FIQ_VAL[category])
        for name in gallery:
            ext = ".png" if name == "d11" else ".jpg"
            write_image(root / "images" / f"{name}{ext}", FIQ_IDS[name])
    return root


# ----------------------------------------------------------------------- CIRR
CIRR_IMAGES = {"val": [f"dev-{i}-0-img{i}" for i in range(8)], "test1": [f"test1-{i}-0-img{i}" for i in range(8)]}
CIRR_DIRS = {"val": "dev", "test1": "test1"}


def _cirr_entry(split: str, pairid: int, ref: int, caption: str, target: int, members: list[int]) -> dict:
    names = CIRR_IMAGES[split]
    entry = {
        "pairid": pairid,
        "reference": names[ref],
        "caption": caption,
        "img_set": {"id": pairid // 10, "members": [names[m] for m in members],
                    "reference_rank": 0, "target_rank": 1},
    }
    if split != "test1":
        entry.update(target_hard=names[target], target_soft={names[target]: 1.0})
    return entry


# (pairid, reference, caption, target, img_set members incl. reference)
# Ranks with the reference removed: 1, 2, 6; subset ranks: 1, 2, 4 (see test_eval_pipeline).
CIRR_QUERIES = [
    (10, 0, "1", 1, [0, 1, 2, 3, 4, 5]),
    (11, 0, "2 3:0.4 6:0.3", 3, [0, 3, 2, 6, 7, 5]),
    (12, 4, "5 6:0.9 7:0.8 1:0.7 3:0.6 2:0.2", 2, [4, 2, 5, 6, 1, 0]),
]


def write_cirr_fixture(parent: Path, splits: tuple[str, ...] = ("val", "test1")) -> Path:
    root = parent / "cirr_dataset"
    for split in splits:
        names = CIRR_IMAGES[split]
        folder = CIRR_DIRS[split]
        _dump(root / "cirr" / "image_splits" / f"split.rc2.{split}.json",
              {n: f"./{folder}/{n}.png" for n in names})
        for i, n in enumerate(names):
            write_image(root / folder / f"{n}.png", i)
        _dump(root / "cirr" / "captions" / f"cap.rc2.{split}.json",
              [_cirr_entry(split, *q) for q in CIRR_QUERIES])
    return root


# ---------------------------------------------------------------------- Shoes
SHOES_TRAIN = [f"img_womens_boots_{i}.jpg" for i in range(3)]
SHOES_EVAL = [f"img_womens_clogs_{i}.jpg" for i in range(12)]
SHOES_CAPTIONS = [
    {"ImageName": SHOES_TRAIN[1], "ReferenceImageName": SHOES_TRAIN[0], "RelativeCaption": "is taller "},
    {"ImageName": SHOES_EVAL[0], "ReferenceImageName": SHOES_TRAIN[2], "RelativeCaption": "crosses splits"},
    {"ImageName": SHOES_EVAL[1], "ReferenceImageName": SHOES_EVAL[0], "RelativeCaption": "1"},  # rank 1
    # reference clogs_2 (0.5) is excluded; 3 (1.0) ahead of target 4 (0.6) -> rank 2
    {"ImageName": SHOES_EVAL[4], "ReferenceImageName": SHOES_EVAL[2], "RelativeCaption": "3 4:0.6"},
    # target 5 has weight 0: 10 other non-reference images tie or beat it -> rank 11
    {"ImageName": SHOES_EVAL[5], "ReferenceImageName": SHOES_EVAL[6], "RelativeCaption": "7"},
]
SHOES_IDS = {**{n: 30 + i for i, n in enumerate(SHOES_TRAIN)}, **{n: i for i, n in enumerate(SHOES_EVAL)}}


def write_shoes_fixture(parent: Path) -> Path:
    root = parent / "shoes"
    _dump(root / "relative_captions_shoes.json", SHOES_CAPTIONS)
    (root / "train_im_names.txt").write_text("\n".join(SHOES_TRAIN) + "\n")
    (root / "eval_im_names.txt").write_text("\n".join(SHOES_EVAL) + "\n")
    for name in SHOES_TRAIN:
        write_image(root / "womens_boots" / "0" / name, SHOES_IDS[name])
    for i, name in enumerate(SHOES_EVAL):
        # nested at two depths, as in the Attribute Discovery tree
        sub = root / "womens_clogs" / str(i % 2) / ("deep" if i % 3 == 0 else "")
        write_image(sub / name, SHOES_IDS[name])
    return root


# --------------------------------------------------------------------- Shapes
class FakeShapes:
    """The ShapesDataset interface over images g0..g7; scenes: g1 == g2 == g5 (scene "A")."""

    scenes = {"g0": "R", "g1": "A", "g2": "A", "g3": "B", "g4": "C", "g5": "A", "g6": "D", "g7": "E"}

    def __init__(self, root: Path) -> None:
        self.root = root
        self.gallery = list(self.scenes)
        for i, n in enumerate(self.gallery):
            write_image(root / f"{n}.png", i)
        self.triplets = [
            # target g1's scene is {g1, g2, g5}; g5 scores best -> rank 1
            {"id": 0, "reference": "g0", "target": "g1", "caption": "5 1:0.5"},
            # hits {g1,g2,g5}: g5 is the reference (excluded by name); g3 (1.0) ahead of g2 (0.8) -> rank 2
            {"id": 1, "reference": "g5", "target": "g2", "caption": "3 2:0.8"},
            # target scene B = {g3}; g4, g6, g7 ahead -> rank 4
            {"id": 2, "reference": "g0", "target": "g3", "caption": "4 6:0.9 7:0.8 3:0.7"},
        ]

    def image_path(self, name: str) -> Path:
        return self.root / f"{name}.png"

    def scene_key(self, name: str) -> str:
        return self.scenes[name]
