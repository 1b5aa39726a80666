"""hub/MLCLEncoder follows Jina Hub's layout and its config builds a working encoder.

The Dockerfile is not built here (no Docker engine on these machines); what can be
checked without one is checked: the config loads through executor.py, the
manifest has its fields, requirements.txt names the wheel `pip wheel .` builds.
"""

from __future__ import annotations

import re

import pytest
import yaml
from docarray import DocList

from helpers import REPO_ROOT, png_bytes, run_endpoint, tiny_checkpoint

HUB = REPO_ROOT / "hub" / "MLCLEncoder"
pytestmark = pytest.mark.timeout(120)


def test_layout_and_manifest():
    for name in ("config.yml", "executor.py", "manifest.yml", "requirements.txt", "Dockerfile", "README.md"):
        assert (HUB / name).is_file(), name
    manifest = yaml.safe_load((HUB / "manifest.yml").read_text())
    assert manifest["name"] == "MLCLEncoder" and manifest["description"] and manifest["keywords"]
    config = yaml.safe_load((HUB / "config.yml").read_text())
    assert config["jtype"] == manifest["name"] and config["py_modules"] == ["executor.py"]
    dockerfile = (HUB / "Dockerfile").read_text()
    assert "requirements.txt" in dockerfile and '"--uses", "config.yml"' in dockerfile


def test_requirements_name_the_current_wheel():
    version = re.search(r'^version = "([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text(), re.M).group(1)
    lines = [l.strip() for l in (HUB / "requirements.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert lines == [f"./mlcl-{version}-py3-none-any.whl"]


def test_config_loads_a_working_encoder():
    from jina import Executor

    from mlcl_executor.schemas import QueryDoc

    for documents in ("mlcl", "docarray"):
        enc = Executor.load_config(str(HUB / "config.yml"),
                                   uses_with={"checkpoint": str(tiny_checkpoint()), "device": "cpu", "documents": documents})
        try:
            assert type(enc).__name__ == "MLCLEncoder" and enc.documents == documents
            if documents == "mlcl":
                out = run_endpoint(enc.encode_queries(DocList[QueryDoc]([QueryDoc(image=png_bytes(), text="make it blue")])))
                assert out[0].error is None and out[0].embedding is not None
            else:
                assert sorted(e for e in enc.requests if not e.startswith("_jina")) == ["/index", "/search"]
        finally:
            enc.close()
