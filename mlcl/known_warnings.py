"""Third-party warnings a healthy run raises, silenced one by one by message (never a blanket ignore).

Each entry is (category, regular expression matching the start of the message).
`--verbose` on a command skips the filters.
"""

from __future__ import annotations

import warnings
from typing import List, Tuple, Type

KNOWN_WARNINGS: List[Tuple[Type[Warning], str]] = [
    # open_clip's model code calls torch.jit.script when a model is built
    (FutureWarning, r"`torch\.jit\.script` is deprecated"),
    # jina's hub SDK imports pkg_resources (setuptools >= 67.5 warns; torch 2.14 needs setuptools >= 77)
    (UserWarning, r"pkg_resources is deprecated as an API"),
    (DeprecationWarning, r"pkg_resources"),
    # jina imports a gateway's py_modules in the Flow's process and again in the (forked) gateway
    (UserWarning, r"\s*jina_register shadows one of built-in Python module name"),
]


def silence_known_warnings() -> None:
    """Install the filters (inherited by processes forked afterwards)."""
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


__all__ = ["KNOWN_WARNINGS", "silence_known_warnings"]
