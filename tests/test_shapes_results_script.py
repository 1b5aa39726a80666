"""scripts/shapes_results.py: run order, training seeds, resumable results, mean ± SD, the val curves as data."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "shapes_results.py"


@pytest.fixture
def sr(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("shapes_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "OUT", tmp_path / "out")
    return module


def test_plan_trains_the_default_model_first_and_seeds_vary_run_and_data(sr):
    args = argparse.Namespace(stage1=True, extra=True, seeds=3, stage1_seeds=2, only=None, train_options=["x=1"])
    runs = sr.plan(args)
    names = [r[0] for r in runs]
    assert names[:2] == ["stage1", "stage2_mlcl"]
    assert names.index("stage2_mlcl_no_mid_seed2") < names.index("stage2_mlcl_k1")  # methods' seeds first
    assert names[-1] == "stage1_seed1" and len(names) == 1 + 3 * (4 + 4) + 1
    by_name = {r[0]: r for r in runs}
    assert by_name["stage2_mlcl"][2] == ["x=1"] and by_name["stage2_mlcl"][3] == sr.OUT / "stage1" / "model.pt"
    assert by_name["stage2_clip4cir_seed1"][2] == ["run.seed=43", "datasets.shapes.procedural.seed=12", "x=1"]
    assert by_name["stage1_seed1"][2] == ["run.seed=43", "datasets.shapes.procedural.seed=11", "x=1"]
    assert by_name["stage2_mlcl_k4_seed2"][2][0] == "run.sscl_cached_views=4"
    only = sr.plan(argparse.Namespace(stage1=True, extra=False, seeds=1, stage1_seeds=1, only=["stage1",
                                      "stage2_mlcl"], train_options=[]))
    assert [r[0] for r in only] == ["stage1", "stage2_mlcl"]  # the one command of the default model


def test_results_accumulate_and_the_table_gives_mean_and_sd(sr, tmp_path):
    results = sr.Results(tmp_path / "results.json")
    for i, r1 in enumerate((96.0, 97.0, 98.0)):
        for seed, split in sr.EVAL_SPLITS:
            results.update("evals", sr.eval_key(f"stage2_mlcl{'' if i == 0 else f'_seed{i}'}", ["--weighting", "train"],
                                                seed, split),
                           {"row": sr.DEFAULT_ROW, "run": "stage2_mlcl", "seed": seed, "split": split,
                            "metrics": {"R@1": r1, "R@10": 100.0, "breakdown": {}}, "command": "mlcl eval ...",
                            "date": "2026-12-04T12:00", "load1": 1.0, "seconds": 1.0})
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["evals"]) == 3 * len(sr.EVAL_SPLITS)  # each saved as it came: a stopped run keeps them
    table = sr.table(data, sr.DEV_SEED, sr.ROWS)
    assert f"| {sr.DEFAULT_ROW} | 3 | 97.00 ± 1.00 | 100.00 ± 0.00 |" in table
    assert "CLIP4Cir" not in table  # rows without results are left out
    assert sr.mean_sd([]) == "-" and sr.mean_sd([95.5]) == "95.50"


def test_the_val_curves_are_written_as_data_beside_the_plot(sr, tmp_path):
    def log(path: Path, points: list[tuple[int, int, float]]) -> None:
        path.mkdir(parents=True)
        lines = ["{", '  "run": {}', "}"]
        for epoch, step, r1 in points:
            lines.append(json.dumps({"train_epoch": epoch, "train_global_step": step}))
            lines.append(json.dumps({"val_epoch": epoch, "val_R@1": r1}))
        (path / "log.txt").write_text("\n".join(lines) + "\n")

    log(sr.OUT / "stage1", [(0, 250, 60.0), (1, 500, 80.0)])
    log(sr.OUT / "stage2_mlcl", [(1, 374, 85.0)])
    png = sr.plot(tmp_path / "curve.png")
    data = json.loads(png.with_suffix(".json").read_text())
    assert png.stat().st_size > 1000 and "--plot-only" in data["command"]
    assert data["series"]["sum fusion (stage 1)"] == [[250, 60.0], [500, 80.0]]
    assert data["series"]["MLCL (stage 2)"] == [[500, 80.0], [874, 85.0]]  # stage 2 continues from stage 1
