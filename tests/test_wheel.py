"""`pip install .` (a wheel, not editable) gives a working `mlcl` from any directory.

Builds the wheel from a clean copy of the source tree, installs it with
`--no-deps` into a fresh virtual environment whose only other packages are the
running environment's (a `.pth` line naming its site-packages: no download, no
second copy of torch), and runs `mlcl demo` there from a temporary directory,
with nothing of the checkout on the path. So the Flows, the encoder's
config.yml and the bundled model must come from the installed package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

from helpers import REPO_ROOT
from mlcl_cli.resources import PACKAGED, PATTERNS, resource_files

ROOT_ONLY = {".git", ".venv", "build", "dist", "outputs", "output", "workspace", "runs", "data"}  # not mlcl/data
ANYWHERE = shutil.ignore_patterns("*.egg-info", "__pycache__", ".pytest_cache", "*.whl")


def ignore(folder: str, names: list) -> set:
    skip = set(ANYWHERE(folder, names))
    return skip | (ROOT_ONLY & set(names)) if Path(folder) == REPO_ROOT else skip


def run(cmd, cwd, env, timeout):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wheel_installs_a_working_mlcl(tmp_path):
    t0 = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JINA_MP_START_METHOD", "PYTHONHOME")}
    env.update(JINA_OPTOUT_TELEMETRY="1", JINA_HIDE_SURVEY="1", PIP_DISABLE_PIP_VERSION_CHECK="1")

    src = tmp_path / "src"
    shutil.copytree(REPO_ROOT, src, ignore=ignore)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
        tmp_path, env, 300)
    wheel = next((tmp_path / "dist").glob("mlcl-*.whl"))
    built = time.monotonic()
    with zipfile.ZipFile(wheel) as archive:  # every packaged resource (one list: mlcl_cli/resources.py)
        packaged = {name for name in archive.namelist() if name.startswith(f"mlcl_cli/{PACKAGED}/")}
    assert packaged == {f"mlcl_cli/{PACKAGED}/{rel.as_posix()}" for rel in resource_files(REPO_ROOT)}

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env, 120)
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env, 60).stdout.strip())
    # The running environment's packages (jina, torch, ...) without its .pth hooks: the editable mlcl stays out.
    (site / "_mlcl_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], tmp_path, env, 300)
    installed = time.monotonic()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run([str(python), "-c", "import mlcl, mlcl_executor, mlcl_cli; from mlcl_cli.flows import default_flow; "
                 "from mlcl.paths import DEFAULT_CHECKPOINT; print(mlcl.__file__); print(default_flow()); print(DEFAULT_CHECKPOINT)"],
                elsewhere, env, 120).stdout.split()
    for path in where:
        assert Path(path).is_relative_to(site), f"{path} is not from the installed wheel"
        assert Path(path).exists()
    mlcl = str(venv / "bin" / "mlcl")
    helped = run([mlcl, "--help"], elsewhere, env, 120).stdout
    for command in ("data", "train", "eval", "serve", "index", "search", "demo", "info"):
        assert command in helped
    refused = subprocess.run([mlcl, "serve", "--flow", "nope"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "flow.milvus.yml, flow.sharded.yml, flow.yml" in refused.stderr  # the Flows shipped in the package

    demo = run([mlcl, "demo", "--gallery", "120", "--queries", "2", "--eval-queries", "10", "--out", "sheet.png",
                "--no-progress", "--device", "cpu"], elsewhere, env, 600).stdout
    assert "query 1 over HTTP: same top-10 as over gRPC" in demo and "Flow stopped" in demo
    assert (elsewhere / "sheet.png").stat().st_size > 0
    assert not (elsewhere / "workspace").exists()  # the demo's index lives in a temporary workspace
    print(f"wheel built in {built - t0:.1f} s, installed in {installed - built:.1f} s, "
          f"checks and demo in {time.monotonic() - installed:.1f} s; load {os.getloadavg()[0]:.2f}")


def test_one_list_of_packaged_resources():
    """The source distribution carries what setup.py copies: MANIFEST.in names the same patterns."""
    manifest = (REPO_ROOT / "MANIFEST.in").read_text().split()
    assert all(pattern in manifest for pattern in PATTERNS)
    assert {"config.yml", "flows/flow.yml", "flows/indexer.yml"} <= {p.as_posix() for p in resource_files(REPO_ROOT)}
