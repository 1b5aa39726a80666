"""Build hook: ship the repository's config.yml and flows/ inside the package (mlcl_executor/resources/).

Everything else is in pyproject.toml. The YAML files live once, at the repository root (the
documented entry points); `mlcl_executor/resources.py` finds the checkout's copy when there is one
and this packaged copy in an installed `mlcl`.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# Keep in step with mlcl_executor.resources.FILES (a test checks the wheel holds them all).
RESOURCES = ("config.yml", "flows/flow.yml", "flows/flow.sharded.yml", "flows/flow.milvus.yml", "flows/flow.docker.yml",
             "flows/indexer.yml", "flows/merger.yml")


class BuildPyWithResources(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "mlcl_executor" / "resources"
        for rel in RESOURCES:
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, dest)


setup(cmdclass={"build_py": BuildPyWithResources})
