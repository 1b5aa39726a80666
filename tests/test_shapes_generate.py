"""The generated shapes benchmark: determinism, pixels, targets, captions, splits, baselines."""

from __future__ import annotations

import collections
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlcl.data.shapes import ShapesDataset, ensure_shapes, generate_shapes
from mlcl.data.shapes.baselines import _GalleryArrays, oracle_baselines
from mlcl.data.shapes.config import SPLITS, load_config
from mlcl.data.shapes.generate import GENERATOR_VERSION, manifest_file
from mlcl.data.shapes.modify import Modification, apply
from mlcl.data.shapes.phrasing import interpret, parse_caption
from mlcl.data.shapes.refer import Expression
from mlcl.data.shapes.render import Geometry
from mlcl.data.shapes.scene import Obj, Scene

SMALL = {"train": 300, "val": 60, "test": 200, "novel": 120, "hard": 120}
ONE_EDIT_SPLITS = [s for s in SPLITS if s != "hard"]


def _split_files(root: Path, split: str) -> dict[str, str]:
    """Relative path -> sha256 of every file that belongs to `split`."""
    paths = [p for p in (root / "images" / split).iterdir()]
    paths += [root / "captions" / f"cap.shapes.{split}.json", root / "image_splits" / f"split.shapes.{split}.json",
              root / "scenes" / f"scene.shapes.{split}.json", manifest_file(root, split)]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    # All splits with two processes, to compare with splits made alone.
    return generate_shapes(tmp_path_factory.mktemp("shapes") / "all", seed=0, sizes=SMALL, workers=2,
                           progress=False)


@pytest.fixture(scope="module")
def default_test_root(tmp_path_factory) -> Path:
    """The default-size test split (2,000 queries), as CI and `mlcl eval` get it."""
    return ensure_shapes(tmp_path_factory.mktemp("shapes") / "default", split="test", workers=1)


# ------------------------------------------------------------ determinism
def test_split_alone_is_byte_identical_to_full_generation(small_root, tmp_path):
    alone = generate_shapes(tmp_path / "alone", seed=0, sizes={"test": SMALL["test"]}, splits=["test"],
                            workers=1, progress=False)
    assert not (alone / "images" / "train").exists()
    full, single = _split_files(small_root, "test"), _split_files(alone, "test")
    assert len(full) > SMALL["test"] and full == single


def test_same_seed_same_bytes_other_seed_other_scenes(small_root, tmp_path):
    again = generate_shapes(tmp_path / "again", seed=0, sizes={"novel": SMALL["novel"]}, splits=["novel"],
                            workers=1, progress=False)
    assert _split_files(again, "novel") == _split_files(small_root, "novel")
    other = generate_shapes(tmp_path / "other", seed=1, sizes={"novel": SMALL["novel"]}, splits=["novel"],
                            workers=1, progress=False)
    a, b = ShapesDataset(small_root, "novel"), ShapesDataset(other, "novel")
    same = sum(x["reference_key"] == y["reference_key"] for x, y in zip(a.triplets, b.triplets))
    assert same < 0.1 * len(a)
    assert {t["caption"] for t in a.triplets} != {t["caption"] for t in b.triplets}


def test_smaller_split_is_a_prefix(small_root, tmp_path):
    n = 50  # not a multiple of the 4 queries per reference: the last group is cut
    small = ShapesDataset(generate_shapes(tmp_path / "p", sizes={"test": n}, splits=["test"], workers=1,
                                          progress=False), "test")
    big = ShapesDataset(small_root, "test")
    assert small.triplets == big.triplets[:n]
    assert set(small.gallery) < set(big.gallery)
    for name in small.gallery:
        assert small.image_path(name).read_bytes() == big.image_path(name).read_bytes()


