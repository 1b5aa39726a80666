"""`mlcl info [CHECKPOINT]`: what a checkpoint holds (backbone, method, sizes, versions, metrics)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", help="checkpoint file (default: the bundled model)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mlcl.checkpoint_header import checkpoint_problem
    from mlcl.model import read_checkpoint
    from mlcl.paths import DEFAULT_CHECKPOINT
    from mlcl_cli.cli import UserError

    path = args.checkpoint or DEFAULT_CHECKPOINT
    problem = checkpoint_problem(Path(path))
    if problem:
        raise UserError(problem)
    payload = read_checkpoint(path)
    cfg = payload["config"]
    n_params = sum(v.numel() for v in payload["state_dict"].values())
    info = {
        "path": str(path),
        "backbone": cfg["backbone"]["model_name"],
        "embed_dim": cfg["backbone"]["model_config"]["embed_dim"],
        "image_size": cfg["backbone"]["model_config"]["vision_cfg"].get("image_size"),
        "method": cfg["method"]["name"],
        "levels": cfg["method"]["levels"],
        "stage": payload.get("stage"),
        "normalize_features": cfg.get("normalize_features", True),
        "parameters": n_params,
        "versions": payload.get("versions", {}),
        "metrics": payload.get("extra", {}).get("metrics", {}),
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")
    return 0
