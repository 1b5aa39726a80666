"""`mlcl demo`: the whole serving path on the bundled model, end to end, in about a minute.

    mlcl demo                         # shapes test gallery, 5 queries shown, contact sheet PNG
    mlcl demo --gallery 3000 -k 5 --out outputs/demo.png
    mlcl demo --serve                 # then keep the Flow up: the search page at http://localhost:PORT/ui/

The work (the Flow, the queries, the printout) is `mlcl_cli.demo.run_demo`;
the contact sheet is `mlcl.viz.contact_sheet`. This module parses and calls.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlcl_cli.commands.serve import add_flow_arguments, flow_overrides


def register(parser: argparse.ArgumentParser) -> None:
    add_flow_arguments(parser, free_ports=True)
    parser.add_argument("--data-root", type=Path, help="shapes data folder (generated if missing; default: mlcl's cache)")
    parser.add_argument("--gallery", type=int, default=6000,
                        help="gallery images to index, whole query groups (default: 6000; 0: the full test gallery)")
    parser.add_argument("--queries", type=int, default=5, help="queries shown (default: 5)")
    parser.add_argument("--eval-queries", type=int, default=200, help="queries scored for the recall line (default: 200)")
    parser.add_argument("-k", "--limit", type=int, default=10, help="results per query (default: 10)")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo.png"), help="contact sheet PNG (default: outputs/demo.png)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per /index request (default: 256)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--serve", action="store_true",
                        help="keep the Flow up afterwards, with the search page at http://localhost:PORT/ui/ (Ctrl-C stops)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mlcl.paths import DEFAULT_CHECKPOINT

    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    if not checkpoint.is_file():
        print(f"mlcl demo: model {checkpoint} not found (the bundled model ships with the package; "
              "or pass --checkpoint FILE)", file=sys.stderr)
        return 2
    args.checkpoint = checkpoint

    from mlcl_cli.demo import DemoOptions, run_demo

    same = run_demo(DemoOptions(
        checkpoint=checkpoint, data_root=args.data_root, gallery=args.gallery, queries=args.queries,
        eval_queries=args.eval_queries, limit=args.limit, out=args.out, batch_size=args.batch_size,
        progress=not args.no_progress, grpc_port=args.grpc_port, http_port=args.http_port, verbose=args.verbose,
        overrides=flow_overrides(args), serve=args.serve,
    ))
    return 0 if same else 1
