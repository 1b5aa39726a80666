"""Build hook: ship the repository's config.yml and flows/ inside the package (mlcl_cli/packaged/).

Everything else is in pyproject.toml. The YAML files live once, at the repository root (the
documented entry points); `mlcl_cli/resources.py` names them (`PATTERNS`, read here), finds the
checkout's copy when there is one and this packaged copy in an installed `mlcl`.
"""

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# Run by path: importing mlcl_cli would need its dependencies, which a build does not have.
RESOURCES = runpy.run_path(str(ROOT / "mlcl_cli" / "resources.py"))


class BuildPyWithResources(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "mlcl_cli" / RESOURCES["PACKAGED"]
        for rel in RESOURCES["resource_files"](ROOT):
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, dest)


setup(cmdclass={"build_py": BuildPyWithResources})
