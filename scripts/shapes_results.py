"""Reproduce the README's shapes results: stage 2 of every method on one stage-1
backbone, `mlcl eval` of every row on test and novel (with the per-kind and
per-object-count breakdown), and the plot of val R@1 against training steps.

    .venv/bin/python scripts/shapes_results.py                 # uses output/shapes/stage1/model.pt
    .venv/bin/python scripts/shapes_results.py --stage1        # also trains stage 1 first (the whole recipe)
    .venv/bin/python scripts/shapes_results.py --extra         # also the option rows (normalised features, SSCL K)
    .venv/bin/python scripts/shapes_results.py --table-only    # re-print from output/shapes/results.json
    .venv/bin/python scripts/shapes_results.py --plot-only     # redraw docs/img/shapes_val_r1.png from the logs

Every row uses the same backbone (the one stage-1 run) and the same stage-2
budget (the epochs in each stage2_*.yaml).  Each row's own command is printed
beside it, so a single row can be re-run alone.  results.json records, per
row, the date, the 1-minute load average and the seconds each step took.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "output" / "shapes"
PLOT = ROOT / "docs" / "img" / "shapes_val_r1.png"
MLCL = [sys.executable, "-m", "mlcl_cli"]

# stage-2 runs: output name -> (config, extra --options)
STAGE2 = {
    "stage2_mlcl": ("shapes/stage2_mlcl", []),
    "stage2_clip4cir": ("shapes/stage2_clip4cir", []),
    "stage2_mlcl_no_sscl": ("shapes/stage2_mlcl_no_sscl", []),
    "stage2_mlcl_no_mid": ("shapes/stage2_mlcl_no_mid", []),
}
# option rows (--extra): the normalised-feature option of defect 4 and the SSCL view count K of defect 5
EXTRA = {
    "stage2_mlcl_normalised": ("shapes/stage2_mlcl", ["model.normalize_features=true"]),
    "stage2_mlcl_k1": ("shapes/stage2_mlcl", ["run.sscl_cached_views=1"]),
    "stage2_mlcl_k4": ("shapes/stage2_mlcl", ["run.sscl_cached_views=4"]),
    "stage2_mlcl_k2_redraw1": ("shapes/stage2_mlcl", ["run.sscl_redraw_every=1"]),
}
# (row label, run, extra eval args)
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
EXTRA_ROWS = [
    ("MLCL, normalised features (option)", "stage2_mlcl_normalised", []),
    ("MLCL, K = 1 cached SSCL view", "stage2_mlcl_k1", []),
    ("MLCL, K = 4 cached SSCL views", "stage2_mlcl_k4", []),
    ("MLCL, K = 2 re-drawn every epoch", "stage2_mlcl_k2_redraw1", []),
]
SPLITS = ["test", "novel"]
KEYS = ["R@1", "R@5", "R@10", "R@50"]


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def sh(cmd: list[str]) -> str:
    print("+", " ".join(cmd[2:] if cmd[:2] == MLCL[:2] else cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout


def train(args: argparse.Namespace) -> dict[str, dict]:
    runs: dict[str, dict] = {}
    if args.stage1:
        t, load = time.time(), load1()
        sh(MLCL + ["train", "--config", "shapes/stage1", "--output", str(OUT / "stage1"), "--no-progress", "--overwrite"])
        runs["stage1"] = {"seconds": round(time.time() - t, 1), "load1_at_start": load, "load1_at_end": load1()}
    todo = dict(STAGE2)
    if args.extra:
        todo.update(EXTRA)
    if args.only:
        todo = {k: v for k, v in todo.items() if k in args.only}
    for name, (config, options) in todo.items():
        t, load = time.time(), load1()
        cmd = MLCL + ["train", "--config", config, "--init-from", str(OUT / "stage1" / "model.pt"),
                      "--output", str(OUT / name), "--no-progress", "--overwrite"]
        sh(cmd + (["--options", *options] if options else []))
        runs[name] = {"seconds": round(time.time() - t, 1), "load1_at_start": load, "load1_at_end": load1(),
                      "options": options}
    return runs


def evaluate(rows_spec: list[tuple[str, str, list[str]]], only: list[str] | None,
             save: "callable | None" = None) -> list[dict]:
    """Evaluate each row on test and novel; the default model's rows first, `save(rows)` after each row."""
    rows = []
    first = [r for r in rows_spec if r[1] == "stage2_mlcl"] + [r for r in rows_spec if r[1] == "stage1" and not r[2]]
    for label, run, extra in first + [r for r in rows_spec if r not in first]:
        if only and run not in only:
            continue
        ckpt = OUT / run / "model.pt"
        if not ckpt.is_file():
            print(f"skipping {label}: {ckpt} does not exist", file=sys.stderr)
            continue
        row = {"method": label, "run": run, "checkpoint": str(ckpt.relative_to(ROOT)), "eval_args": extra,
               "date": datetime.datetime.now().isoformat(timespec="minutes"), "load1": load1()}
        for split in SPLITS:
            cmd = MLCL + ["eval", "--checkpoint", str(ckpt), "--dataset", "shapes", "--split", split,
                          "--json", "--no-progress"] + extra
            row[split] = json.loads(sh(cmd))
        rows.append(row)
        if save is not None:
            save(rows)
    return rows


