"""`mlcl eval` on fixture trees, with the checkpoint loader swapped for the fake model."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import mlcl.model
from mlcl import checkpoint_header
from mlcl_cli import main
from mlcl_cli.commands.eval import config_defaults
from test_eval_fakes import FakeModel, write_cirr_fixture, write_shoes_fixture


@pytest.fixture
def fake_ckpt(tmp_path, monkeypatch):
    """A checkpoint file (.path) whose loading yields a FakeModel (kept in .models)."""
    path = tmp_path / "fake.pt"
    path.write_bytes(b"not a real checkpoint")
    models: list[FakeModel] = []

    def load(p, device="cpu"):
        assert str(p) == str(path) and device == "cpu"
        models.append(FakeModel())
        return models[-1]

    monkeypatch.setattr(mlcl.model, "load_checkpoint", load, raising=False)
    real_check = checkpoint_header.checkpoint_problem
    monkeypatch.setattr(checkpoint_header, "checkpoint_problem", lambda p: None if Path(p) == path else real_check(p))
    return SimpleNamespace(path=path, models=models)


BASE = ["eval", "--device", "cpu", "--num-workers", "0", "--no-progress"]


def test_json_output_is_one_object_of_metrics(tmp_path, fake_ckpt, capsys):
    root = write_cirr_fixture(tmp_path)
    code = main(BASE + ["--checkpoint", str(fake_ckpt.path), "--dataset", "cirr", "--data-root", str(root), "--json",
                        "--weighting", "released", "--batch-size", "2"])
    assert code == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj == {"R@1": 33.3333, "R@5": 66.6667, "R@10": 100.0, "R@50": 100.0, "Rsubset@1": 33.3333,
                   "Rsubset@2": 66.6667, "Rsubset@3": 66.6667, "headline": 50.0}
    assert fake_ckpt.models[0].weighting == "released"


def test_table_output_and_limit(tmp_path, fake_ckpt, capsys):
    root = write_shoes_fixture(tmp_path)
    assert main(BASE + ["--checkpoint", str(fake_ckpt.path), "--dataset", "shoes", "--data-root", str(root),
                        "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "shoes / eval" in out and "2 queries, gallery 12 images" in out
    assert "headline" in out and "mean of R@1, R@10, R@50" in out


def test_submission_written_for_cirr_test1(tmp_path, fake_ckpt, capsys):
    root = write_cirr_fixture(tmp_path)
    sub = tmp_path / "sub"
    assert main(BASE + ["--checkpoint", str(fake_ckpt.path), "--dataset", "cirr", "--split", "test1",
                        "--data-root", str(root), "--submission", str(sub)]) == 0
    assert sorted(p.name for p in sub.iterdir()) == [
        "recall_submission_mlcl_test1.json", "recall_subset_submission_mlcl_test1.json"]
    assert "no metrics" in capsys.readouterr().out


def test_errors_are_reported_not_raised(tmp_path, fake_ckpt, capsys):
    assert main(BASE + ["--checkpoint", str(tmp_path / "none.pt"), "--dataset", "shoes"]) == 2
    assert capsys.readouterr().err == f"mlcl eval: checkpoint {tmp_path / 'none.pt'} does not exist\n"
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(b"not a checkpoint at all")
    assert main(BASE + ["--checkpoint", str(foreign), "--dataset", "shoes"]) == 2
    assert capsys.readouterr().err == f"mlcl eval: checkpoint {foreign} is not a PyTorch checkpoint (not a torch.save archive)\n"
    assert main(BASE + ["--checkpoint", str(fake_ckpt.path), "--config", str(tmp_path / "none.yaml")]) == 2
    assert capsys.readouterr().err.startswith(f"mlcl eval: config '{tmp_path / 'none.yaml'}' not found")
    assert main(BASE + ["--checkpoint", str(fake_ckpt.path), "--dataset", "shoes", "--submission", "x"]) == 2
    assert main(BASE + ["--checkpoint", str(fake_ckpt.path), "--dataset", "cirr", "--data-root", str(tmp_path)]) == 1
    assert "cirr/captions" in capsys.readouterr().err


def test_config_gives_defaults_and_flags_override(tmp_path, fake_ckpt, capsys):
    root = write_shoes_fixture(tmp_path)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "model: {arch: mlcl}\n"
        f"datasets:\n  shoes_cir:\n    build_info: {{storage: {root}}}\n"
        "run: {test_splits: [test], batch_size_eval: 4, num_workers: 0}\n"
    )
    assert config_defaults(cfg) == {"dataset": "shoes", "data_root": root, "split": "test",
                                    "batch_size": 4, "num_workers": 0}
    assert main(BASE + ["--checkpoint", str(fake_ckpt.path), "--config", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["R@50"] == 100.0


def test_shapes_needs_no_other_argument(tmp_path, fake_ckpt, monkeypatch, capsys):
    """`--dataset shapes --split test` generates the split if it is missing."""
    import functools

    import mlcl.data.shapes as shapes
    import mlcl.paths

    home = tmp_path / "home"
    monkeypatch.setenv("MLCL_HOME", str(home))
    monkeypatch.setattr(mlcl.paths, "DEFAULT_CHECKPOINT", fake_ckpt.path)
    # the real generator, asked for a small split to keep the test fast
    monkeypatch.setattr(shapes, "ensure_shapes", functools.partial(shapes.ensure_shapes, n=12))
    assert main(BASE + ["--dataset", "shapes", "--split", "test", "--limit", "4", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert set(obj) == {"R@1", "R@5", "R@10", "R@50", "headline", "breakdown"}
    assert all(0.0 <= v <= 100.0 for k, v in obj.items() if k != "breakdown")
    # error analysis: per modification kind and per object count, each group's queries add up
    assert set(obj["breakdown"]) == {"kind", "objects"}
    assert sum(g["queries"] for g in obj["breakdown"]["kind"].values()) == 4
    assert sum(g["queries"] for g in obj["breakdown"]["objects"].values()) == 4
    assert any(home.rglob("*.png"))  # the split was generated under MLCL_HOME


def test_info_ends_a_missing_or_foreign_file_with_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "none.pt")]) == 2
    assert capsys.readouterr().err == f"mlcl info: checkpoint {tmp_path / 'none.pt'} does not exist\n"
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(b"PK not really a zip")
    assert main(["info", str(foreign)]) == 2
    assert capsys.readouterr().err == f"mlcl info: checkpoint {foreign} is not a PyTorch checkpoint (not a torch.save archive)\n"


def _small_shapes(monkeypatch, tmp_path, fake_ckpt):
    import functools

    import mlcl.data.shapes as shapes
    import mlcl.paths

    monkeypatch.setenv("MLCL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(mlcl.paths, "DEFAULT_CHECKPOINT", fake_ckpt.path)
    monkeypatch.setattr(shapes, "ensure_shapes", functools.partial(shapes.ensure_shapes, n=12))
    return tmp_path / "home"


def test_config_takes_the_short_form_of_mlcl_train(tmp_path, fake_ckpt, monkeypatch, capsys):
    """`mlcl eval --config shapes/stage2_mlcl` finds training/configs/shapes/stage2_mlcl.yaml, as `mlcl train` does."""
    pytest.importorskip("lavis")
    from mlcl_cli.commands.eval import resolve_config

    path = resolve_config("shapes/stage2_mlcl")
    assert path.name == "stage2_mlcl.yaml" and path.parent.name == "shapes"
    assert config_defaults(path) == {"dataset": "shapes", "split": "val", "batch_size": 256, "num_workers": 0}
    _small_shapes(monkeypatch, tmp_path, fake_ckpt)
    assert main(BASE + ["--config", "shapes/stage2_mlcl", "--limit", "4", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) >= {"R@1", "R@10"}
    assert main(BASE + ["--config", "shapes/no_such_config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlcl eval: config 'shapes/no_such_config' not found") and "\n" not in err


def test_seed_picks_the_generated_split_and_only_for_shapes(tmp_path, fake_ckpt, monkeypatch, capsys):
    home = _small_shapes(monkeypatch, tmp_path, fake_ckpt)
    assert main(BASE + ["--split", "hard", "--seed", "5", "--limit", "4", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert {"form", "reference"} <= set(obj["breakdown"])  # the hard split's own error analysis
    manifest = json.loads((home / "data" / "shapes-seed5-64px" / "manifest.shapes.hard.json").read_text())
    assert manifest["seed"] == 5 and manifest["split"] == "hard"
    assert main(BASE + ["--dataset", "cirr", "--data-root", str(tmp_path), "--seed", "5"]) == 2
    assert "--seed is only for --dataset shapes" in capsys.readouterr().err
