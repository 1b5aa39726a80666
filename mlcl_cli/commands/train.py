"""`mlcl train`: train a model from a LAVIS-style YAML config (needs the `train` extra: salesforce-lavis).

    mlcl train --config training/configs/shapes/stage1.yaml
    mlcl train --config shapes/stage2_mlcl --options run.max_epoch=20 run.batch_size_train=256
    mlcl train --config fashioniq/stage1 --data-root /data/fashionIQ_dataset
    mlcl train --config shapes/stage1 --resume auto          # continue the run in its output folder

The run writes OUTPUT_DIR/model.pt (an mlcl checkpoint the executor loads),
checkpoint_<epoch>.pth (resume), checkpoint_best.pth, log.txt, train.log and
summary.json.  See docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "--cfg-path", dest="config", required=True,
                        help="run config (YAML); a path, or one relative to training/configs/ (e.g. shapes/stage1)")
    parser.add_argument("--options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config entries, e.g. run.max_epoch=1 run.batch_size_train=16 model.method=clip4cir")
    parser.add_argument("--output", "-o", help="output folder (run.output_dir)")
    parser.add_argument("--resume", metavar="CKPT|auto",
                        help="resume from a checkpoint_<epoch>.pth, or 'auto' = the latest one in the output folder")
    parser.add_argument("--init-from", metavar="CKPT",
                        help="stage 2: copy the backbone of this mlcl checkpoint (a stage-1 model.pt)")
    parser.add_argument("--data-root", metavar="DIR", help="root folder of the config's data set(s) (datasets.*.root)")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 (run.device)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (run.num_threads)")
    parser.add_argument("--max-epochs", type=int, help="run.max_epoch")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps in total (run.max_steps)")
    parser.add_argument("--max-minutes", type=float, help="stop this invocation after this many minutes (run.max_minutes)")
    parser.add_argument("--overwrite", action="store_true", help="start over in an output folder that holds a run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (log lines instead)")
    parser.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    parser.set_defaults(func=run)


def build_options(args: argparse.Namespace) -> list[str]:
    """--options plus the convenience flags, as LAVIS key=value overrides (flags win)."""
    opts = list(args.options)
    flags = {
        "run.output_dir": args.output,
        "run.resume_ckpt_path": args.resume,
        "model.init_from": args.init_from,
        "run.device": args.device,
        "run.num_threads": args.threads,
        "run.max_epoch": args.max_epochs,
        "run.max_steps": args.max_steps,
        "run.max_minutes": args.max_minutes,
    }
    opts += [f"{k}={v}" for k, v in flags.items() if v is not None]
    if args.overwrite:
        opts.append("run.overwrite=true")
    if args.no_progress:
        opts.append("run.progress=false")
    if args.data_root:
        opts += [f"datasets.{name}.root={args.data_root}" for name in _dataset_names(args.config)]
    return opts


def _dataset_names(config: str) -> list[str]:
    import yaml

    from training.api import resolve_config_path

    with open(resolve_config_path(config), encoding="utf-8") as f:
        return list((yaml.safe_load(f) or {}).get("datasets") or {})


def run(args: argparse.Namespace) -> int:
    import warnings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(levelname)s] %(message)s", stream=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import training  # noqa: F401
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] == "lavis":
                print("mlcl train needs LAVIS: pip install 'mlcl[train]' (salesforce-lavis)", file=sys.stderr)
                return 2
            raise
    from training.api import load_config, train

    try:
        options = build_options(args)
        if args.print_config:
            from omegaconf import OmegaConf

            print(OmegaConf.to_yaml(load_config(args.config, options).config))
            return 0
        summary: dict[str, Any] = train(args.config, options)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as exc:
        import os

        if os.environ.get("MLCL_DEBUG"):
            raise
        print(f"mlcl train: {exc} (MLCL_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2
    print(json.dumps({k: summary.get(k) for k in ("checkpoint", "steps", "wall_time_s", "metrics", "stopped_by",
                                                   "output_dir") if k in summary}, indent=2))
    return 0
