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


@pytest.mark.slow
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


def module_imports(package: str) -> Dict[str, Set[str]]:
    """Module -> the modules of `package` it imports: every import statement (in functions too), relative ones resolved."""
    root = REPO_ROOT / package
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: Dict[str, Set[str]] = {}
    for name, path in names.items():
        here = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]  # the package relative imports start from
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                for alias in node.names:  # `from . import x` imports the module x
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in names else base)
        graph[name] = {m for m in found if m in names and m != name}
    return graph


def cycles(graph: Dict[str, Set[str]]) -> list:
    """The strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: list = []
    found: list = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("package", ["mlcl_executor", "mlcl_cli"])
def test_no_import_cycles(package):
    graph = module_imports(package)
    assert len(graph) > 5 and any(graph.values())  # the package's modules and their imports were read
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_serving_package_holds_no_terminal_code():
    """What serves a person at a terminal (starting and stopping a Flow, clients, progress bars, arguments) lives
    in mlcl_cli: nothing in mlcl_executor supervises processes, parses arguments or builds a Flow or a client."""
    terminal = {"psutil", "argparse", "tqdm"}
    bad = []
    for path in sorted((REPO_ROOT / "mlcl_executor").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
                if node.module == "jina":
                    names += [alias.name for alias in node.names if alias.name in ("Client", "Flow", "Deployment")]
            bad += [f"{path.relative_to(REPO_ROOT)}:{node.lineno} {n}" for n in names if n in terminal | {"Client", "Flow", "Deployment"}]
    assert not bad, bad
