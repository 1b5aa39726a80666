"""Gallery vectors on disk, tagged with the model id of the checkpoint that computed them: two file layouts.

A served encoder refuses vectors whose model id is not its own (`mlcl_executor/vectors.py`):
vectors of another checkpoint live in another space.

The model id of a checkpoint is `mlcl.model_id.checkpoint_id`.

**A pair of files** (`mlcl index --vectors FILE.npy --ids FILE.txt`): a NumPy `.npy`
matrix (n, dim) of floats and a UTF-8 text file of n ids, one per line, in row order.
The model id is given separately (`--checkpoint` or `--model-id`).

**A vector folder** (what `mlcl encode FOLDER --out DIR` writes; `mlcl index --vectors DIR`):

    DIR/mlcl-vectors.json     {"format": "mlcl-vectors", "version": 1, "model_id": ..., "dim": ..., ...}
    DIR/part-000000.npy       (n, dim) float32, unit-norm gallery vectors
    DIR/part-000000.txt       the n ids, one per line, in row order
    DIR/part-000000.norms.npy (n,) float32, the norm of each image's features, in row order
    DIR/part-000001.npy ...

The norms are what a search by gallery id needs besides the unit vector (the served
indexer stores them as `/index` does, `mlcl_executor/reference.py`). A part without a
norms file (a folder written before they were, or by another writer) still loads: its
documents are searchable by image and text, not by their gallery id.

Written part by part, each part atomically (ids first, then the norms, then the matrix,
each through a temporary file renamed into place), so a run that stops leaves only whole
parts: a part counts when its `.npy` exists and its ids (and norms, when present) match
its rows. A second run skips the ids already in the folder. No torch (numpy only).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

DIR_FORMAT = "mlcl-vectors"
DIR_VERSION = 1
META_FILE = "mlcl-vectors.json"
_PART = re.compile(r"^part-(\d{6})\.npy$")
_PART_FILE = re.compile(r"^part-(\d{6})\.(npy|txt|norms\.npy)$")  # any file of a part, whole or not


class Part(NamedTuple):
    """One part of a vector folder: ids, their (n, dim) vectors and their (n,) feature norms (None: not stored)."""

    ids: List[str]
    matrix: np.ndarray
    norms: Optional[np.ndarray]


def _read_ids(path: Path) -> List[str]:
    names = path.read_text(encoding="utf-8").splitlines()
    if names and names[-1] == "":
        names.pop()
    return names


def load_vector_files(vectors: Path, ids: Path) -> Tuple[np.ndarray, List[str]]:
    """The matrix (memory-mapped, not read whole) and the ids; ValueError names what does not match."""
    try:
        matrix = np.load(vectors, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{vectors}: not a NumPy .npy matrix ({exc})") from None
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.floating):
        raise ValueError(f"{vectors}: expected a 2-D float matrix (n, dim), got shape {matrix.shape} of {matrix.dtype}")
    names = _read_ids(Path(ids))
    if len(names) != len(matrix):
        raise ValueError(f"{ids}: {len(names)} ids for {len(matrix)} vectors in {vectors} (one id per line, in row order)")
    empty = [i + 1 for i, name in enumerate(names) if not name.strip()]
    if empty:
        raise ValueError(f"{ids}: empty id on line {empty[0]}" + (f" and {len(empty) - 1} more" if len(empty) > 1 else ""))
    if len(set(names)) != len(names):
        raise ValueError(f"{ids}: ids must be unique")
    return matrix, names


class VectorDir:
    """A vector folder (see the module docstring), opened to read its parts or to add more."""

    def __init__(self, path: str | os.PathLike, meta: Dict[str, Any]) -> None:
        self.path, self.meta = Path(path), meta

    @property
    def model_id(self) -> str:
        return str(self.meta["model_id"])

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    # ------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike) -> "VectorDir":
        """An existing vector folder; ValueError when `path` is not one."""
        meta_path = Path(path) / META_FILE
        if not meta_path.is_file():
            raise ValueError(f"{path}: not a vector folder (no {META_FILE}; `mlcl encode FOLDER --out DIR` writes one)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{meta_path}: unreadable ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != DIR_FORMAT or "model_id" not in meta or "dim" not in meta:
            raise ValueError(f"{meta_path}: not an {DIR_FORMAT} description (format, model_id, dim)")
        if int(meta.get("version", 0)) > DIR_VERSION:
            raise ValueError(f"{meta_path}: version {meta['version']} is newer than this mlcl reads ({DIR_VERSION})")
        return cls(path, meta)

    @classmethod
    def create_or_resume(cls, path: str | os.PathLike, model_id: str, dim: int, **meta: Any) -> "VectorDir":
        """A folder to write to: new (created), or one of the same model to add to; ValueError when it holds
        another model's vectors (they cannot be mixed) or is not a vector folder but not empty either."""
        path = Path(path)
        if (path / META_FILE).is_file():
            found = cls.open(path)
            if found.model_id != model_id or found.dim != int(dim):
                raise ValueError(f"{path} holds vectors of model {found.model_id} (dim {found.dim}); this model is "
                                 f"{model_id} (dim {dim}): vectors of two models cannot be mixed, use another --out")
            return found
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ValueError(f"{path} exists and is not a vector folder: give an empty or new folder")
        path.mkdir(parents=True, exist_ok=True)
        described = {"format": DIR_FORMAT, "version": DIR_VERSION, "model_id": model_id, "dim": int(dim), **meta}
        _write_atomic(path / META_FILE, json.dumps(described, indent=2).encode("utf-8"))
        return cls(path, described)

    # ------------------------------------------------------------ reading
    def part_numbers(self) -> List[int]:
        """The numbers of the whole parts, in order (a part without its ids, or not matching them, is skipped)."""
        numbers = sorted(int(m.group(1)) for f in self.path.iterdir() if (m := _PART.match(f.name)))
        return [n for n in numbers if self._ids_path(n).is_file()]

    def _npy_path(self, n: int) -> Path:
        return self.path / f"part-{n:06d}.npy"

    def _ids_path(self, n: int) -> Path:
        return self.path / f"part-{n:06d}.txt"

    def _norms_path(self, n: int) -> Path:
        return self.path / f"part-{n:06d}.norms.npy"

    def _norms(self, n: int, rows: int) -> Optional[np.ndarray]:
        """Part n's feature norms (memory-mapped), None when it has none; ValueError when they do not fit its rows.
        Their values are checked where they are used (the served encoder's block check, `vectors.py`)."""
        path = self._norms_path(n)
        if not path.is_file():
            return None
        try:
            norms = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a NumPy .npy array ({exc})") from None
        if norms.shape != (rows,) or not np.issubdtype(norms.dtype, np.floating):
            raise ValueError(f"{path}: expected {rows} float norms (one per vector), got shape {norms.shape} of {norms.dtype}")
        return norms

    def parts(self) -> Iterator[Part]:
        """(ids, matrix, norms) per part, in order; arrays memory-mapped. ValueError names a part that is damaged
        or an id that is in two parts."""
        seen: set = set()
        for n in self.part_numbers():
            matrix, ids = load_vector_files(self._npy_path(n), self._ids_path(n))
            if matrix.shape[1] != self.dim:
                raise ValueError(f"{self._npy_path(n)}: vectors of width {matrix.shape[1]}, the folder says {self.dim}")
            twice = seen.intersection(ids)
            if twice:
                raise ValueError(f"{self._ids_path(n)}: id {sorted(twice)[0]!r} is also in an earlier part")
            seen.update(ids)
            yield Part(ids, matrix, self._norms(n, len(ids)))

    def ids(self) -> List[str]:
        """Every id stored, in part order (reads the id files only)."""
        out: List[str] = []
        for n in self.part_numbers():
            out += _read_ids(self._ids_path(n))
        return out

    def load(self) -> Tuple[np.ndarray, List[str]]:
        """All vectors as one (n, dim) float32 matrix (read into memory) and their ids."""
        ids: List[str] = []
        blocks = []
        for part_ids, matrix, _ in self.parts():
            ids += part_ids
            blocks.append(np.asarray(matrix, dtype=np.float32))
        return (np.concatenate(blocks) if blocks else np.zeros((0, self.dim), np.float32)), ids

    def __len__(self) -> int:
        return len(self.ids())

    # ------------------------------------------------------------ writing
    def write_part(self, ids: Sequence[str], vectors: np.ndarray, norms: Optional[np.ndarray] = None) -> Path:
        """Add a part (ids in row order, and each vector's feature norm when given); returns its `.npy` path.
        The part appears whole or not at all: its matrix, written last, makes it count."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(ids), self.dim):
            raise ValueError(f"a part of {len(ids)} ids needs vectors of shape ({len(ids)}, {self.dim}), got {vectors.shape}")
        if norms is not None:
            norms = np.ascontiguousarray(norms, dtype=np.float32)
            if norms.shape != (len(ids),):
                raise ValueError(f"a part of {len(ids)} ids needs {len(ids)} norms, got shape {norms.shape}")
        bad = [i for i in ids if not i.strip() or "\n" in i or "\r" in i]
        if bad:
            raise ValueError(f"id {bad[0]!r} cannot be stored one per line")
        numbers = sorted(int(m.group(1)) for f in self.path.iterdir() if (m := _PART_FILE.match(f.name)))
        n = numbers[-1] + 1 if numbers else 0
        _write_atomic(self._ids_path(n), ("\n".join(ids) + "\n").encode("utf-8"))
        if norms is not None:
            _save_atomic(self._norms_path(n), norms)
        _save_atomic(self._npy_path(n), vectors)
        return self._npy_path(n)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def is_vector_dir(path: Optional[str | os.PathLike]) -> bool:
    return path is not None and (Path(path) / META_FILE).is_file()


__all__ = ["DIR_FORMAT", "META_FILE", "Part", "VectorDir", "is_vector_dir", "load_vector_files"]
