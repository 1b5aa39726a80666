"""Reproduce the README's shapes results: stage 1, stage 2 of every method, at several
training seeds, each row evaluated on the development splits (seed 0: test, novel,
hard) and on the unseen-seed splits (seed 2027), and the plot of val R@1 against
training steps (with its points as JSON beside it).

    .venv/bin/python scripts/shapes_results.py --stage1 --only stage1 stage2_mlcl   # the default model (one seed)
    .venv/bin/python scripts/shapes_results.py --stage1 --extra --seeds 3 --stage1-seeds 2   # the whole table
    .venv/bin/python scripts/shapes_results.py --table-only    # re-print the tables from output/shapes/results.json
    .venv/bin/python scripts/shapes_results.py --plot-only     # redraw docs/img/shapes_val_r1.png (+ .json) from the logs

Every stage-2 row starts from the seed-0 stage-1 backbone (output/shapes/stage1)
with the same budget (the epochs in each stage2_*.yaml).  Training seed i > 0
changes `run.seed` (42 + i) and the procedural data seed (the config's + 10 i):
stage1_seed1, stage2_mlcl_seed2, ...  The table gives mean +- sample SD over
the seeds of each row.

Resumable: a finished run (model.pt + summary.json) is not trained again, a run
with checkpoints but no model.pt is continued (`--resume auto`), and every
evaluation is saved to results.json as soon as it is done and not repeated.
Evaluations run in this process with `mlcl.eval.evaluate` (what `mlcl eval`
runs; each row's command is printed), sharing the image and text features of
a frozen backbone between the rows that use it.  results.json records per
training run its wall time, CPU time (user + sys of the training process), the
intervals it ran and the load average, and per evaluation its date and load.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "output" / "shapes"  # --out changes it
PLOT = ROOT / "docs" / "img" / "shapes_val_r1.png"
CONFIGS = ROOT / "training" / "configs"
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
DEV_SEED, UNSEEN_SEED = 0, 2027  # the splits the recipe was developed on; the splits looked at once, at the end
EVAL_SPLITS = [(seed, split) for seed in (DEV_SEED, UNSEEN_SEED) for split in ("test", "novel", "hard")]
KEYS = ["R@1", "R@5", "R@10", "R@50"]
DEFAULT_ROW = "MLCL, train-consistent weighting"


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="minutes")


def run_name(base: str, seed: int) -> str:
    return base if seed == 0 else f"{base}_seed{seed}"


def seed_options(config: str, seed: int) -> list[str]:
    """Training seed i > 0: run.seed + i and the procedural data seed + 10 i (seed 0 = the config as shipped)."""
    if seed == 0:
        return []
    cfg = yaml.safe_load((CONFIGS / f"{config}.yaml").read_text())
    run_seed = int(cfg["run"].get("seed", 42))
    data_seed = int(cfg["datasets"]["shapes"]["procedural"]["seed"])
    return [f"run.seed={run_seed + seed}", f"datasets.shapes.procedural.seed={data_seed + 10 * seed}"]


# ------------------------------------------------------------- results.json
class Results:
    """output/shapes/results.json: {"runs": {name: ...}, "evals": {key: ...}}, re-read before and written after
    every change (another invocation may add to it meanwhile)."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[str, Any]:
        if self.path.is_file():
            data = json.loads(self.path.read_text())
            if "evals" in data:
                return data
        return {"runs": {}, "evals": {}}

    def update(self, section: str, key: str, value: dict[str, Any]) -> None:
        data = self.load()
        data[section][key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(self.path)


def eval_key(run: str, extra: list[str], seed: int, split: str) -> str:
    return " ".join([run, *extra, f"seed={seed}", split])


# ------------------------------------------------------------------ training
def train_run(results: Results, name: str, config: str, options: list[str], init_from: Path | None) -> None:
    """Train one run unless it is finished; continue it if it was stopped."""
    out = OUT / name
    if (out / "model.pt").is_file() and (out / "summary.json").is_file():
        print(f"= {name}: done ({out / 'model.pt'})", flush=True)
        return
    cmd = MLCL + ["train", "--config", config, "--output", str(out), "--no-progress"]
    if init_from is not None:
        cmd += ["--init-from", str(init_from)]
    resume = any(out.glob("checkpoint_*.pth"))
    cmd += ["--resume", "auto"] if resume else ["--overwrite"]
    if options:
        cmd += ["--options", *options]
    record = results.load()["runs"].get(name, {}) if resume else {}
    intervals = list(record.get("intervals", []))
    start, load, cpu0 = time.time(), load1(), os.times()
    print("+", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    cpu1 = os.times()
    intervals.append([round(start, 1), round(time.time(), 1)])
    summary = json.loads((out / "summary.json").read_text())
    cpu = (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system)
    results.update("runs", name, {
        "config": config, "options": options, "command": " ".join(["mlcl", *cmd[3:]]),
        "wall_time_s": summary.get("wall_time_s"), "cpu_s": round(record.get("cpu_s", 0) + cpu, 1),
        "intervals": intervals, "load1_at_start": load, "load1_at_end": load1(), "finished": now(),
        "resumed": resume or bool(record.get("resumed")),
    })


def plan(args: argparse.Namespace) -> list[tuple[str, str, list[str], Path | None]]:
    """(name, config, options, init_from) of every run, in order: the default model's first, then the
    methods' other seeds, then the option rows, then stage 1's other seeds (a stopped run has the most
    important rows)."""
    backbone = OUT / "stage1" / "model.pt"
    runs: list[tuple[str, str, list[str], Path | None]] = []
    if args.stage1:
        runs.append(("stage1", "shapes/stage1", [], None))
    for group in (STAGE2, EXTRA if args.extra else {}):
        for seed in range(args.seeds):
            for base, (config, options) in group.items():
                runs.append((run_name(base, seed), config, options + seed_options(config, seed), backbone))
    if args.stage1:
        runs += [(run_name("stage1", s), "shapes/stage1", seed_options("shapes/stage1", s), None)
                 for s in range(1, args.stage1_seeds)]
    runs = [(name, config, options + args.train_options, init) for name, config, options, init in runs]
    if args.only:
        runs = [r for r in runs if base_of(r[0]) in args.only]
    return runs


def base_of(name: str) -> str:
    return name.rsplit("_seed", 1)[0] if "_seed" in name else name


# ---------------------------------------------------------------- evaluation
class Evaluator:
    """`mlcl eval` in this process; image/text features shared by models with the same frozen backbone."""

    def __init__(self) -> None:
        self.datasets: dict[tuple[int, str], Any] = {}
        self.features: dict[tuple[str, bool], dict] = {}

    def dataset(self, seed: int, split: str) -> Any:
        if (seed, split) not in self.datasets:
            from mlcl.data.shapes import ShapesDataset, ensure_shapes

            self.datasets[seed, split] = ShapesDataset(ensure_shapes(None, split, seed=seed, progress=True), split)
        return self.datasets[seed, split]

    def __call__(self, checkpoint: Path, extra: list[str], seed: int, split: str) -> dict[str, Any]:
        from mlcl.eval.evaluate import evaluate
        from mlcl.eval.report import metrics_json
        from mlcl.eval.single_input import with_query_mode
        from mlcl.model import load_checkpoint
        from training.common import state_fingerprint

        model = load_checkpoint(checkpoint, device="cpu")
        opts = dict(zip(extra[::2], extra[1::2]))
        if "--weighting" in opts:
            model.set_inference_weighting(opts["--weighting"])
        key = (state_fingerprint(model.backbone), bool(model.normalize_features))
        encoder = with_query_mode(model, opts.get("--query", "composed"))
        res = evaluate(encoder, "shapes", split=split, ds=self.dataset(seed, split), batch_size=64, num_workers=0,
                       progress=False, feature_cache=self.features.setdefault(key, {}))
        return json.loads(metrics_json(res.metrics, breakdown=res.breakdown))


def eval_command(checkpoint: str, extra: list[str], seed: int, split: str) -> str:
    return " ".join(["mlcl eval --checkpoint", checkpoint, "--split", split, *extra]
                    + ([f"--seed {seed}"] if seed else []))


def evaluate_runs(results: Results, runs: list[str], rows_spec: list[tuple[str, str, list[str]]],
                  evaluator: Evaluator, redo: bool = False,
                  splits: list[tuple[int, str]] = EVAL_SPLITS) -> None:
    """Every row of `rows_spec` on every split, for each of `runs` that is trained and not evaluated yet."""
    for run in runs:
        ckpt = OUT / run / "model.pt"
        if not ckpt.is_file():
            continue
        for label, base, extra in rows_spec:
            if base != base_of(run):
                continue
            for seed, split in splits:
                key = eval_key(run, extra, seed, split)
                if key in results.load()["evals"] and not redo:
                    continue
                t, load = time.time(), load1()
                metrics = evaluator(ckpt, extra, seed, split)
                results.update("evals", key, {
                    "row": label, "run": run, "seed": seed, "split": split, "metrics": metrics,
                    "command": eval_command(os.path.relpath(ckpt, ROOT), extra, seed, split),
                    "date": now(), "load1": load, "seconds": round(time.time() - t, 1)})
                print(f"  {label} [{run}] seed {seed} {split}: R@1 {metrics['R@1']:.2f}", flush=True)


# -------------------------------------------------------------------- tables
def row_values(data: dict[str, Any], label: str, seed: int, split: str, metric: str) -> list[float]:
    """The metric of one row on one split, one value per training seed that has it."""
    return [float(e["metrics"][metric]) for e in data["evals"].values()
            if e["row"] == label and e["seed"] == seed and e["split"] == split]


def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def table(data: dict[str, Any], seed: int, rows_spec: list[tuple[str, str, list[str]]]) -> str:
    """Mean ± SD over training seeds of each row on the splits of generation seed `seed`."""
    cols = [("test", "R@1"), ("test", "R@10"), ("novel", "R@1"), ("novel", "R@10"), ("hard", "R@1"),
            ("hard", "R@10")]
    lines = ["| method | seeds | " + " | ".join(f"{s} {k}" for s, k in cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for label, _, _ in rows_spec:
        n = len(row_values(data, label, seed, "test", "R@1"))
        if n:
            lines.append(f"| {label} | {n} | " + " | ".join(mean_sd(row_values(data, label, seed, s, k))
                                                           for s, k in cols) + " |")
    return "\n".join(lines)


def commands_table(data: dict[str, Any], rows_spec: list[tuple[str, str, list[str]]]) -> str:
    lines = ["| row | training (seed 0; seed i adds the options above) | evaluation | measured (load avg) |",
             "|---|---|---|---|"]
    for label, base, extra in rows_spec:
        evals = [e for e in data["evals"].values() if e["run"] == base and e["row"] == label]
        if not evals:
            continue
        dates = sorted(e["date"] for e in evals)
        loads = [e["load1"] for e in evals]
        train_cmd = data["runs"].get(base, {}).get("command", "")
        e0 = next(e for e in evals if e["seed"] == DEV_SEED and e["split"] == "test")
        lines.append(f"| {label} | `{train_cmd}` | `{e0['command']}` (`--split novel`, `hard`; "
                     f"`--seed {UNSEEN_SEED}`) | {dates[0]} .. {dates[-1]} ({min(loads):.2f}-{max(loads):.2f}) |")
    return "\n".join(lines)


def breakdown_table(data: dict[str, Any], run: str = "stage2_mlcl", label: str = DEFAULT_ROW,
                    seed: int = DEV_SEED) -> str:
    """Per-kind / per-object-count (and, on hard, per-form) recall of one run."""
    lines = []
    by_split = {e["split"]: e["metrics"].get("breakdown", {}) for e in data["evals"].values()
                if e["run"] == run and e["seed"] == seed and e["row"] == label}
    for split, groupings in by_split.items():
        for grouping, groups in groupings.items():
            if split == "hard" and grouping == "kind":
                continue  # 36 two-edit combinations: see form
            lines += [f"| {split}: {grouping} | queries | R@1 | R@10 |", "|---|---|---|---|"]
            lines += [f"| {g} | {m['queries']} | {m['R@1']:.1f} | {m['R@10']:.1f} |" for g, m in groups.items()]
            lines.append("")
    return "\n".join(lines)


def report(data: dict[str, Any], rows_spec: list[tuple[str, str, list[str]]]) -> str:
    parts = [f"Development splits (generation seed {DEV_SEED}), mean ± SD over training seeds:", "",
             table(data, DEV_SEED, rows_spec), "",
             f"Unseen-seed splits (generation seed {UNSEEN_SEED}), mean ± SD over training seeds:", "",
             table(data, UNSEEN_SEED, rows_spec), "", commands_table(data, rows_spec), "",
             "Training runs:", "", "| run | wall (s) | CPU (s) | load at start / end | finished |",
             "|---|---|---|---|---|"]
    for name, r in data["runs"].items():
        parts.append(f"| {name} | {r.get('wall_time_s')} | {r.get('cpu_s')} | {r.get('load1_at_start')} / "
                     f"{r.get('load1_at_end')} | {r.get('finished')} |")
    parts += ["", breakdown_table(data)]
    return "\n".join(parts)


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
    """A small PNG (Pillow only): val R@1 against training steps for sum (stage 1), CLIP4Cir and MLCL
    (stage 2), and the same points as JSON beside it (path with .json)."""
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
    data = {"what": "val R@1 (%) against global training steps; stage 2 starts at stage 1's last step",
            "command": "python scripts/shapes_results.py --plot-only", "date": now(),
            "series": {label: [[x, y] for x, y in pts] for label, pts, _ in series}}
    path.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path} and {path.with_suffix('.json')}: " + "; ".join(f"{lab}: {pts}" for lab, pts, _ in series))
    return path


def main() -> int:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage1", action="store_true", help="train stage 1 too (else reuse output/shapes/stage1)")
    ap.add_argument("--seeds", type=int, default=1, help="training seeds of every stage-2 row (default 1)")
    ap.add_argument("--stage1-seeds", type=int, default=1, help="training seeds of stage 1 (with --stage1; default 1)")
    ap.add_argument("--skip-train", action="store_true", help="only evaluate existing checkpoints")
    ap.add_argument("--extra", action="store_true", help="also the option rows (normalised features, SSCL K)")
    ap.add_argument("--only", nargs="+", metavar="RUN", help="only these runs (e.g. stage1 stage2_mlcl)")
    ap.add_argument("--reeval", action="store_true", help="evaluate again rows already in results.json")
    ap.add_argument("--eval-splits", nargs="+", metavar="SEED:SPLIT",
                    help=f"evaluate only these (default: {' '.join(f'{a}:{b}' for a, b in EVAL_SPLITS)})")
    ap.add_argument("--out", type=Path, default=OUT, help="runs and results.json here (default output/shapes)")
    ap.add_argument("--train-options", nargs="+", default=[], metavar="KEY=VALUE",
                    help="appended to every training run's --options (e.g. a smoke test: run.max_steps=2)")
    ap.add_argument("--table-only", action="store_true", help="re-print the tables from results.json")
    ap.add_argument("--plot-only", action="store_true", help="only redraw the val-curve plot from the run logs")
    args = ap.parse_args()
    default_out = OUT
    OUT = args.out.resolve()
    plot_path = PLOT if OUT == default_out else OUT / PLOT.name  # a run elsewhere leaves the docs' plot alone
    splits = [(int(s.split(":")[0]), s.split(":")[1]) for s in args.eval_splits] if args.eval_splits else EVAL_SPLITS
    results = Results(OUT / "results.json")
    rows_spec = ROWS + EXTRA_ROWS
    if args.plot_only:
        plot(plot_path)
        return 0
    if args.table_only:
        print(report(results.load(), rows_spec))
        return 0
    evaluator = Evaluator()
    runs = plan(args)
    if not args.stage1:  # the stage-1 runs there are (reused, not trained) are evaluated too
        stage1 = sorted(p.parent.name for p in OUT.glob("stage1*/model.pt"))
        evaluate_runs(results, [r for r in stage1 if not args.only or base_of(r) in args.only], rows_spec, evaluator,
                      args.reeval, splits)
    # Evaluate each run as soon as it is trained: partial results are in results.json early.
    for name, config, options, init_from in runs:
        if not args.skip_train:
            train_run(results, name, config, options, init_from)
        evaluate_runs(results, [name], rows_spec, evaluator, args.reeval, splits)
    print(report(results.load(), rows_spec))
    if (OUT / "stage1" / "log.txt").is_file():
        plot(plot_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