# ------------------------------------------------------------------ pixels
def decode(img: Image.Image, image_size: int) -> Scene:
    """Read a scene back from pixels, independently of the renderer's drawing code."""
    cfg = load_config()
    geo = Geometry(image_size)
    arr = np.asarray(img)
    assert arr.shape == (image_size, image_size, 3)
    by_rgb = {tuple(v): k for k, v in cfg.colours.items()}
    objs = []
    for cell in range(cfg.n_cells):
        x0, x1, y0, y1 = geo.cell_box(cell)
        patch = arr[y0:y1, x0:x1]
        ink = ~(patch == np.array(cfg.background, np.uint8)).all(-1)
        if not ink.any():
            continue  # empty cell: background everywhere
        rgbs = {tuple(int(c) for c in px) for px in patch[ink]}
        assert len(rgbs) == 1, f"cell {cell} mixes colours {rgbs}"
        colour = by_rgb[rgbs.pop()]
        cx, cy = geo.centre(cell)
        assert by_rgb.get(tuple(int(c) for c in arr[cy, cx])) == colour  # the pixel at the object's position
        ys, xs = np.nonzero(ink)
        box = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        side = box.shape[1]
        size = min(cfg.half_sizes, key=lambda z: abs(2 * geo.half(z) - side))
        assert abs(2 * geo.half(size) - side) <= 1
        if box.all():
            shape = "square"
        elif box[-1, 0] and box[-1, -1] and not box[0, 0] and not box[0, -1]:
            shape = "triangle"
        elif not (box[0, 0] or box[0, -1] or box[-1, 0] or box[-1, -1]):
            shape = "circle"
        else:
            raise AssertionError(f"cell {cell}: unrecognisable shape\n{box.astype(int)}")
        objs.append(Obj(cell, colour, shape, size))
    return Scene(objs)


@pytest.mark.parametrize("split", SPLITS)
def test_every_image_decodes_to_its_scene(small_root, split):
    ds = ShapesDataset(small_root, split)
    names = ds.image_names
    assert len(names) == len(set(names)) == len(os.listdir(small_root / "images" / split))
    for name in names:
        img = ds.load_image(name)
        assert img.mode == "RGB"
        assert decode(img, 64).key == ds.scene_key(name), name


def test_other_image_size_decodes(tmp_path):
    root = generate_shapes(tmp_path, sizes={"val": 12}, splits=["val"], image_size=96, workers=1, progress=False)
    ds = ShapesDataset(root, "val")
    assert ds.image_size == 96
    for name in ds.image_names:
        assert decode(ds.load_image(name), 96).key == ds.scene_key(name)
    with pytest.raises(ValueError, match="too small"):
        generate_shapes(tmp_path / "tiny", image_size=16, splits=["val"], progress=False)


# ---------------------------------------------------------- triplets/texts
@pytest.mark.parametrize("split", ONE_EDIT_SPLITS)
def test_targets_follow_from_reference_and_caption(small_root, split):
    cfg = load_config()
    ds = ShapesDataset(small_root, split)
    assert len(ds) == SMALL[split]
    for t in ds.triplets:
        ref, target = Scene.from_json(t["reference_scene"]), Scene.from_json(t["target_scene"])
        assert ref.key == t["reference_key"] == ds.scene_key(t["reference"])
        assert target.key == t["target_key"] == ds.scene_key(t["target"])
        assert cfg.min_objects <= len(ref) <= cfg.max_objects and cfg.min_objects <= len(target) <= cfg.max_objects
        mod = Modification.from_json(t["modification"])
        assert t["kind"] == mod.kind and apply(ref, mod) == target != ref
        # The caption alone has one reading; in the reference it names exactly one
        # object (interpret raises otherwise); applied, it gives the target.
        assert len(parse_caption(t["caption"])) == 1
        assert interpret(t["caption"], ref) == mod
        if mod.kind != "add":
            assert Expression.from_json(t["expression"]).referents(ref) == [mod.obj]


def test_distributions(small_root):
    cfg = load_config()
    ds = ShapesDataset(small_root, "train")
    counts = collections.Counter(len(t["reference_scene"]) for t in ds.triplets)
    assert set(counts) == set(range(cfg.min_objects, cfg.max_objects + 1))
    # About even, but for one-object references: half of those scenes are the evaluation splits' share.
    many = [counts[n] for n in range(cfg.reserved_max_objects + 1, cfg.max_objects + 1)]
    assert max(many) < 2 * min(many) and 0.2 * min(many) < counts[1] < min(many)
    kinds = collections.Counter(t["kind"] for t in ds.triplets)
    assert set(kinds) == set(cfg.kinds) and min(kinds.values()) > 0.5 * len(ds) / len(cfg.kinds)
    assert len({t["caption"] for t in ds.triplets}) > 0.7 * len(ds)  # short captions may recur
    assert sorted(ds.gallery) == sorted(ds.image_names) and len(ds.gallery) == 2 * len(ds)


