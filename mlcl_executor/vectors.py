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
The encoder answers with its own model id on every vector it passes on (the
tag on gallery documents, `QueryDoc.model` on queries): the indexer checks it
against the model its workspace records (`workspace_model.py`) and does not
store the tag (stored tags are the client's own).

In bulk, one document per vector is slow (docarray (de)serialises each one
in every process on the way): the `/index_vectors` endpoint takes
`VectorsDoc` blocks instead (`ids`, an (n, dim) `embeddings` matrix and the
`model` id), checked the same way by the encoder and upserted by the indexer.
A block may carry `norms`, each image's feature norm (`mlcl encode` writes
them): checked by `norms_problem` and stored as `/index` stores them
(`reference.py`), so its documents can be searched by gallery id.

Files for `mlcl index --vectors` (which sends such blocks): a vector folder
written by `mlcl encode FOLDER --out DIR` (it names its model id), or a NumPy
`.npy` matrix (n, dim) with a UTF-8 text file of n ids, one per line, in the
matrix's row order; both described in `mlcl/vector_files.py`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from mlcl.model_id import checkpoint_id  # one definition, shared with the core and the CLI
from mlcl.vector_files import load_vector_files  # one definition, shared with `mlcl encode`

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


def norms_problem(norms: Any, ids: Sequence[str]) -> Optional[str]:
    """Why `norms` cannot be the feature norms of the vectors of `ids` (one each, finite, > 0); None when they can.

    The answer follows the block's name in a message and names the first bad row's id."""
    try:
        values = np.asarray(norms, dtype=np.float64)
    except (TypeError, ValueError):
        return f"norms are not numeric ({type(norms).__name__})"
    if values.shape != (len(ids),):
        return f"norms of shape {tuple(values.shape)}, expected ({len(ids)},) (one per id)"
    bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
    if len(bad):
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return f"norm of id {ids[bad[0]]!r} is {values[bad[0]]}{more}: a feature norm is finite and > 0"
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


__all__ = ["MODEL_TAG", "bad_rows", "checkpoint_id", "load_vector_files", "model_problem", "norms_problem", "vector_problem"]
