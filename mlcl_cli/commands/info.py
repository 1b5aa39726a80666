"""`mlcl info [CHECKPOINT]`: what a checkpoint holds (backbone, method, sizes, model id, versions, metrics)."""

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
    from mlcl.model_id import checkpoint_id
    from mlcl.paths import DEFAULT_CHECKPOINT
    from mlcl_cli.cli import UserError

    path = args.checkpoint or DEFAULT_CHECKPOINT
    problem = checkpoint_problem(Path(path))
    if problem:
        raise UserError(problem)
    try:
        payload = read_checkpoint(path)
    except (FileNotFoundError, ValueError) as exc:  # CheckpointError is a ValueError
        raise UserError(str(exc)) from None
    cfg = payload["config"]
    extra = payload.get("extra", {})
    n_params = sum(v.numel() for v in payload["state_dict"].values())
    info = {
        "path": str(path),
        # Vectors are comparable only between equal ids: the encoder logs it, a workspace records it.
        "model_id": checkpoint_id(path),
        "backbone": cfg["backbone"]["model_name"],
        "embed_dim": cfg["backbone"]["model_config"]["embed_dim"],
        "image_size": cfg["backbone"]["model_config"]["vision_cfg"].get("image_size"),
        "method": cfg["method"]["name"],
        "levels": cfg["method"]["levels"],
        "stage": payload.get("stage"),
        "normalize_features": cfg.get("normalize_features", True),
        "inference_weighting": cfg.get("inference_weighting", "train"),
        "target_pad_ratio": cfg.get("target_pad_ratio", 1.25),
        "parameters": n_params,
        "versions": payload.get("versions", {}),
        "metrics": extra.get("metrics", {}),
    }
    if extra.get("import"):  # written by `mlcl import-weights`: the source files and their code
        info["import"] = extra["import"]
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")
    return 0
