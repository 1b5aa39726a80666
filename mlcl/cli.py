"""The `mlcl` console script.

Each subcommand lives in its own module under `mlcl.commands` and exposes
`register(subparsers)`; modules are imported lazily so `mlcl --help` stays
fast and a subcommand's heavy dependencies (jina, LAVIS) load only when used.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# (subcommand, module, one-line help). Order is the order `mlcl --help` shows.
COMMANDS: list[tuple[str, str, str]] = [
    ("data", "mlcl.commands.data", "generate or inspect data sets (shapes benchmark)"),
    ("train", "mlcl.commands.train", "train a model from a LAVIS-style YAML config"),
    ("eval", "mlcl.commands.eval", "evaluate a checkpoint with a benchmark's official protocol"),
    ("serve", "mlcl.commands.serve", "start the encoder+indexer Flow (gRPC and HTTP)"),
    ("index", "mlcl.commands.index", "index a folder of gallery images into a running Flow"),
    ("search", "mlcl.commands.search", "run a composed (image + text) query against a running Flow"),
    ("demo", "mlcl.commands.demo", "end-to-end demo on the bundled default model"),
    ("info", "mlcl.commands.info", "describe a checkpoint (backbone, method, sizes, versions)"),
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
