"""training/: registry entries, shipped configs, augmentation policies, schedules (no training runs)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("lavis")

import training  # noqa: E402  (registers into LAVIS's registry)
from lavis.common.registry import registry  # noqa: E402
from training.api import load_config, resolve_config_path  # noqa: E402
from training.datasets.augment import build_augment, load_policies, translate  # noqa: E402

CONFIGS = sorted(p for p in training.CONFIG_ROOT.glob("*/*.yaml")
                 if p.parent.name in ("shapes", "fashioniq", "cirr", "shoes"))


def test_registry_entries():
    assert registry.get_model_class("mlcl").__name__ == "MLCLLavis"
    assert registry.get_task_class("composed_retrieval").__name__ == "ComposedRetrievalTask"
    for name in ("fashioniq", "cirr", "shoes", "shapes"):
        assert registry.get_builder_class(name) is not None, name
    assert registry.get_runner_class("runner_mlcl").__name__ == "MLCLRunner"
    for name in ("cosine_step_lr", "constant_lr", "cosine_warm_restarts_lr", "linear_warmup_cosine_lr"):
        assert registry.get_lr_scheduler_class(name) is not None, name


def test_reimport_registers_idempotently():
    import importlib

    import training.models.mlcl_lavis as m

    importlib.reload(m)  # the same class again: no "already registered" error
    assert registry.get_model_class("mlcl").__module__ == m.__name__


def test_every_stage_has_configs():
    names = {(p.parent.name, p.stem) for p in CONFIGS}
    for ds in ("shapes", "fashioniq", "cirr", "shoes"):
        assert (ds, "stage1") in names
        assert any(d == ds and s.startswith("stage2") for d, s in names), ds
    for method in ("mlcl", "clip4cir", "mlcl_no_sscl", "mlcl_no_mid"):
        assert ("shapes", f"stage2_{method}") in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_config_loads(path: Path):
    cfg = load_config(path)
    model, run = cfg.model_cfg, cfg.run_cfg
    assert model.arch == "mlcl" and run.task == "composed_retrieval" and run.runner == "runner_mlcl"
    stage = 1 if path.stem == "stage1" else 2
    assert (model.method == "sum") == (stage == 1)
    if stage == 2:
        assert model.init_from and "stage1" in model.init_from
        assert run.cache_features
    (name,) = list(cfg.datasets_cfg)
    assert name == path.parent.name
    policy = cfg.datasets_cfg[name].augment
    assert policy == {"shapes": "shapes", "fashioniq": "fashion", "shoes": "fashion", "cirr": "natural"}[name]
    if name != "shapes":  # the authors' hyper-parameters
        assert model.backbone == "RN50x4" and model.target_pad_ratio == 1.25
        if stage == 1:
            assert run.optimizer == "adamw" and run.init_lr == pytest.approx(2e-6) and run.eps == pytest.approx(1e-7)
            assert run.max_epoch == 100 and run.batch_size_train in (64, 128)
        else:
            assert run.optimizer == "adam" and run.init_lr == pytest.approx(2e-5) and run.w_lr == pytest.approx(1e-3)
            assert run.batch_size_train == 2048 and run.max_epoch == 1000 and run.amp
            if name == "shoes":
                assert run.lr_sched == "cosine_warm_restarts_lr" and run.t0_epochs == 10
                assert run.min_lr == pytest.approx(1e-6)


def test_options_override_and_model_type_switches_backbone():
    cfg = load_config("shapes/stage1", ["model.model_type=micro", "run.max_epoch=1", "run.batch_size_train=16"])
    assert cfg.model_cfg.backbone == "mlcl-micro"  # LAVIS alone would keep the tiny file's backbone
    assert cfg.run_cfg.max_epoch == 1 and cfg.run_cfg.batch_size_train == 16
    assert resolve_config_path("shapes/stage1") == resolve_config_path("shapes/stage1.yaml")
    with pytest.raises(FileNotFoundError):
        resolve_config_path("shapes/nope")
    with pytest.raises(ValueError):
        load_config("shapes/stage1", ["run.max_epoch"])


@pytest.mark.parametrize("option, meant", [
    ("max_steps=3", "run.max_steps"),  # a new user's first try: the section is missing
    ("run.max_stepz=3", "run.max_steps"),
    ("model.normalise_features=true", "model.normalize_features"),
    ("datasets.shapes.procedural.group=8", "datasets.shapes.procedural.groups"),
])
def test_unknown_option_key_is_refused_naming_the_closest(option, meant):
    with pytest.raises(ValueError, match=f"unknown option key '{option.split('=')[0]}' \\(did you mean '{meant}'"):
        load_config("shapes/stage1", ["run.max_epoch=1", option])


def test_keys_of_the_config_and_the_schema_are_accepted():
    cfg = load_config("shapes/stage1", [
        "run.max_steps=3", "run.overwrite=true", "run.resume_ckpt_path=auto", "run.grad_clip=1.0",
        "datasets.shapes.root=/tmp/x", "datasets.shapes.sizes.test=5", "datasets.shapes.procedural.groups=8",
        "model.model_type=micro", "model.load_from=null"])
    assert cfg.run_cfg.max_steps == 3 and cfg.datasets_cfg.shapes.procedural.groups == 8
    # a null section in the defaults still takes the schema's sub-keys
    load_config("shapes/stage2_mlcl", ["datasets.shapes.procedural=null", "run.sscl_redraw_every=1"])


def test_every_run_setting_the_code_reads_is_known():
    """The schema lists every run.* key the training code reads with a default (else --options would refuse it)."""
    import re

    from omegaconf import OmegaConf

    from training.options import config_paths, schema_paths

    known, _ = schema_paths(["shapes"])
    for path in CONFIGS:
        known |= config_paths(OmegaConf.to_container(OmegaConf.load(path)))
    code = "\n".join(p.read_text() for p in Path(training.__file__).parent.rglob("*.py"))
    read = set(re.findall(r"\brun(?:_cfg)?\.get\(\s*\"([a-z0-9_]+)\"", code))
    assert {"t0_epochs", "beta2", "sscl_redraw_every"} <= read
    assert read and {f"run.{k}" for k in read} <= known


def test_mlcl_train_refuses_an_unknown_key_before_any_work(tmp_path, capsys):
    from mlcl_cli import main

    out = tmp_path / "run"
    assert main(["train", "--config", "shapes/stage1", "--output", str(out), "--options", "max_steps=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown option key 'max_steps' (did you mean 'run.max_steps'?)" in err and "\n" not in err
    assert not out.exists()


# ---------------------------------------------------------------- augmentation
def test_named_policies_build():
    for name in load_policies():
        aug = build_augment(name, 64)
        assert aug.name == name
    with pytest.raises(KeyError):
        build_augment("nope", 64)
    with pytest.raises(KeyError):
        build_augment({"ops": [{"op": "solarize"}]}, 64)


def _scene(size: int = 64) -> torch.Tensor:
    """A white canvas with a red square on the left: [1,3,S,S] in [0,1]."""
    x = torch.ones(1, 3, size, size)
    x[0, :, 24:40, 4:20] = torch.tensor([244, 35, 35]).view(3, 1, 1) / 255
    return x


def test_shapes_policy_keeps_colour_and_position():
    aug = build_augment("shapes", 64)
    assert not aug.pil_ops  # batched tensor ops only
    x = _scene().repeat(64, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    y = aug.tensor(x, generator=g)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    red = torch.tensor([244, 35, 35]).view(1, 3) / 255
    for img in y:
        # Centroid of the reddish pixels stays left (no flips), colour stays red (no hue/greyscale).
        mask = (img[0] > 0.7) & (img[1] < 0.4) & (img[2] < 0.4)
        assert mask.sum() > 150
        cols = mask.nonzero()[:, 1].float()
        assert abs(cols.mean().item() - 11.5) <= 2.5
        colour = img[:, mask].mean(dim=1).view(1, 3)
        assert torch.allclose(colour, red, atol=0.08)


def test_translate_is_bounded_and_fills_white():
    x = torch.zeros(32, 3, 64, 64)
    y = translate(x, 0.03, fill=1.0, generator=torch.Generator().manual_seed(1))
    m = 2  # round(0.03 * 64)
    inner = y[:, :, m:-m, m:-m]
    assert torch.all(inner == 0)  # a shift of at most m pixels
    assert (y == 1).any()  # white entered at some border


def test_fashion_policy_is_the_authors_kind():
    ops = [op["op"] for op in load_policies()["fashion"]["ops"]]
    for op in ("random_resized_crop", "color_jitter", "hflip", "rotate90", "autocontrast", "perspective", "grayscale"):
        assert op in ops
    shapes_ops = {op["op"] for op in load_policies()["shapes"]["ops"]}
    assert not shapes_ops & {"hflip", "vflip", "rotate90", "color_jitter", "grayscale", "random_resized_crop"}
    from PIL import Image

    img = Image.new("RGB", (64, 64), (200, 30, 30))
    out = build_augment("fashion", 64).pil(img)
    assert out.size == (64, 64)


# ------------------------------------------------------------------ schedules
def _optimizer():
    a, w = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(()))
    return torch.optim.Adam([{"params": [a], "lr": 2e-5}, {"params": [w], "lr": 1e-3}])


def test_schedules_and_group_scaling():
    from training.runners.schedulers import ConstantLR, CosineStepLR, CosineWarmRestartsLR, GroupScaled

    opt = _optimizer()
    sched = GroupScaled(CosineStepLR(opt, max_epoch=2, min_lr=0.0, init_lr=2e-5, warmup_steps=2, iters_per_epoch=5),
                        opt, 2e-5)
    sched.step(0, 0)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5)  # half-way through warm-up
    assert opt.param_groups[1]["lr"] == pytest.approx(5e-4)  # w keeps its own lr ratio
    sched.step(1, 4)
    assert opt.param_groups[0]["lr"] < 1e-6
    c = ConstantLR(opt, max_epoch=3, min_lr=0, init_lr=1.0)
    assert c.lr_at(2, 3) == 1.0
    r = CosineWarmRestartsLR(opt, max_epoch=30, min_lr=1e-6, init_lr=2e-5, t0_epochs=10)
    assert r.lr_at(0, 0) == pytest.approx(2e-5) and r.lr_at(10, 0) == pytest.approx(2e-5)
    assert r.lr_at(5, 0) == pytest.approx(1e-6 + (2e-5 - 1e-6) * 0.5 * (1 + math.cos(math.pi / 2)))


def test_every_group_anneals_to_min_lr_as_torch_warm_restarts():
    # Defect 6: on Shoes w's lr bottomed out at w_lr * min_lr / init_lr = 5e-5, not at min_lr.
    from training.runners.schedulers import CosineWarmRestartsLR, GroupScaled

    opt = _optimizer()  # groups: lr 2e-5 and w at 1e-3
    sched = GroupScaled(CosineWarmRestartsLR(opt, max_epoch=30, min_lr=1e-6, init_lr=2e-5, t0_epochs=10,
                                             iters_per_epoch=1), opt, 2e-5)
    ref = torch.optim.Adam([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 2e-5},
                            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-3}], lr=2e-5)
    torch_sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(ref, T_0=10, eta_min=1e-6)
    for epoch in range(25):
        sched.step(epoch, 0)
        got = [g["lr"] for g in opt.param_groups]
        want = [g["lr"] for g in ref.param_groups]
        assert got == pytest.approx(want, rel=1e-6), epoch
        torch_sched.step()


def test_summaries_carry_no_binary_float_noise():
    from training.common import to_plain

    # 100 * 1997 / 2000 is 99.85000000000001 in binary floating point: summary.json and `mlcl info` show 99.85
    assert to_plain({"R@10": 100 * 1997 / 2000, "lr": [5e-07, 1e-3], "w": 0.1 + 0.25}) == {
        "R@10": 99.85, "lr": [5e-07, 0.001], "w": 0.35}
