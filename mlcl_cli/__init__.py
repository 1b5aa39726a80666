"""The `mlcl` command line: wires the core (`mlcl`), serving (`mlcl_executor`) and training (`training`).

`python -m mlcl_cli ...` is the same as the `mlcl` console script.
"""

from .cli import build_parser, main

__all__ = ["build_parser", "main"]
