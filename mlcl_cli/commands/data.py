"""`mlcl data ...`: generate data sets. For now one: the synthetic shapes benchmark.

    mlcl data shapes --out DIR [--seed N] [--size PIXELS] [--splits test] [--n-test 2000]

Heavy imports (Pillow, numpy) happen only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SPLITS = ("train", "val", "test", "novel", "hard")  # = mlcl.data.shapes.config.SPLITS, kept here to import nothing


def _split_list(text: str) -> list[str]:
    """'train,val' or 'test' -> list of split names (argparse type)."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SPLITS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown split(s) {', '.join(bad) or text!r}; choose from {', '.join(SPLITS)}")
    return names


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `shapes` sub-command to the `mlcl data` parser."""
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET")
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])

    p = sub.add_parser(
        "shapes",
        help="generate the synthetic shapes benchmark (CSS-like scenes + modification texts)",
        description=(
            "Generate the shapes benchmark: scenes of 1-5 coloured shapes on a 3x3 grid, "
            "rendered with Pillow, with modification captions (the hard split: 6-8 shapes, up to two edits). "
            "Deterministic from --seed; "
            "each split is identical whether generated alone or with the others. See docs/shapes.md."
        ),
    )
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output root (default: $MLCL_HOME/data/shapes-seed<N>-<PIXELS>px, "
                        "MLCL_HOME defaulting to ~/.cache/mlcl)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--size", type=int, default=64, metavar="PIXELS", help="image side in pixels (default: 64)")
    for split, n in (("train", 20000), ("val", 2000), ("test", 2000), ("novel", 2000), ("hard", 2000)):
        p.add_argument(f"--n-{split}", type=int, default=None, metavar="N",
                       help=f"{split} triplets (default: {n})")
    p.add_argument("--splits", type=_split_list, action="extend", default=None, metavar="SPLIT[,SPLIT]",
                   help="splits to write, comma-separated or repeated (default: all five)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPUs, at most 8)")
    p.add_argument("--baselines", action="store_true",
                   help="also print the text-only / image-only oracle recalls of the evaluation splits")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_shapes)


def run_shapes(args: argparse.Namespace) -> int:
    from mlcl.data.shapes import ShapesDataset, default_root, generate_shapes

    sizes = {s: getattr(args, f"n_{s}") for s in SPLITS if getattr(args, f"n_{s}") is not None}
    bad = {s: n for s, n in sizes.items() if n < 1}
    if bad:
        print(f"mlcl data shapes: split sizes must be positive, got {bad}", file=sys.stderr)
        return 2
    splits = list(dict.fromkeys(args.splits)) if args.splits else list(SPLITS)
    out = args.out if args.out is not None else default_root(args.seed, args.size)
    try:
        root = generate_shapes(out, seed=args.seed, image_size=args.size, sizes=sizes, splits=splits,
                               workers=args.workers, progress=not args.quiet)
    except ValueError as exc:  # bad size or split: say what is wrong, no traceback
        print(f"mlcl data shapes: {exc}", file=sys.stderr)
        return 2
    print(f"shapes benchmark (seed {args.seed}, {args.size}px) at {root}")
    for split in splits:
        ds = ShapesDataset(root, split)
        print(f"  {split:5s}: {len(ds):6d} triplets, {len(ds.image_names):6d} images, gallery {len(ds.gallery)}")
    if args.baselines:
        from mlcl.data.shapes.baselines import oracle_baselines

        for split in splits:
            if split in ("train", "hard"):  # no gallery / captions the oracle's parser reads (two edits)
                continue
            res = oracle_baselines(ShapesDataset(root, split))
            for method, recalls in res.items():
                cells = "  ".join(f"{k} {v:5.1f}" for k, v in recalls.items())
                print(f"  {split:5s} {method:15s} {cells}")
    return 0
