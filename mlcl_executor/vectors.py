"""Vectors: the one check of a vector's shape and values, and gallery vectors computed elsewhere (model id, files).

`vector_problem` (one vector or a matrix) and `bad_rows` (its batched form for
stores) are the only vector checks of the serving package: the encoder, the
indexer and the stores call them, so a vector is judged the same everywhere.

Gallery vectors computed elsewhere (a GPU batch job, another replica):

A gallery document that arrives at `/index` or `/update` with an `embedding`
and no `image` skips the encoder's model work, if its `tags` name the model
that computed it: `tags["mlcl_model"]` must equal the encoder's model id,
`checkpoint_id(checkpoint)` (the first 16 hex digits of the checkpoint file's
SHA-256; `mlcl serve` prints it at start-up). A vector from another checkpoint
lives in another vector space: it gets `error` instead of mixing in silently.
The encoder drops the tag once checked (stored tags are the client's own).

In bulk, one document per vector is slow (docarray (de)serialises each one
in every process on the way): the `/index_vectors` endpoint takes
`VectorsDoc` blocks instead (`ids`, an (n, dim) `embeddings` matrix and the
`model` id), checked the same way by the encoder and upserted by the indexer.

Files for `mlcl index --vectors FILE.npy --ids FILE.txt` (which sends such
blocks): a NumPy `.npy` matrix (n, dim), float32 (or any float type; it is
sent as float32), and a UTF-8 text file of n ids, one per line, in the
matrix's row order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np

from mlcl.model_id import checkpoint_id  # one definition, shared with the core and the CLI

MODEL_TAG = "mlcl_model"


def vector_problem(value: Any, width: Optional[int] = None, rows: Optional[int] = None, nonzero: bool = False) -> Optional[str]:
    """Why `value` cannot be used as one vector (`rows` None) or as a matrix of `rows` vectors; None when it can.

    `width`: the width it must have (None: any). `nonzero`: an all-zero vector has no
    direction to compare, refused where vectors are stored. The answer follows the
    thing's name in a message: f"{name}: embedding {problem}".
    """
    try:
        vec = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        return f"is not numeric ({type(value).__name__})"
    expected_ndim = 1 if rows is None else 2
    if vec.ndim != expected_ndim or (width is not None and vec.shape[-1] != width) or (rows is not None and len(vec) != rows):
        shape = f"({width if width is not None else 'dim'},)" if rows is None else f"({rows}, {width if width is not None else 'dim'})"
        return f"of shape {tuple(vec.shape)}, expected {shape}"
    if not np.isfinite(vec).all():
        return "has NaN or infinite values"
    if nonzero and len(bad_rows(vec.reshape(-1, vec.shape[-1]))):
        return "is all zero (no direction to compare)"
    return None


def bad_rows(matrix: np.ndarray) -> np.ndarray:
    """Positions of the rows of an (n, dim) matrix that are not finite or all zero (one batched pass)."""
    norms = np.linalg.norm(matrix, axis=1)
    return np.flatnonzero(~np.isfinite(norms) | (norms == 0))


def model_problem(model: Optional[str], expected: str) -> Optional[str]:
    """Why vectors tagged with model id `model` cannot join an index of model `expected`; None when they can."""
    if model == expected:
        return None
    return f"this encoder's model is {expected!r} (vectors of another model cannot be mixed in; send the images instead)"


def load_vector_files(vectors: Path, ids: Path) -> Tuple[np.ndarray, List[str]]:
    """The matrix (memory-mapped, not read whole) and the ids; ValueError names what does not match."""
    try:
        matrix = np.load(vectors, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{vectors}: not a NumPy .npy matrix ({exc})") from None
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.floating):
        raise ValueError(f"{vectors}: expected a 2-D float matrix (n, dim), got shape {matrix.shape} of {matrix.dtype}")
    names = ids.read_text(encoding="utf-8").splitlines()
    if names and names[-1] == "":
        names.pop()
    if len(names) != len(matrix):
        raise ValueError(f"{ids}: {len(names)} ids for {len(matrix)} vectors in {vectors} (one id per line, in row order)")
    empty = [i + 1 for i, name in enumerate(names) if not name.strip()]
    if empty:
        raise ValueError(f"{ids}: empty id on line {empty[0]}" + (f" and {len(empty) - 1} more" if len(empty) > 1 else ""))
    if len(set(names)) != len(names):
        raise ValueError(f"{ids}: ids must be unique")
    return matrix, names


__all__ = ["MODEL_TAG", "bad_rows", "checkpoint_id", "load_vector_files", "model_problem", "vector_problem"]
