"""Training never draws an evaluation scene: the shipped recipe's streams and the eval splits share nothing.

The splits are kept apart only by seed and the scene space is small (432
one-object scenes), so before the exclusion 18.4 % of test queries had their
(reference, target) pair in training.  These tests regenerate the training
streams of the shipped configs (scene keys only, no pixels) against every
evaluation split of the exclusion seeds.  The full streams (70,000 groups)
take about half a minute: that test is marked slow (CI runs it too); the
quick one checks the first groups of each stream.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcl.data.shapes import ShapesDataset, ensure_shapes, generate_shapes
from mlcl.data.shapes.config import EVAL_SPLITS, load_config
from mlcl.data.shapes.exclusion import TrainingShare, gallery_scenes, reserved_for_training, training_exclusion
from mlcl.data.shapes.overlap import StreamSpec, overlap_report, streams_from_configs
from mlcl.data.shapes.procedural import training_group
from mlcl.data.shapes.scene import Scene

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "training" / "configs" / "shapes").glob("*.yaml"))


def eval_splits() -> dict[str, tuple[int, str]]:
    return {f"{split}@{seed}": (seed, split) for seed in load_config().training_exclusion_seeds
            for split in EVAL_SPLITS}


def assert_disjoint(report: dict) -> None:
    for name, r in report["splits"].items():
        assert r["shared_scenes"] == 0 and r["pair_in_training"] == 0.0, (name, r)
        assert r["reference_in_training"] == r["target_in_training"] == r["gallery_images_in_training"] == 0.0


def test_the_shipped_streams_are_read_from_the_configs():
    streams = {s.seed: s for s in streams_from_configs(CONFIGS)}
    assert streams[1].groups == 8000 * 8 and streams[1].name == "stage1"  # 8 epochs of new groups
    assert streams[2].groups == 6000 and "stage2_mlcl" in streams[2].name  # the cached pool


def test_first_groups_of_the_shipped_streams_share_nothing_with_the_eval_splits():
    streams = [StreamSpec(**{**s.__dict__, "groups": min(s.groups, 1500)}) for s in streams_from_configs(CONFIGS)]
    assert_disjoint(overlap_report(eval_splits(), streams))
    # The same groups drawn without the exclusion do share scenes: the check above can fail.
    before = overlap_report({"test": (0, "test")}, [StreamSpec(**{**s.__dict__, "exclude": False}) for s in streams])
    assert before["splits"]["test"]["shared_scenes"] > 100 and before["splits"]["test"]["pair_in_training"] > 1.0


@pytest.mark.slow
def test_the_whole_shipped_training_stream_shares_no_scene_or_pair_with_the_eval_splits():
    report = overlap_report(eval_splits(), streams_from_configs(CONFIGS))
    assert report["training"]["triplets"] == (64000 + 6000) * 4
    assert_disjoint(report)


def test_exclusion_holds_every_image_of_the_generated_eval_splits(tmp_path):
    """The exclusion is computed without files; it must cover what the files hold."""
    excluded = training_exclusion()
    for split in ("test", "hard"):
        ds = ShapesDataset(ensure_shapes(tmp_path, split=split, workers=1), split)
        keys = {ds.scene_key(n) for n in ds.gallery}
        assert keys == gallery_scenes(0, split) and keys <= excluded


def test_other_stream_seeds_and_the_train_split_avoid_the_eval_scenes(tmp_path):
    excluded = training_exclusion()
    for seed in (3, 11, 12):  # the results script's other training seeds, and another
        for g in range(300):
            grp = training_group(seed, g)
            scenes = [grp.reference, *grp.targets, *(n for negs in grp.negatives for n in negs)]
            assert not {s.key for s in scenes} & excluded
    root = generate_shapes(tmp_path, sizes={"train": 400}, splits=["train"], workers=1, progress=False)
    train = ShapesDataset(root, "train")
    assert not {train.scene_key(n) for n in train.image_names} & excluded
    # a train split of another seed also avoids its own seed's evaluation splits
    own = training_exclusion((5,))
    assert own > excluded


def test_small_scenes_are_shared_out_and_training_keeps_its_share():
    """One-object scenes: evaluation draws only its share, so training is not left without any."""
    excluded = training_exclusion()
    one = {k for k in excluded if len(Scene.from_key(k)) == 1}
    assert one and not any(reserved_for_training(k) for k in one)
    share = TrainingShare()
    singles = [f"{c}:{z}-{col}-circle" for c in range(9) for z in ("small", "large") for col in ("red", "blue")]
    assert 0 < sum(k in share for k in singles) < len(singles)  # about half of them are training's
    assert "0:large-red-circle|4:small-blue-square" not in share  # larger scenes are not shared out
    drawn = set()
    for g in range(3000):
        grp = training_group(1, g)
        drawn |= {s.key for s in (grp.reference, *grp.targets) if len(s) == 1}
    assert len(drawn) > 100 and all(reserved_for_training(k) for k in drawn)
