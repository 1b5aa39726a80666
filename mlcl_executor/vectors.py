"""Gallery vectors computed elsewhere (a GPU batch job, another replica): the model id and the file format.

A gallery document that arrives at `/index` or `/update` with an `embedding`
and no `image` skips the encoder's model work, if its `tags` name the model
that computed it: `tags["mlcl_model"]` must equal the encoder's model id,
`checkpoint_id(checkpoint)` (the first 16 hex digits of the checkpoint file's
SHA-256; the encoder logs it at start-up). A vector from another checkpoint
lives in another vector space: it gets `error` instead of mixing in silently.
The encoder drops the tag once checked (stored tags are the client's own).

In bulk, one document per vector is slow (docarray (de)serialises each one,
~0.1 ms, in every process on the way): the `/index_vectors` endpoint takes
`VectorsDoc` blocks instead (`ids`, an (n, dim) `embeddings` matrix and the
`model` id), checked the same way by the encoder and upserted by the indexer.

Files for `mlcl index --vectors FILE.npy --ids FILE.txt` (which sends such
blocks): a NumPy `.npy` matrix (n, dim), float32 (or any float type; it is
sent as float32), and a UTF-8 text file of n ids, one per line, in the
matrix's row order.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np

from mlcl.model_id import checkpoint_id  # one definition, shared with the core and the CLI

MODEL_TAG = "mlcl_model"


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


__all__ = ["MODEL_TAG", "checkpoint_id", "load_vector_files"]