def table(rows: list[dict]) -> str:
    """The README's results table, then each row's command."""
    cols = [("test", k) for k in KEYS] + [("novel", k) for k in ("R@1", "R@10", "R@50")]
    lines = ["| method | " + " | ".join(f"{s} {k}" for s, k in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {r['method']} | " + " | ".join(f"{r[s][k]:.2f}" for s, k in cols) + " |" for r in rows]
    lines += ["", "| row | command | measured (load avg) |", "|---|---|---|"]
    for r in rows:
        cmd = " ".join(["mlcl eval --checkpoint", r["checkpoint"], "--split test", *r["eval_args"]])
        lines.append(f"| {r['method']} | `{cmd}` | {r.get('date', '?')} ({r.get('load1', '?')}) |")
    return "\n".join(lines)


def breakdown_table(row: dict) -> str:
    """Per-kind and per-object-count recall of one row (test and novel)."""
    lines = []
    for grouping, title in (("kind", "modification kind"), ("objects", "objects in the reference")):
        lines += [f"| {title} | test queries | test R@1 | test R@10 | novel queries | novel R@1 | novel R@10 |",
                  "|---|---|---|---|---|---|---|"]
        groups = list(dict.fromkeys([*row["test"].get("breakdown", {}).get(grouping, {}),
                                     *row["novel"].get("breakdown", {}).get(grouping, {})]))
        for g in groups:
            cells = []
            for split in SPLITS:
                m = row[split].get("breakdown", {}).get(grouping, {}).get(g)
                cells += [str(m["queries"]), f"{m['R@1']:.1f}", f"{m['R@10']:.1f}"] if m else ["0", "-", "-"]
            lines.append(f"| {g} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------ plot
def val_curve(run_dir: Path, step_offset: int = 0) -> list[tuple[int, float]]:
    """(global step, val R@1) from a run's log.txt (LAVIS-style JSON lines)."""
    steps: dict[int, int] = {}
    points = []
    lines = (run_dir / "log.txt").read_text().splitlines()
    # every invocation appends its config dump (a line "{") to log.txt: keep the last run, and the
    # invocations it resumed (their dumps are followed by one with "resume_ckpt_path" set)
    starts = [i for i, line in enumerate(lines) if line == "{"] or [0]

    def resumed(k: int) -> bool:
        dump = "\n".join(lines[starts[k]:]).split("\n}\n")[0]
        return '"resume_ckpt_path":' in dump and '"resume_ckpt_path": null' not in dump

    first = len(starts) - 1
    while first > 0 and resumed(first):
        first -= 1
    for line in lines[starts[first]:]:
        if not line.startswith("{") or not line.endswith("}"):
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "train_global_step" in rec:
            steps[int(rec["train_epoch"])] = int(rec["train_global_step"])
        if "val_R@1" in rec and int(rec["val_epoch"]) in steps:
            points.append((step_offset + steps[int(rec["val_epoch"])], float(rec["val_R@1"])))
    return sorted(dict(points).items())


def plot(path: Path = PLOT) -> Path:
    """A small PNG (Pillow only): val R@1 against training steps for sum (stage 1), CLIP4Cir and MLCL (stage 2)."""
    from PIL import Image, ImageDraw

    s1 = val_curve(OUT / "stage1")
    end1 = s1[-1][0] if s1 else 0
    series = [("sum fusion (stage 1)", s1, (90, 90, 90))]
    for name, label, colour in (("stage2_clip4cir", "CLIP4Cir (stage 2)", (42, 75, 215)),
                                ("stage2_mlcl", "MLCL (stage 2)", (220, 40, 40))):
        if (OUT / name / "log.txt").is_file():
            series.append((label, [(end1, s1[-1][1])] + val_curve(OUT / name, end1) if s1 else [], colour))
    w, h, left, right, top, bottom = 640, 360, 56, 16, 16, 44
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    xs = [x for _, pts, _ in series for x, _ in pts] or [0, 1]
    ys = [y for _, pts, _ in series for _, y in pts] or [0, 100]
    x0, x1 = 0, max(xs)
    y0, y1 = max(0.0, (min(ys) // 10) * 10), 100.0
    px = lambda x: left + (x - x0) / max(1e-9, x1 - x0) * (w - left - right)  # noqa: E731
    py = lambda y: h - bottom - (y - y0) / max(1e-9, y1 - y0) * (h - top - bottom)  # noqa: E731
    d.rectangle((left, top, w - right, h - bottom), outline=(0, 0, 0))
    for y in range(int(y0), 101, 10):
        d.line((left, py(y), w - right, py(y)), fill=(225, 225, 225))
        d.text((8, py(y) - 6), f"{y}", fill=(0, 0, 0))
    for i in range(6):
        x = x0 + (x1 - x0) * i / 5
        d.text((px(x) - 12, h - bottom + 6), f"{int(x)}", fill=(0, 0, 0))
    d.text((w // 2 - 60, h - 18), "training steps (stage 1, then stage 2)", fill=(0, 0, 0))
    d.text((left + 4, top + 2), "shapes val R@1 (%)", fill=(0, 0, 0))
    for i, (label, pts, colour) in enumerate(series):
        if len(pts) > 1:
            d.line([(px(x), py(y)) for x, y in pts], fill=colour, width=2)
        for x, y in pts:
            d.ellipse((px(x) - 3, py(y) - 3, px(x) + 3, py(y) + 3), fill=colour)
        d.line((w - 210, h - bottom - 60 + 14 * i, w - 190, h - bottom - 60 + 14 * i), fill=colour, width=3)
        d.text((w - 185, h - bottom - 66 + 14 * i), label, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size} bytes): " + "; ".join(f"{lab}: {pts}" for lab, pts, _ in series))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage1", action="store_true", help="train stage 1 first (else reuse output/shapes/stage1)")
    ap.add_argument("--skip-train", action="store_true", help="only evaluate existing checkpoints")
    ap.add_argument("--extra", action="store_true", help="also the option rows (normalised features, SSCL K)")
    ap.add_argument("--only", nargs="+", metavar="RUN", help="only these runs (e.g. stage1 stage2_mlcl)")
    ap.add_argument("--table-only", action="store_true", help="re-print the tables from results.json")
    ap.add_argument("--plot-only", action="store_true", help="only redraw the val-curve plot from the run logs")
    args = ap.parse_args()
    result_file = OUT / "results.json"
    if args.plot_only:
        plot()
        return 0
    if args.table_only:
        data = json.loads(result_file.read_text())
        print(table(data["rows"]))
        default = next((r for r in data["rows"] if r["method"].startswith("MLCL, train")), None)
        if default:
            print("\n" + breakdown_table(default))
        return 0
    runs = {} if args.skip_train else train(args)
    old = json.loads(result_file.read_text()) if result_file.is_file() else {"rows": [], "runs": {}}
    order = {label: i for i, (label, _, _) in enumerate(ROWS + EXTRA_ROWS)}

    def save(rows: list[dict]) -> list[dict]:
        # rows measured now replace those of the same label; the others stay (with their own dates).
        # Re-read first: another invocation may have added rows meanwhile.
        nonlocal old
        if result_file.is_file():
            old = json.loads(result_file.read_text())
        keep = [r for r in old.get("rows", []) if r["method"] not in {n["method"] for n in rows}]
        merged = sorted(keep + rows, key=lambda r: order.get(r["method"], 99))
        result_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = result_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"rows": merged, "runs": {**old.get("runs", {}), **runs}}, indent=2))
        tmp.replace(result_file)
        return merged

    save([])
    all_rows = save(evaluate(ROWS + (EXTRA_ROWS if args.extra else []), args.only, save))
    print(table(all_rows))
    default = next((r for r in all_rows if r["method"].startswith("MLCL, train")), None)
    if default:
        print("\n" + breakdown_table(default))
    if (OUT / "stage1" / "log.txt").is_file():
        plot()
    return 0


if __name__ == "__main__":
    sys.exit(main())
