"""The `mlcl` console script: the one place that wires the packages together.

`mlcl_cli` sits above the three packages and imports downward only: the model
core `mlcl` (data, eval, info), the serving package `mlcl_executor` (serve,
index, search, demo) and the training package `training` (train); none of them
imports `mlcl_cli`, and `mlcl` imports neither of the other two
(tests/test_layering.py). Each subcommand lives in its own module under
`mlcl_cli.commands`, parses its arguments and calls into those packages; it
exposes `register(parser)`. Heavy dependencies (torch, jina, LAVIS) load only
inside the command that runs, so `mlcl --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# (subcommand, module, one-line help). Order is the order `mlcl --help` shows.
COMMANDS: list[tuple[str, str, str]] = [
    ("data", "mlcl_cli.commands.data", "generate or inspect data sets (shapes benchmark)"),
    ("train", "mlcl_cli.commands.train", "train a model from a LAVIS-style YAML config"),
    ("eval", "mlcl_cli.commands.eval", "evaluate a checkpoint with a benchmark's official protocol"),
    ("serve", "mlcl_cli.commands.serve", "start the encoder+indexer Flow (gRPC and HTTP)"),
    ("index", "mlcl_cli.commands.index", "index a folder of gallery images into a running Flow"),
    ("search", "mlcl_cli.commands.search", "run a composed (image + text) query against a running Flow"),
    ("demo", "mlcl_cli.commands.demo", "end-to-end demo on the bundled default model"),
    ("info", "mlcl_cli.commands.info", "describe a checkpoint (backbone, method, sizes, model id, versions)"),
    ("import-weights", "mlcl_cli.commands.import_weights",
     "turn a model trained with the MLCL authors' or CLIP4Cir's code into an mlcl checkpoint"),
]


def build_parser() -> argparse.ArgumentParser:
    from mlcl import __version__

    parser = argparse.ArgumentParser(
        prog="mlcl",
        description="Composed image retrieval (reference image + text modifier) with MLCL.",
    )
    parser.add_argument("--version", action="version", version=f"mlcl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # command not built yet
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.register(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if "--verbose" not in (sys.argv[1:] if argv is None else argv):
        from mlcl.known_warnings import silence_known_warnings

        silence_known_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"mlcl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
