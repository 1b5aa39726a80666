"""Training runs on LAVIS with mlcl-micro on a tiny generated shapes set (CPU).

Covers: a two-step stage-1 run that lowers the loss and writes an mlcl
checkpoint, resume (epoch boundary and mid-epoch, bit-identical to an
uninterrupted run), stage 2 from a stage-1 checkpoint with the feature cache
(frozen backbone, cache reuse, cache == re-encoding), the CPU runner's fixes,
and the `mlcl train` command.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("lavis")

from training.api import build, load_config, train  # noqa: E402

N_TRAIN, N_VAL = 64, 12


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from mlcl.data.shapes import generate_shapes

    base = tmp_path_factory.mktemp("training")
    root = generate_shapes(base / "shapes", sizes={"train": N_TRAIN, "val": N_VAL}, splits=["train", "val"],
                           progress=False, workers=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLCL_HOME", str(base / "home"))
        yield {"base": base, "root": root}


def opts(env, out: str, *extra: str, stage: int = 1) -> list[str]:
    common = [
        "model.model_type=micro",
        f"datasets.shapes.root={env['root']}",
        "datasets.shapes.procedural=null",  # the generated split (the shipped configs draw procedurally)
        f"run.output_dir={env['base'] / out}",
        "run.progress=false",
        "run.num_workers=0",
        "run.batch_size_eval=64",
        f"run.feature_cache_dir={env['base'] / 'features'}",
    ]
    return common + list(extra)


def run_stage1(env, out: str, *extra: str) -> dict:
    # Batch = the whole train split: each step sees the same 64 triplets, so losses compare.
    return train("shapes/stage1", opts(env, out, "run.batch_size_train=64", "run.init_lr=2e-3",
                                       "run.warmup_steps=0", "run.evaluate=false", *extra))


@pytest.fixture(scope="module")
def stage1(env):
    return run_stage1(env, "s1", "run.max_epoch=2", "run.evaluate=true")


def _log(out: Path) -> list[dict]:
    lines = (out / "log.txt").read_text().splitlines()
    return [json.loads(l) for l in lines if l.startswith('{"')]


def test_two_step_stage1_lowers_loss_and_writes_an_mlcl_checkpoint(env, stage1):
    from mlcl.model import load_checkpoint, read_checkpoint

    out = Path(stage1["output_dir"])
    train_logs = [r for r in _log(out) if "train_loss" in r]
    assert [r["train_epoch"] for r in train_logs] == [0, 1]
    assert train_logs[1]["train_loss"] < train_logs[0]["train_loss"]
    assert stage1["steps"] == 2 and stage1["stage"] == 1 and stage1["method"] == "sum"

    payload = read_checkpoint(stage1["checkpoint"])
    extra = payload["extra"]
    assert extra["steps"] == 2 and extra["wall_time_s"] > 0
    assert extra["config"]["model"]["backbone"] == "mlcl-micro"
    assert set(extra["metrics"]) >= {"R@1", "R@10", "headline"}  # validation ran (mlcl.eval)
    assert any("val_agg_metrics" in r for r in _log(out))
    model = load_checkpoint(stage1["checkpoint"])  # what the executor does
    assert model.method.name == "sum" and model.stage == 1
    for name in ("checkpoint_1.pth", "checkpoint_best.pth", "log.txt", "train.log", "summary.json"):
        assert (out / name).is_file(), name


def _weights(path: str) -> dict[str, torch.Tensor]:
    from mlcl.model import read_checkpoint

    return read_checkpoint(path)["state_dict"]


def _assert_same_weights(a: str, b: str) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k


def _interrupt_at(monkeypatch, call: int) -> None:
    """Ctrl-C during the `call`-th training step of this process (from now on)."""
    from training.tasks.composed_retrieval import ComposedRetrievalTask

    original = ComposedRetrievalTask.train_step
    calls = {"n": 0}

    def step(self, model, samples):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return original(self, model, samples)

    monkeypatch.setattr(ComposedRetrievalTask, "train_step", step)


def test_resume_at_epoch_boundary_matches_an_uninterrupted_run(env, stage1, monkeypatch):
    _interrupt_at(monkeypatch, 2)  # first step of epoch 1
    with pytest.raises(KeyboardInterrupt):
        run_stage1(env, "s1_resume", "run.max_epoch=2", "run.evaluate=true")
    monkeypatch.undo()
    out = env["base"] / "s1_resume"
    assert not (out / "model.pt").exists()
    resumed = run_stage1(env, "s1_resume", "run.max_epoch=2", "run.resume_ckpt_path=auto", "run.evaluate=true")
    assert resumed["steps"] == 2
    _assert_same_weights(resumed["checkpoint"], stage1["checkpoint"])


def test_resume_mid_epoch_matches_an_uninterrupted_run(env, monkeypatch):
    # batch 16: 4 steps per epoch; Ctrl-C during step 3, resume for steps 3 and 4.
    whole = run_stage1(env, "mid_whole", "run.max_epoch=1", "run.batch_size_train=16")
    _interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run_stage1(env, "mid_part", "run.max_epoch=1", "run.batch_size_train=16")
    monkeypatch.undo()
    ckpt = torch.load(env["base"] / "mid_part" / "checkpoint_0.pth", weights_only=False)
    assert ckpt["epoch_complete"] is False and ckpt["next_step"] == 2 and ckpt["global_step"] == 2
    rest = run_stage1(env, "mid_part", "run.max_epoch=1", "run.batch_size_train=16", "run.resume_ckpt_path=auto")
    assert rest["steps"] == 4
    _assert_same_weights(rest["checkpoint"], whole["checkpoint"])


def test_step_budget_stops_and_resume_continues(env):
    part = run_stage1(env, "budget", "run.max_epoch=2", "run.batch_size_train=16", "run.max_steps=3")
    assert part["steps"] == 3 and "max_steps" in part["stopped_by"]
    assert Path(part["checkpoint"]).is_file()  # a capped run still exports its model
    rest = run_stage1(env, "budget", "run.max_epoch=2", "run.batch_size_train=16", "run.max_steps=5",
                      "run.resume_ckpt_path=auto")
    assert rest["steps"] == 5


def test_evaluate_only_reproduces_the_recorded_metrics(env, stage1):
    res = train("shapes/stage1", opts(env, "evalonly", f"model.load_from={stage1['checkpoint']}",
                                      "run.evaluate_only=true"))
    val = res["metrics"]["val"]
    assert val["agg_metrics"] == pytest.approx(stage1["metrics"]["headline"])
    assert val["R@10"] == pytest.approx(stage1["metrics"]["R@10"])


def test_output_dir_with_a_run_needs_resume_or_overwrite(env, stage1):
    with pytest.raises(FileExistsError):
        run_stage1(env, "s1", "run.max_epoch=1")


def test_stage2_from_stage1_with_feature_cache(env, stage1):
    from mlcl.model import read_checkpoint

    s2 = train("shapes/stage2_mlcl", opts(env, "s2", f"model.init_from={stage1['checkpoint']}", "run.max_epoch=2",
                                           "run.batch_size_train=32", "run.evaluate_every=1", "run.sscl_cached_views=2"))
    assert s2["stage"] == 2 and s2["method"] == "mlcl" and s2["steps"] == 4
    cache = s2["feature_cache"]
    assert cache["views"] == 2 and cache["loaded"] is False and Path(cache["path"]).is_file()
    assert s2["init_from"]["path"] == stage1["checkpoint"]

    w1, w2 = _weights(stage1["checkpoint"]), _weights(s2["checkpoint"])
    backbone = [k for k in w1 if k.startswith("backbone.")]
    assert backbone and all(torch.equal(w1[k], w2[k]) for k in backbone)  # copied, then frozen
    payload = read_checkpoint(s2["checkpoint"])
    assert payload["config"]["method"]["name"] == "mlcl" and payload["stage"] == 2
    assert payload["extra"]["augment"]["name"] == "shapes"

    # Another stage-2 run on the same backbone reuses the cache; a method without SSCL needs no views.
    again = train("shapes/stage2_mlcl", opts(env, "s2b", f"model.init_from={stage1['checkpoint']}",
                                              "run.max_epoch=1", "run.batch_size_train=32", "run.evaluate=false",
                                              "run.sscl_cached_views=2"))
    assert again["feature_cache"]["loaded"] is True and again["feature_cache"]["path"] == cache["path"]
    c4c = train("shapes/stage2_clip4cir", opts(env, "s2c", f"model.init_from={stage1['checkpoint']}",
                                                "run.max_epoch=1", "run.batch_size_train=32", "run.evaluate=false"))
    assert c4c["method"] == "clip4cir" and c4c["feature_cache"]["views"] == 0


def test_stage2_without_cache_reencodes(env, stage1):
    s2 = train("shapes/stage2_mlcl", opts(env, "s2_nocache", f"model.init_from={stage1['checkpoint']}",
                                           "run.max_epoch=1", "run.batch_size_train=32", "run.evaluate=false",
                                           "run.cache_features=false"))
    assert s2["steps"] == 2 and s2["feature_cache"] is None


def test_cached_features_equal_reencoding_and_eval_preprocessing(env, stage1):
    """The preloaded training pixels are the eval transform's, and cached features are the backbone's."""
    from training.features import build_feature_cache

    cfg = load_config("shapes/stage2_mlcl_no_sscl", opts(env, "probe", f"model.init_from={stage1['checkpoint']}"))
    runner = build(cfg)
    mlcl = runner.mlcl.eval()
    ds = runner.train_dataset
    batch = ds.get_batch([0, 5, 9])
    src = ds.source
    for j, i in enumerate([0, 5, 9]):
        ref = mlcl.preprocess(src.load_image(ds.triplets[i]["reference"]))
        assert torch.allclose(batch["ref"][j], ref, atol=1e-5)
    cache = build_feature_cache(mlcl, ds, views=0, batch_size=32, cache_dir=False, progress=False)
    with torch.no_grad():
        f_ref = mlcl.image_features(batch["ref"])
        f_txt = mlcl.text_features(batch["text"])
    cached = cache.batch(torch.tensor([0, 5, 9]))
    assert torch.allclose(cached["f_ref"], f_ref, atol=1e-5)
    assert torch.allclose(cached["f_txt"], f_txt, atol=1e-5)
    # Same loss from cached features as from images (eval mode: no dropout).
    with torch.no_grad():
        a = mlcl.loss_from_features(cached["f_ref"], cached["f_txt"], cached["f_tgt"])["loss"]
        b = mlcl(batch["ref"], batch["text"], batch["tgt"])["loss"]
    assert torch.allclose(a, b, atol=1e-4)


def test_sscl_redraw_replaces_the_cached_views_with_the_documented_draw(env, stage1):
    """run.sscl_redraw_every: the K cached views change at the re-draw epoch, to exactly the views that
    redraw_sscl_views gives with the documented seed (run.seed * 1000 + epoch); other epochs keep them."""
    from training.features import redraw_sscl_views

    cfg = load_config("shapes/stage2_mlcl", opts(env, "redraw", f"model.init_from={stage1['checkpoint']}",
                                                 "run.batch_size_train=32", "run.sscl_cached_views=2",
                                                 "run.sscl_redraw_every=2", "run.seed=7"))
    runner = build(cfg)
    cache = runner.train_loader.cache
    before = cache.f_aug.clone()
    runner._maybe_redraw_views(1)  # not a re-draw epoch
    assert torch.equal(cache.f_aug, before)
    runner._maybe_redraw_views(2)
    after = cache.f_aug.clone()
    assert after.shape == before.shape and not torch.allclose(after, before)
    # The same draw, made independently: a copy of the cache re-drawn with seed 7 * 1000 + 2.
    cache.f_aug = before.clone()
    redraw_sscl_views(cache, runner.mlcl, runner.train_dataset, 7 * 1000 + 2, batch_size=64)
    assert torch.allclose(cache.f_aug, after, atol=1e-6)
    # Another seed draws other views (the seed is what makes the re-draw reproducible).
    cache.f_aug = before.clone()
    redraw_sscl_views(cache, runner.mlcl, runner.train_dataset, 7 * 1000 + 3, batch_size=64)
    assert not torch.allclose(cache.f_aug, after)


def test_cpu_runner_fixes(env, stage1):
    import torch.distributed as dist

    cfg = load_config("shapes/stage1", opts(env, "cpu_probe", "run.batch_size_train=16", "run.device=cpu"))
    runner = build(cfg)
    assert runner.model is not None and runner.model.device.type == "cpu"  # LAVIS's returns None here
    loader = runner.dataloaders["train"]
    assert type(loader).__name__ == "TripletLoader"  # no PrefetchLoader (CUDA stream)
    assert runner.lr_scheduler is not None  # schedulers registered without importing lavis.common.optims
    assert Path(runner.output_dir) == env["base"] / "cpu_probe"  # not under LAVIS's install folder
    batch = next(iter(loader.epoch(0)))
    assert batch["ref"].shape == (16, 3, 32, 32) and len(batch["text"]) == 16
    assert not dist.is_initialized()


def test_cli_train(env, stage1, capsys):
    from mlcl_cli import main

    out = env["base"] / "cli"
    argv = ["train", "--config", "shapes/stage1", "--output", str(out), "--max-epochs", "1", "--no-progress",
            "--data-root", str(env["root"]), "--options", "model.model_type=micro", "run.batch_size_train=32",
            "run.evaluate=false", "datasets.shapes.procedural=null"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and Path(summary["checkpoint"]).is_file()
    assert main(argv) == 2  # refuses to overwrite the finished run
    assert "--resume auto" in capsys.readouterr().err
    assert main(argv + ["--resume", "auto", "--max-epochs", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 4
    assert json.loads((out / "summary.json").read_text())["steps"] == 4


def test_procedural_stage1_and_stage2_with_hard_negatives(env):
    """The shipped shapes recipe's data path: whole groups, fresh each epoch, hard negatives in the loss."""
    proc = ["datasets.shapes.procedural.groups=8", "datasets.shapes.procedural.queries_per_group=4",
            "datasets.shapes.procedural.target_siblings=1"]
    s1 = train("shapes/stage1", [
        "model.model_type=micro", f"datasets.shapes.root={env['root']}", f"run.output_dir={env['base'] / 'p1'}",
        "run.progress=false", "run.num_workers=0", "run.batch_size_eval=64", "run.batch_size_train=16",
        "run.max_epoch=2", "run.evaluate=false", "run.warmup_steps=0", *proc])
    assert s1["steps"] == 4  # 8 groups of 4 = 2 batches of 16 per epoch, 2 epochs
    s2 = train("shapes/stage2_mlcl", [
        "model.model_type=micro", f"datasets.shapes.root={env['root']}", f"run.output_dir={env['base'] / 'p2'}",
        "run.progress=false", "run.num_workers=0", "run.batch_size_eval=64", "run.batch_size_train=16",
        f"run.feature_cache_dir={env['base'] / 'features'}", f"model.init_from={s1['checkpoint']}",
        "run.max_epoch=2", "run.evaluate=false", "run.sscl_cached_views=1", "run.sscl_redraw_every=1", *proc])
    assert s2["steps"] == 4 and s2["feature_cache"]["views"] == 1


def test_procedural_batches_are_whole_groups_fresh_each_epoch():
    from training.common import ImageSpec
    from training.datasets.base import TripletLoader
    from training.datasets.procedural import ProceduralShapesTriplets

    spec = ImageSpec(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 1.25)
    ds = ProceduralShapesTriplets("train", spec, "shapes", {"procedural": {"groups": 4, "queries_per_group": 4,
                                                                          "target_siblings": 2, "seed": 3}})
    loader = TripletLoader(ds, 8, seed=0)
    assert len(loader) == 2
    b0 = next(iter(loader.epoch(0)))
    assert b0["ref"].shape == (2, 3, 64, 64) and b0["tgt"].shape == (8, 3, 64, 64) and b0["neg"].shape[0] == 16
    assert b0["ref_index"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and len(b0["text"]) == 8
    texts0 = {t for b in loader.epoch(0) for t in b["text"]}
    texts1 = {t for b in loader.epoch(1) for t in b["text"]}
    assert texts0 != texts1  # epoch 1 draws new groups
    again = {t for b in TripletLoader(ds, 8, seed=0).epoch(0) for t in b["text"]}
    assert again == texts0  # deterministic from the seed
    with pytest.raises(ValueError, match="multiple"):
        TripletLoader(ds, 6)
