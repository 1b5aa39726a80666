"""The real-data loaders read tiny fixture trees written in the official layouts."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from mlcl.data.captions import fiq_all_variants, fiq_eval_caption, fiq_train_caption
from mlcl.data.cirr import CIRR
from mlcl.data.fashioniq import FashionIQ
from mlcl.data.images import ImageFiles
from mlcl.data.shoes import Shoes
from test_eval_fakes import (
    CIRR_IMAGES, SHOES_EVAL, SHOES_TRAIN, fake_preprocess, write_cirr_fixture, write_fashioniq_fixture,
    write_shoes_fixture,
)


# ------------------------------------------------------------------ captions
def test_fiq_caption_variants_follow_the_authors_code():
    caps = ["Is Longer.", "has sleeves?"]
    # str.capitalize(): first letter up, rest of that caption lower case; ".?, " stripped
    assert fiq_all_variants(caps) == [
        "Is longer and has sleeves",
        "Has sleeves and Is Longer",
        "Is longer",
        "Has sleeves",
    ]
    assert fiq_eval_caption([" is red, ", "and shorter"]) == "Is red and and shorter"


def test_fiq_train_caption_draws_four_variants_evenly():
    rng = random.Random(0)
    counts = Counter(fiq_train_caption(["a", "b"], rng) for _ in range(4000))
    assert set(counts) == {"A and b", "B and a", "A", "B"}
    assert all(900 < n < 1100 for n in counts.values())


def test_fiq_caption_needs_two_captions():
    with pytest.raises(ValueError, match="exactly two"):
        fiq_eval_caption(["only one"])


# ------------------------------------------------------------------ FashionIQ
def test_fashioniq_reads_official_layout(tmp_path):
    root = write_fashioniq_fixture(tmp_path)
    for given in (root, tmp_path):  # the fashionIQ_dataset folder or its parent
        ds = FashionIQ(given, "val")
        assert ds.root == root
    assert ds.galleries["dress"] == [f"d{i}" for i in range(12)]
    assert len(ds.triplets) == 4
    first = ds.triplets[0]
    assert first == {
        "id": "dress/0", "category": "dress", "reference": "d0", "target": "d1",
        "captions": ["1 is longer.", "has sleeves?"], "caption": "1 is longer and has sleeves",
    }
    assert [t["id"] for t in ds.triplets_of("toptee")] == ["toptee/0"]
    assert ds.image_path("d0") == root / "images" / "d0.jpg"
    assert ds.image_path("d11") == root / "images" / "d11.png"  # .png copies
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        ds.image_path("nope")
    assert FashionIQ(root, "val", categories=["shirt"]).gallery == ["s0", "s1", "s2"]


def test_fashioniq_errors_name_the_missing_file_or_field(tmp_path):
    root = write_fashioniq_fixture(tmp_path)
    (root / "image_splits" / "split.shirt.val.json").unlink()
    with pytest.raises(FileNotFoundError, match="split.shirt.val.json"):
        FashionIQ(root, "val")
    (root / "captions" / "cap.dress.val.json").write_text(json.dumps([{"target": "d1", "captions": ["a", "b"]}]))
    with pytest.raises(KeyError, match="cap.dress.val.json entry 0 lacks the field 'candidate'"):
        FashionIQ(root, "val", categories=["dress"])
    with pytest.raises(FileNotFoundError, match="captions/ folder"):
        FashionIQ(tmp_path / "empty", "val")


# ----------------------------------------------------------------------- CIRR
def test_cirr_reads_official_layout(tmp_path):
    root = write_cirr_fixture(tmp_path)
    ds = CIRR(root, "val")
    assert CIRR(root / "cirr", "val").root == root  # the cirr/ folder works too
    assert ds.gallery == CIRR_IMAGES["val"]
    t = ds.triplets[1]
    assert t["id"] == "11" and t["pairid"] == 11
    assert t["reference"] == "dev-0-0-img0" and t["target"] == "dev-3-0-img3"
    assert t["members"][0] == "dev-0-0-img0" and len(t["members"]) == 6
    assert t["target_soft"] == {"dev-3-0-img3": 1.0}
    assert ds.image_path("dev-2-0-img2") == root / "dev" / "dev-2-0-img2.png"
    assert ds.image_path("dev-2-0-img2").is_file()
    with pytest.raises(KeyError, match="split.rc2.val.json"):
        ds.image_path("dev-99")


def test_cirr_test1_has_no_targets(tmp_path):
    root = write_cirr_fixture(tmp_path)
    ds = CIRR(root, "test")  # alias of test1
    assert ds.split == "test1" and not ds.has_targets
    assert all(t["target"] is None and t["target_soft"] == {} for t in ds.triplets)
    assert ds.image_path(ds.gallery[0]) == root / "test1" / "test1-0-0-img0.png"


def test_cirr_errors_name_the_missing_file_or_field(tmp_path):
    root = write_cirr_fixture(tmp_path, splits=("val",))
    with pytest.raises(FileNotFoundError, match="split.rc2.test1.json"):
        CIRR(root, "test1")
    cap = root / "cirr" / "captions" / "cap.rc2.val.json"
    entries = json.loads(cap.read_text())
    del entries[2]["target_hard"]
    cap.write_text(json.dumps(entries))
    with pytest.raises(KeyError, match="entry 2 lacks the field 'target_hard'"):
        CIRR(root, "val")
    with pytest.raises(ValueError, match="unknown split"):
        CIRR(root, "dev2")


# ---------------------------------------------------------------------- Shoes
def test_shoes_keeps_triplets_within_one_split(tmp_path):
    root = write_shoes_fixture(tmp_path)
    train = Shoes(root, "train")
    assert train.gallery == SHOES_TRAIN
    assert train.triplets == [
        {"id": "0", "reference": SHOES_TRAIN[0], "target": SHOES_TRAIN[1], "caption": "is taller"}]
    ev = Shoes(root, "test")  # alias of eval
    assert ev.split == "eval" and ev.gallery == SHOES_EVAL
    assert [t["id"] for t in ev.triplets] == ["2", "3", "4"]  # "1" crosses the splits
    # images are found at any depth under womens_*/
    assert ev.image_path(SHOES_EVAL[0]) == root / "womens_clogs" / "0" / "deep" / SHOES_EVAL[0]
    assert ev.image_path(SHOES_EVAL[1]) == root / "womens_clogs" / "1" / SHOES_EVAL[1]


def test_shoes_errors_name_the_missing_file(tmp_path):
    root = write_shoes_fixture(tmp_path)
    (root / "womens_clogs" / "1" / SHOES_EVAL[1]).unlink()
    ds = Shoes(root, "eval")
    with pytest.raises(FileNotFoundError, match=SHOES_EVAL[1]):
        ds.image_path(SHOES_EVAL[1])
    (root / "eval_im_names.txt").unlink()
    with pytest.raises(FileNotFoundError, match="eval_im_names.txt"):
        Shoes(root, "eval")
    (root / "relative_captions_shoes.json").write_text(json.dumps([{"ImageName": "x"}]))
    with pytest.raises(KeyError, match="'ReferenceImageName'"):
        Shoes(root, "train")


# --------------------------------------------------------------------- images
def test_image_files_open_lazily_in_batches(tmp_path):
    root = write_cirr_fixture(tmp_path, splits=("val",))
    ds = CIRR(root, "val")
    files = ImageFiles([ds.image_path(n) for n in ds.gallery], fake_preprocess)
    assert len(files) == 8 and all(isinstance(p, type(files.paths[0])) for p in files.paths)
    batches = list(DataLoader(files, batch_size=3, num_workers=1))
    assert [b.shape[0] for b in batches] == [3, 3, 2]
    reds = torch.cat(batches)[:, 0, 0, 0]
    assert reds.tolist() == [4.0 * i for i in range(8)]
    with pytest.raises(FileNotFoundError, match="missing.png"):
        ImageFiles([tmp_path / "missing.png"], fake_preprocess)[0]
