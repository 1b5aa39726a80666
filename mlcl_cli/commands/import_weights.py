"""`mlcl import-weights`: a model trained with the MLCL authors' or CLIP4Cir's code, as an mlcl checkpoint.

    mlcl import-weights --from mlcl-authors --clip tuned_clip_best.pt --combiner combiner.pt \\
        --backbone RN50x4 --out model.pt
    mlcl import-weights --from clip4cir --clip RN50x4.pt --combiner combiner.pt --backbone RN50x4 --out c4c.pt
    mlcl import-weights --from mlcl-authors --clip image_tuned.pt --clip-text text_tuned.pt ...

The checkpoint it writes is what `mlcl serve`, `mlcl eval`, `mlcl info` and
stage-2 training (`--init-from`, `model.load_from`) take; see docs/training.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    from mlcl.weight_sources import TRANSFORMS, import_sources

    sources = import_sources()
    parser.add_argument("--from", dest="source", required=True, choices=list(sources),
                        help="the code that trained the model: " + "; ".join(f"{k}: {v['description']}"
                                                                          for k, v in sources.items()))
    parser.add_argument("--clip", required=True, type=Path,
                        help="CLIP weights: OpenAI's release file (e.g. RN50x4.pt) or the fine-tuned {'CLIP': ...} file")
    parser.add_argument("--clip-text", type=Path,
                        help="take the text encoder from this CLIP file instead (the authors fine-tune each encoder "
                             "in its own run)")
    parser.add_argument("--combiner", required=True, type=Path, help="the {'Combiner': ...} file (combiner.pt)")
    parser.add_argument("--backbone", required=True, help="the CLIP architecture, as the source names it (e.g. RN50x4)")
    parser.add_argument("--out", required=True, type=Path, help="the mlcl checkpoint to write")
    parser.add_argument("--transform", choices=list(TRANSFORMS), default="targetpad",
                        help="the preprocessing the source was trained with (default: targetpad)")
    parser.add_argument("--target-ratio", type=float, default=1.25, help="targetpad's ratio (default 1.25)")
    parser.add_argument("--weighting", choices=("train", "released"),
                        help="inference level weights (default: those of the source's inference code)")
    parser.add_argument("--half", action="store_true", help="store the weights as float16 (half the file size)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.force:
        print(f"mlcl import-weights: {args.out} exists (--force overwrites it)", file=sys.stderr)
        return 2
    from mlcl.model import save_checkpoint
    from mlcl.model.import_weights import import_weights
    from mlcl.model_id import checkpoint_id

    try:
        model, info = import_weights(
            args.source, clip=args.clip, combiner=args.combiner, backbone=args.backbone, clip_text=args.clip_text,
            transform=args.transform, target_ratio=args.target_ratio, inference_weighting=args.weighting,
        )
    except (FileNotFoundError, ValueError) as exc:  # WeightsError is a ValueError: one line names the problem
        print(f"mlcl import-weights: {exc}", file=sys.stderr)
        return 2
    path = save_checkpoint(model, args.out, extra={"import": info}, half=args.half)
    size_mb = path.stat().st_size / 2**20
    print(f"wrote {path} ({size_mb:.0f} MB): {info['backbone']}, method {model.method.name}, "
          f"weighting {model.inference_weighting}, target pad {info['target_pad_ratio']}, "
          f"model id {checkpoint_id(path)}")
    return 0
