"""The model id of a checkpoint file: which vector space its vectors live in.

Two checkpoints give comparable vectors only if they are the same weights, so
the id is a digest of the file itself: the first 16 hex digits of its SHA-256.
The encoder logs it at start-up and checks it on vectors sent in bulk
(`mlcl_executor.vectors`); `mlcl info` prints it. Plain Python (no torch), so
any layer can call it cheaply.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=8)
def _file_id(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def checkpoint_id(path: str | Path) -> str:
    """The model id of a checkpoint file: 16 hex digits of its SHA-256 (cached per file version)."""
    stat = Path(path).stat()
    return _file_id(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


__all__ = ["checkpoint_id"]
