#!/usr/bin/env bash
# Create (first time) or reuse the virtual environment at .venv in the repository
# root, and (re)install the project into it when pyproject.toml changed.
# Usage: scripts/venv.sh   -> prints nothing but pip progress; exits non-zero on failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.mlcl-installed"

pick_python() {
  # jina's wheels stop at Python 3.11: prefer an explicit 3.11 interpreter.
  for p in "${MLCL_PYTHON:-}" python3.11 python3; do
    [ -n "$p" ] || continue
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
      echo "$p"; return 0
    fi
  done
  echo "error: Python 3.11 is required (jina has no wheels for newer Pythons); set MLCL_PYTHON=/path/to/python3.11" >&2
  return 1
}

if [ ! -x "$venv/bin/python" ]; then
  py="$(pick_python)"
  echo ">> creating $venv with $py" >&2
  "$py" -m venv "$venv"
fi

want="$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo ">> installing mlcl and its dependencies into .venv (first time: a few minutes)" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  # The editable install runs without build isolation (setuptools<81 from the venv), so every
  # build dependency of a source-only package must be in the venv first: hnswlib needs numpy
  # and pybind11. Source-only packages are built with --no-cache-dir so that a wheel cached
  # by an earlier build can never hide a missing build dependency (as it once did in CI).
  "$venv/bin/python" -m pip install -q "setuptools<81" wheel "numpy<2" "pybind11>=2.10" >&2
  "$venv/bin/python" -m pip install -q --no-cache-dir --no-build-isolation --no-binary hnswlib "hnswlib>=0.8" >&2
  "$venv/bin/python" -m pip install -q --no-build-isolation -e "$root[train,test,milvus]" >&2
  echo "$want" > "$stamp"
fi
