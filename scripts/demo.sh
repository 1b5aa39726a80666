#!/usr/bin/env bash
# The README's main command: set up .venv if needed, then run the end-to-end demo
# on the bundled default model (Flow up, index a shapes gallery, hybrid queries
# over gRPC and HTTP, a contact sheet PNG, Flow down).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/venv.sh"
cd "$root"
export JINA_OPTOUT_TELEMETRY=1 JINA_HIDE_SURVEY=1
exec "$root/.venv/bin/mlcl" demo "$@"
