"""Export a trained checkpoint as the bundled default model (mlcl/weights/).

    .venv/bin/python scripts/export_default.py output/shapes/stage2_mlcl/model.pt

Stores the weights in fp16 (the package stays small; loading restores fp32)
and records the training runs' summaries and the evaluation results (from
output/shapes/results.json: test, novel, hard; seed 0 and the unseen seed) in
the checkpoint's `extra`, which `mlcl info` prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlcl.model import load_checkpoint, read_checkpoint, save_checkpoint  # noqa: E402
from mlcl.paths import DEFAULT_CHECKPOINT  # noqa: E402

MAX_BYTES = 25 * 1024 * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--stage1-summary", type=Path, default=ROOT / "output/shapes/stage1/summary.json")
    ap.add_argument("--results", type=Path, default=ROOT / "output/shapes/results.json")
    ap.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT)
    args = ap.parse_args()

    payload = read_checkpoint(args.checkpoint)
    model = load_checkpoint(args.checkpoint)
    extra = dict(payload.get("extra") or {})
    stage2_summary = args.checkpoint.parent / "summary.json"
    for key, path in (("stage1_summary", args.stage1_summary), ("stage2_summary", stage2_summary)):
        if path.is_file():
            extra[key] = json.loads(path.read_text())
    if args.results.is_file():
        # scripts/shapes_results.py's evaluations of this run (train-consistent weighting): test, novel and
        # hard of the development splits (seed 0) and, as "<split>@2027", of the unseen-seed splits.
        run = args.checkpoint.resolve().parent.name
        evals = json.loads(args.results.read_text()).get("evals", {})
        extra["metrics"] = {(e["split"] if e["seed"] == 0 else f"{e['split']}@{e['seed']}"): e["metrics"]
                            for e in evals.values() if e["run"] == run and "--query" not in e["command"]
                            and "released" not in e["command"]}
    save_checkpoint(model, args.out, extra=extra, half=True)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.1f} MB)")
    if size > MAX_BYTES:
        print(f"error: {args.out} is over the 25 MB budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
