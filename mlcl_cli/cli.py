"""The `mlcl` console script: the one place that wires the packages together.

`mlcl_cli` sits above the three packages and imports downward only: the model
core `mlcl` (data, eval, info), the serving package `mlcl_executor` (serve,
index, search, demo) and the training package `training` (train); none of them
imports `mlcl_cli`, and `mlcl` imports neither of the other two
(tests/test_layering.py). Each subcommand lives in its own module under
`mlcl_cli.commands`, parses its arguments and calls into those packages; it
exposes `register(parser)`. What serves a person at a terminal is here too:
`launcher.py` (checks, a quiet log, a supervised start and stop), `flows.py`
and `resources.py` (a Flow from its YAML, the YAMLs of a checkout or of the
installed package), `client.py` (gRPC and HTTP clients), `demo.py`. Heavy
dependencies (torch, jina, LAVIS) load only inside the command that runs, so
`mlcl --help` stays fast.

A bad file or argument ends a command with one line, not a traceback: a
command raises `UserError` (or a file error, or jina_patches' `JinaMismatch`)
and `main` prints `mlcl COMMAND: <why>` and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# (subcommand, module or "module:register_function", one-line help). Order is the order `mlcl --help` shows.
COMMANDS: list[tuple[str, str, str]] = [
    ("data", "mlcl_cli.commands.data", "generate or inspect data sets (shapes benchmark)"),
    ("train", "mlcl_cli.commands.train", "train a model from a LAVIS-style YAML config"),
    ("eval", "mlcl_cli.commands.eval", "evaluate a checkpoint with a benchmark's official protocol"),
    ("serve", "mlcl_cli.commands.serve", "start the encoder+indexer Flow (gRPC and HTTP)"),
    ("index", "mlcl_cli.commands.index", "index a folder of gallery images into a running Flow"),
    ("encode", "mlcl_cli.commands.encode", "encode a folder of gallery images to a vector folder, offline (resumable)"),
    ("search", "mlcl_cli.commands.search", "run a composed (image + text) query against a running Flow"),
    ("count", "mlcl_cli.commands.gallery:register_count", "how many documents a running Flow's index holds (and its model id)"),
    ("delete", "mlcl_cli.commands.gallery:register_delete", "delete gallery documents by id or by id prefix"),
    ("clear", "mlcl_cli.commands.gallery:register_clear", "delete every gallery document (asks first)"),
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
        p = sub.add_parser(name, help=help_text, description=help_text)
        module_name, _, function = module_name.partition(":")  # "module" (its register) or "module:function"
        getattr(importlib.import_module(module_name), function or "register")(p)
    return parser


class UserError(Exception):
    """A bad file or argument: `main` prints `mlcl COMMAND: <the message>` (one line) and exits with status 2."""


#: Errors that end a command with one line, not a traceback: a user's mistake, a file that is not there or
#: cannot be read, an installed jina that mlcl's fixes were not written for (its message says what to pin).
ONE_LINE_ERRORS = (UserError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def main(argv: Sequence[str] | None = None) -> int:
    if "--verbose" not in (sys.argv[1:] if argv is None else argv):
        from mlcl.known_warnings import silence_known_warnings

        silence_known_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from mlcl_cli.launcher import FlowStartError
    from mlcl_executor.jina_patches.check import JinaMismatch

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"mlcl {args.command}: interrupted", file=sys.stderr)
        return 130
    except (*ONE_LINE_ERRORS, JinaMismatch) as exc:
        print(f"mlcl {args.command}: {one_line(exc)}", file=sys.stderr)
        return 2
    except FlowStartError as exc:
        print(f"mlcl {args.command}: {exc}", file=sys.stderr)
        return 1


def one_line(exc: BaseException) -> str:
    """The message of a one-line error (an OSError says what and which file)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
