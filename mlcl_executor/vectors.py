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

Files for `mlcl index --vectors` (which sends such blocks): a vector folder
written by `mlcl encode FOLDER --out DIR` (it names its model id), or a NumPy
`.npy` matrix (n, dim) with a UTF-8 text file of n ids, one per line, in the
matrix's row order; both described in `mlcl/vector_files.py`.
"""

from __future__ import annotations

from mlcl.vector_files import checkpoint_id, load_vector_files  # one definition, shared with `mlcl encode`

MODEL_TAG = "mlcl_model"


__all__ = ["MODEL_TAG", "checkpoint_id", "load_vector_files"]