@pytest.mark.parametrize("split", ["val", "test", "novel"])
def test_evaluation_gallery_holds_references_targets_and_hard_negatives(small_root, split):
    ds = ShapesDataset(small_root, split)
    gallery = set(ds.gallery)
    assert len(gallery) == len(ds.gallery) and gallery == set(ds.image_names)
    assert all(t["reference"] in gallery and t["target"] in gallery for t in ds.triplets)
    used = {t["reference"] for t in ds.triplets} | {t["target"] for t in ds.triplets}
    assert len(gallery - used) >= len(ds)  # distractors
    # Hard negatives: most targets have a gallery scene one attribute away that is not a target.
    keys = [Scene.from_key(ds.scene_key(n)) for n in ds.gallery]
    arrays = _GalleryArrays(keys)
    near = sum(int((arrays.distance_to(Scene.from_json(t["target_scene"])) == 1).any()) for t in ds.triplets)
    assert near > 0.5 * len(ds)


def test_hard_split_targets_follow_from_reference_and_edits(small_root):
    """Hard queries: 6-8 objects, one or two edits in one caption, objects named in the reference (some
    by a relation to another object); applying the edits in order gives the target."""
    from mlcl.data.shapes.refer import referring_expression_from_json

    cfg = load_config()
    h = cfg.hard
    ds = ShapesDataset(small_root, "hard")
    assert len(ds) == SMALL["hard"]
    forms, relational = collections.Counter(), 0
    gallery_keys = {ds.scene_key(n) for n in ds.gallery}
    for t in ds.triplets:
        ref, target = Scene.from_json(t["reference_scene"]), Scene.from_json(t["target_scene"])
        assert ref.key == ds.scene_key(t["reference"]) and target.key == ds.scene_key(t["target"])
        assert h.min_objects <= len(ref) <= h.max_objects and h.min_objects <= len(target) <= h.max_objects
        assert not (ref.pairs() | target.pairs()) & cfg.held_out_pairs
        mods = [Modification.from_json(m) for m in t["modifications"]]
        assert t["kind"] == "+".join(m.kind for m in mods)
        scene = ref
        for m in mods:
            scene = apply(scene, m, h.limits)
        assert scene == target != ref
        for i, (m, e) in enumerate(zip(mods, t["expressions"])):
            if m.kind == "add":
                assert e is None
            elif e == {"pronoun": "it"}:  # the second edit acts on the first one's object
                assert i == 1 and m.obj == mods[0].new_object() and t["form"] == "two edits, one object"
                assert " and " in t["caption"] and " it" in t["caption"]
            else:  # named in the reference, unambiguously
                expr = referring_expression_from_json(e)
                assert expr.referents(ref) == [m.obj], (t["caption"], e)
                assert expr.text() in t["caption"]
                relational += bool(e.get("relation"))
        if len(mods) == 2:
            # both edits matter, and each one-edit intermediate is in the gallery as a hard negative
            partials = [apply(ref, mods[0], h.limits)]
            if t["form"] == "two edits, two objects":
                assert not mods[0].changed_cells() & mods[1].changed_cells()
                try:
                    partials.append(apply(ref, mods[1], h.limits))
                except ValueError:  # the second edit alone leaves too few or too many objects
                    pass
            assert all(p != target and p.key in gallery_keys for p in partials)
        forms[t["form"]] += 1
    assert set(forms) == {"one edit", "two edits, one object", "two edits, two objects"}
    assert 0.3 < forms["one edit"] / len(ds) < 0.7 and relational > 0.15 * len(ds)


def test_novel_pairs_never_occur_outside_the_novel_split(small_root):
    held = load_config().held_out_pairs
    assert len(held) >= 2
    for split in ("train", "val", "test", "hard"):
        ds = ShapesDataset(small_root, split)
        for name in ds.image_names:
            assert not (ds.scene(name).pairs() & held), (split, name)
    novel = ShapesDataset(small_root, "novel")
    made = collections.Counter()
    for t in novel.triplets:
        ref, target = Scene.from_json(t["reference_scene"]), Scene.from_json(t["target_scene"])
        assert not (ref.pairs() & held)
        assert target.pairs() & held == {tuple(t["novel_pair"])}
        made[tuple(t["novel_pair"])] += 1
    assert set(made) == held  # every held-out pair is tested


