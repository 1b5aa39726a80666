"""Reproduce the README's shapes results table: stage 2 of every method on one
stage-1 backbone, then `mlcl eval` of every row on test and novel.

    .venv/bin/python scripts/shapes_results.py                 # uses output/shapes/stage1/model.pt
    .venv/bin/python scripts/shapes_results.py --stage1        # also trains stage 1 first
    .venv/bin/python scripts/shapes_results.py --table-only    # re-print from output/shapes/results.json

Every row uses the same backbone (mlcl-tiny, the one stage-1 run) and the same
stage-2 budget (the epochs in each stage2_*.yaml). Each row's own command is
printed beside it, so a single row can be re-run alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "output" / "shapes"
MLCL = [sys.executable, "-m", "mlcl_cli"]

STAGE2 = ["mlcl", "clip4cir", "mlcl_no_sscl", "mlcl_no_mid"]
# (row label, checkpoint, extra eval args)
ROWS = [
    ("image only (stage-1 backbone)", "stage1", ["--query", "image"]),
    ("text only (stage-1 backbone)", "stage1", ["--query", "text"]),
    ("sum fusion (stage 1)", "stage1", []),
    ("CLIP4Cir combiner", "stage2_clip4cir", []),
    ("MLCL, train-consistent weighting", "stage2_mlcl", ["--weighting", "train"]),
    ("MLCL, as-released weighting", "stage2_mlcl", ["--weighting", "released"]),
    ("MLCL without SSCL", "stage2_mlcl_no_sscl", []),
    ("MLCL without the mid level", "stage2_mlcl_no_mid", []),
]
SPLITS = ["test", "novel"]
KEYS = ["R@1", "R@5", "R@10", "R@50"]


def sh(cmd: list[str]) -> str:
    print("+", " ".join(cmd[2:] if cmd[:2] == MLCL[:2] else cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout


def train(args: argparse.Namespace) -> dict[str, float]:
    seconds = {}
    if args.stage1:
        t = time.time()
        sh(MLCL + ["train", "--config", "shapes/stage1", "--output", str(OUT / "stage1"), "--no-progress", "--overwrite"])
        seconds["stage1"] = time.time() - t
    for method in STAGE2:
        t = time.time()
        sh(MLCL + ["train", "--config", f"shapes/stage2_{method}", "--init-from", str(OUT / "stage1" / "model.pt"),
                   "--output", str(OUT / f"stage2_{method}"), "--no-progress", "--overwrite"])
        seconds[f"stage2_{method}"] = time.time() - t
    return seconds


def evaluate() -> list[dict]:
    rows = []
    for label, run, extra in ROWS:
        ckpt = OUT / run / "model.pt"
        row = {"method": label, "checkpoint": str(ckpt.relative_to(ROOT)), "eval_args": extra}
        for split in SPLITS:
            cmd = MLCL + ["eval", "--checkpoint", str(ckpt), "--dataset", "shapes", "--split", split,
                          "--json", "--no-progress"] + extra
            row[split] = json.loads(sh(cmd))
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    """The README's results table, then each row's command."""
    cols = [("test", k) for k in KEYS] + [("novel", k) for k in ("R@1", "R@10", "R@50")]
    lines = ["| method | " + " | ".join(f"{s} {k}" for s, k in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {r['method']} | " + " | ".join(f"{r[s][k]:.1f}" for s, k in cols) + " |" for r in rows]
    lines += ["", "| row | command |", "|---|---|"]
    for r in rows:
        cmd = " ".join(["mlcl eval --checkpoint", r["checkpoint"], "--split test", *r["eval_args"]])
        lines.append(f"| {r['method']} | `{cmd}` |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage1", action="store_true", help="train stage 1 first (else reuse output/shapes/stage1)")
    ap.add_argument("--skip-train", action="store_true", help="only evaluate existing checkpoints")
    ap.add_argument("--table-only", action="store_true", help="re-print the table from results.json")
    args = ap.parse_args()
    result_file = OUT / "results.json"
    if args.table_only:
        print(table(json.loads(result_file.read_text())["rows"]))
        return 0
    seconds = {} if args.skip_train else train(args)
    rows = evaluate()
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps({"rows": rows, "train_seconds": seconds}, indent=2))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
