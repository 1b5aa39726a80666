"""Where mlcl keeps generated data and downloaded/bundled weights."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The embedded default model trained on the shapes benchmark (see its model card).
DEFAULT_CHECKPOINT = PACKAGE_DIR / "weights" / "mlcl-shapes-tiny.pt"


def mlcl_home() -> Path:
    """Root for caches and generated data: $MLCL_HOME, else ~/.cache/mlcl."""
    return Path(os.environ.get("MLCL_HOME", Path.home() / ".cache" / "mlcl")).expanduser()


def default_data_dir(name: str) -> Path:
    """Default location of a generated or downloaded data set called `name`."""
    return mlcl_home() / "data" / name
