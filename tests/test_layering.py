"""Nothing imports upward: the model core `mlcl` imports neither Jina nor LAVIS (nor the packages on them).

    mlcl_cli       the command line: wires everything, imported by nothing
      |-- mlcl_executor   serving (Jina, docarray)
      |-- training        training (LAVIS)
      `-- mlcl            the model core (plain PyTorch): data, eval, model

Two checks: every import statement of every module (also the ones inside
functions, which a run-time check would miss), and a fresh interpreter that
imports every module of the core and then looks at `sys.modules`.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, Set, Tuple

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# package -> top-level modules it must never import
FORBIDDEN: Dict[str, Set[str]] = {
    "mlcl": {"jina", "lavis", "docarray", "mlcl_executor", "training", "mlcl_cli"},
    "mlcl_executor": {"lavis", "training", "mlcl_cli"},
    "training": {"jina", "mlcl_executor", "mlcl_cli"},
}


def imports(path: Path) -> Iterator[Tuple[int, str]]:
    """(line, top-level module) of every absolute import in a file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_module_imports_upward(package):
    bad = [f"{path.relative_to(REPO_ROOT)}:{line} imports {name}"
           for path in sorted((REPO_ROOT / package).rglob("*.py"))
           for line, name in imports(path) if name in FORBIDDEN[package]]
    assert not bad, "\n".join(bad)


@pytest.mark.timeout(120)
def test_importing_the_whole_core_loads_neither_jina_nor_lavis():
    code = """
import importlib, json, pkgutil, sys
import mlcl
names = sorted(m.name for m in pkgutil.walk_packages(mlcl.__path__, "mlcl."))
for name in names:
    importlib.import_module(name)
top = {m.split(".")[0] for m in sys.modules}
print(json.dumps({"imported": names, "top": sorted(top)}))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=110,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"mlcl.model", "mlcl.eval", "mlcl.data.shapes", "mlcl.viz"} <= set(report["imported"])
    assert set(report["top"]) & FORBIDDEN["mlcl"] == set()
    assert "torch" in report["top"]  # the check ran the real core (plain PyTorch)
