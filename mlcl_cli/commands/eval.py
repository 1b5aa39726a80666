"""`mlcl eval`: evaluate a checkpoint with a benchmark's official protocol.

    mlcl eval --dataset shapes --split test            # bundled default model
    mlcl eval --checkpoint model.pt --dataset fashioniq --data-root /data/fashionIQ_dataset
    mlcl eval --checkpoint model.pt --dataset cirr --split test1 --data-root /data/cirr --submission out/
    mlcl eval --config shapes/stage2_mlcl --checkpoint output/shapes/stage2_mlcl/model.pt --json
    mlcl eval --split hard --seed 2027                 # the hard split of the unseen-seed set

Heavy imports (torch, the model) happen inside `run` so `mlcl --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DATASETS = ("shapes", "fashioniq", "cirr", "shoes")
# Names a LAVIS config may use for a data set (builder names), matched by substring.
CONFIG_ALIASES = {"fashioniq": ("fashioniq", "fashion_iq", "fiq"), "cirr": ("cirr",), "shoes": ("shoes",),
                  "shapes": ("shapes", "css")}


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="LAVIS-style YAML whose run/datasets keys give defaults: a path, or one "
                                          "relative to training/configs/ as for mlcl train (e.g. shapes/stage2_mlcl)")
    parser.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the bundled shapes model)")
    parser.add_argument("--dataset", choices=DATASETS, help="benchmark (default: shapes)")
    parser.add_argument("--data-root", type=Path, help="data set folder (shapes: generated there if missing)")
    parser.add_argument("--split", help="split (defaults: shapes test, fashioniq val, cirr val, shoes eval; "
                                         "shapes also novel, hard, val)")
    parser.add_argument("--seed", type=int, default=0,
                        help="shapes: generation seed of the split (default 0; the unseen-seed splits: 2027)")
    parser.add_argument("--batch-size", type=int, help="images/captions per encoding batch (default 64)")
    parser.add_argument("--num-workers", type=int, help="DataLoader workers for image decoding (default 2)")
    parser.add_argument("--chunk-size", type=int, default=1024, help="queries scored at once (memory ~ chunk x gallery)")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--limit", type=int, help="only the first N queries (per category on FashionIQ); gallery unchanged")
    parser.add_argument("--weighting", choices=("train", "released"),
                        help="inference level weights: train-consistent or as in the authors' released code")
    parser.add_argument("--query", choices=("composed", "image", "text"), default="composed",
                        help="composed (image + text, default), or a single-input baseline: image or text alone")
    parser.add_argument("--submission", type=Path, metavar="DIR", help="CIRR: write the two test-server JSON files here")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object of metrics (shapes: with a per-kind/per-object-count breakdown) "
                             "instead of a table")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def _dataset_from_name(name: str) -> str | None:
    low = name.lower()
    for dataset, aliases in CONFIG_ALIASES.items():
        if any(a in low for a in aliases):
            return dataset
    return None


def resolve_config(config: str) -> Path:
    """A config path as `mlcl train` takes it: a file, or a path relative to training/configs/ ("shapes/stage1")."""
    path = Path(config).expanduser()
    if path.is_file():
        return path
    try:
        from training.api import resolve_config_path
    except ModuleNotFoundError as exc:  # training needs LAVIS (the train extra)
        raise FileNotFoundError(f"config {config!r} not found (short names such as shapes/stage1 need the "
                                f"training package: pip install 'mlcl[train]')") from exc
    return resolve_config_path(config)


def config_defaults(path: Path) -> dict[str, Any]:
    """Read the few keys `mlcl eval` uses from a LAVIS-style YAML, loosely.

    dataset: run.eval_dataset, else the first key of `datasets`; data root:
    datasets.<name>.data_root / root / build_info.root / build_info.storage;
    split: run.test_splits[0], else run.valid_splits[0]; batch size:
    run.batch_size_eval; workers: run.num_workers.  Anything missing is skipped.
    """
    import yaml

    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} is not a YAML mapping of config sections")
    run_cfg = cfg.get("run") or {}
    datasets = cfg.get("datasets") or {}
    out: dict[str, Any] = {}
    key = run_cfg.get("eval_dataset") or next(iter(datasets), None)
    if isinstance(key, str):
        out["dataset"] = _dataset_from_name(key)
        ds_cfg = datasets.get(key) or {}
        build = ds_cfg.get("build_info") or {}
        for root in (ds_cfg.get("data_root"), ds_cfg.get("root"), build.get("root"), build.get("storage")):
            if isinstance(root, str):
                out["data_root"] = Path(root)
                break
    splits = run_cfg.get("test_splits") or run_cfg.get("valid_splits")
    if isinstance(splits, list) and splits:
        out["split"] = splits[0]
    for src, dst in (("batch_size_eval", "batch_size"), ("num_workers", "num_workers")):
        if isinstance(run_cfg.get(src), int):
            out[dst] = run_cfg[src]
    return {k: v for k, v in out.items() if v is not None}


def run(args: argparse.Namespace) -> int:
    import torch

    from mlcl.eval.evaluate import evaluate
    from mlcl.eval.report import format_table, metrics_json

    try:
        defaults = config_defaults(resolve_config(args.config)) if args.config else {}
    except (FileNotFoundError, ValueError) as exc:
        print(f"mlcl eval: {exc}", file=sys.stderr)
        return 2
    dataset = args.dataset or defaults.get("dataset") or "shapes"
    data_root = args.data_root or defaults.get("data_root")
    split = args.split or defaults.get("split")
    batch_size = args.batch_size or defaults.get("batch_size") or 64
    num_workers = args.num_workers if args.num_workers is not None else defaults.get("num_workers", 2)
    if args.submission and dataset != "cirr":
        print("mlcl eval: --submission is only for --dataset cirr", file=sys.stderr)
        return 2
    if args.seed and dataset != "shapes":
        print("mlcl eval: --seed is only for --dataset shapes (a generated benchmark)", file=sys.stderr)
        return 2

    from mlcl.model import load_checkpoint
    from mlcl.paths import DEFAULT_CHECKPOINT

    from mlcl.checkpoint_header import checkpoint_problem
    from mlcl_cli.cli import UserError

    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    problem = checkpoint_problem(Path(checkpoint))
    if problem:
        raise UserError(problem)
    from mlcl.preflight import PreflightError, check_data_root

    try:
        check_data_root(dataset, data_root)  # before the model loads (seconds for RN50x4)
    except PreflightError as exc:
        print(f"mlcl eval: {exc}", file=sys.stderr)
        return 1
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_checkpoint(checkpoint, device=device)
    if args.weighting:
        if hasattr(model, "set_inference_weighting"):
            model.set_inference_weighting(args.weighting)
        else:
            print("mlcl eval: this model has no inference weighting; --weighting ignored", file=sys.stderr)

    from mlcl.eval.single_input import with_query_mode

    model = with_query_mode(model, args.query)
    try:
        result = evaluate(
            model, dataset, root=data_root, split=split, limit=args.limit, batch_size=batch_size,
            num_workers=num_workers, chunk_size=args.chunk_size, progress=not args.no_progress,
            submission_dir=args.submission, seed=args.seed,
        )
    except (FileNotFoundError, KeyError, ValueError) as exc:
        # KeyError's str() quotes its message; show the message itself.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mlcl eval: {message}", file=sys.stderr)
        return 1
    print(metrics_json(result.metrics, breakdown=result.breakdown) if args.json else format_table(result))
    return 0