# -------------------------------------------------------------- dataset API
def test_dataset_api_and_errors(small_root, tmp_path):
    ds = ShapesDataset(small_root, "test")
    t = ds[0]
    assert set(t) >= {"id", "reference", "target", "caption", "kind", "reference_scene", "target_scene"}
    assert ds.image_path(t["target"]) == small_root / "images" / "test" / f"{t['target']}.png"
    assert ds.image_path(t["target"]).is_file()
    assert ds.load_image(t["reference"]).size == (64, 64)
    assert t["caption"] in ds.paraphrases(0) and len(ds.paraphrases(0)) >= 3
    # scene_key equal iff scenes are equal
    keys = {n: ds.scene_key(n) for n in ds.gallery}
    by_key = collections.defaultdict(set)
    for n, k in keys.items():
        by_key[k].add(np.asarray(ds.load_image(n)).tobytes())
    assert all(len(v) == 1 for v in by_key.values())  # same key -> same pixels
    assert len({v.pop() for v in by_key.values()}) == len(by_key)  # other key -> other pixels
    with pytest.raises(KeyError, match="no image"):
        ds.image_path("nope")
    with pytest.raises(FileNotFoundError, match=r"split 'val' is missing.*mlcl data shapes"):
        ShapesDataset(tmp_path, "val")
    with pytest.raises(ValueError, match="unknown shapes split 'dev'"):
        ShapesDataset(small_root, "dev")
    # Layout like the public sets.
    caps = json.loads((small_root / "captions" / "cap.shapes.test.json").read_text())
    assert caps == ds.triplets
    assert json.loads((small_root / "image_splits" / "split.shapes.test.json").read_text()) == ds.gallery


def test_ensure_shapes_generates_once_and_detects_problems(tmp_path, monkeypatch):
    root = tmp_path / "r"
    assert ensure_shapes(root, split="val", n=8, workers=1) == root
    assert not (root / "images" / "test").exists()  # only the asked split
    manifest = json.loads(manifest_file(root, "val").read_text())
    assert manifest["seed"] == 0 and manifest["n_triplets"] == 8 and manifest["generator_version"] == GENERATOR_VERSION
    before = manifest_file(root, "val").stat().st_mtime_ns
    ensure_shapes(root, split="val", n=8)
    assert manifest_file(root, "val").stat().st_mtime_ns == before  # idempotent: nothing rewritten
    # An incomplete split (a lost image) or an older generator version is regenerated.
    victim = next((root / "images" / "val").iterdir())
    victim.unlink()
    ensure_shapes(root, split="val", n=8)
    assert victim.is_file()
    manifest["generator_version"] = "0"
    manifest_file(root, "val").write_text(json.dumps(manifest))
    ensure_shapes(root, split="val", n=8)
    assert json.loads(manifest_file(root, "val").read_text())["generator_version"] == GENERATOR_VERSION
    with pytest.raises(ValueError, match="seed=0"):
        ensure_shapes(root, split="val", seed=5, n=8)
    # Default root comes from mlcl.paths (MLCL_HOME).
    monkeypatch.setenv("MLCL_HOME", str(tmp_path / "home"))
    got = ensure_shapes(split="val", seed=3, n=4, workers=1)
    assert got == tmp_path / "home" / "data" / "shapes-seed3-64px"
    assert len(ShapesDataset(got, "val")) == 4


# --------------------------------------------------------------- baselines
def test_each_target_satisfies_its_text_only_constraints(small_root):
    # Otherwise the text-only baseline would be unfairly low.
    ds = ShapesDataset(small_root, "test")
    targets = [Scene.from_json(t["target_scene"]) for t in ds.triplets]
    arrays = _GalleryArrays(targets)
    for i, t in enumerate(ds.triplets):
        assert arrays.text_consistent(parse_caption(t["caption"])[0])[i], t["caption"]


def test_single_input_baselines_are_far_from_perfect(default_test_root):
    ds = ShapesDataset(default_test_root, "test")
    assert len(ds) == 2000 and len(ds.gallery) >= 6000
    res = oracle_baselines(ds, limit=1000)  # half the queries, the whole gallery: same picture, half the time
    assert res["image_and_text"] == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0, "R@50": 100.0}
    assert res["text_only"]["R@10"] < 15 and res["text_only"]["R@50"] < 40
    assert res["image_only"]["R@1"] < 25 and res["image_only"]["R@10"] < 85
    # ...yet they are not broken: each uses its input.
    assert res["image_only"]["R@50"] > 60 and res["text_only"]["R@50"] > 5
