"""`mlcl data shapes`: the command-line entry to the shapes generator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlcl_cli import main
from mlcl.data.shapes import ShapesDataset

REPO = Path(__file__).resolve().parents[1]


def test_cli_generates_requested_splits(tmp_path, capsys):
    out = tmp_path / "s"
    rc = main(["data", "shapes", "--out", str(out), "--seed", "3", "--splits", "val,test", "--n-val", "8",
               "--n-test", "12", "--workers", "1", "--baselines", "-q"])
    assert rc == 0
    assert not (out / "images" / "train").exists() and not (out / "images" / "novel").exists()
    assert len(ShapesDataset(out, "val")) == 8 and len(ShapesDataset(out, "test")) == 12
    assert json.loads((out / "manifest.shapes.test.json").read_text())["seed"] == 3
    printed = capsys.readouterr().out
    assert "test :     12 triplets" in printed and "image_only" in printed and "text_only" in printed


def test_cli_default_root_follows_mlcl_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCL_HOME", str(tmp_path))
    assert main(["data", "shapes", "--splits", "novel", "--n-novel", "4", "--size", "48", "-q"]) == 0
    ds = ShapesDataset(tmp_path / "data" / "shapes-seed0-48px", "novel")
    assert len(ds) == 4 and ds.load_image(ds[0]["target"]).size == (48, 48)


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["data", "shapes", "--out", str(tmp_path), "--splits", "dev"])
    assert "unknown split" in capsys.readouterr().err
    assert main(["data", "shapes", "--out", str(tmp_path), "--splits", "val", "--size", "8", "-q"]) == 2
    assert "too small" in capsys.readouterr().err
    assert main(["data", "shapes", "--out", str(tmp_path), "--n-test", "0", "-q"]) == 2
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_cli_module_imports_stay_light():
    # `mlcl --help` imports every command module: this one must not pull in Pillow/numpy.
    code = "import sys, mlcl_cli.commands.data; print(sorted({'PIL', 'numpy'} & set(sys.modules)))"
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"
