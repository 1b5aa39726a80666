"""Which files are gallery images, and the id each one gets: one answer for `mlcl index` and `mlcl encode`.

A document's id is its path relative to the folder given, with its extension
(`gallery/` given: `gallery/shirts/a.png` is `shirts/a.png`); a file named on
its own gets its file name. So vectors written by `mlcl encode FOLDER` carry
the ids `mlcl index FOLDER` would give the same images. No torch, no PIL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")


def image_files(paths: Iterable[str | os.PathLike], recursive: bool = True) -> List[Path]:
    """Image files named by `paths` (files, or folders searched for images), sorted, no duplicates."""
    found: Dict[Path, None] = {}
    for p in map(Path, paths):
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            for f in sorted(p.glob(pattern)):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    found[f.resolve()] = None
        elif p.is_file():
            found[p.resolve()] = None
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return list(found)


def gallery_items(paths: Iterable[str | os.PathLike], recursive: bool = True) -> List[Tuple[str, Path]]:
    """(id, file) pairs, sorted by id: ids relative to the folder given (see the module docstring), unique."""
    pairs: Dict[str, Path] = {}
    for p in map(Path, paths):
        base = p.resolve() if p.is_dir() else p.resolve().parent
        for f in image_files([p], recursive=recursive):
            pairs.setdefault(f.relative_to(base).as_posix(), f)
    return sorted(pairs.items())


__all__ = ["IMAGE_SUFFIXES", "gallery_items", "image_files"]
