#!/usr/bin/env bash
# The README's test command: set up .venv if needed, then run the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/venv.sh"
cd "$root"
export JINA_OPTOUT_TELEMETRY=1 JINA_HIDE_SURVEY=1
exec "$root/.venv/bin/python" -m pytest "$@"
