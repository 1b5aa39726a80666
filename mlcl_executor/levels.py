"""Per-level answers: what each fusion level of MLCL alone returns for a composed query.

`/search` with `parameters: {"levels": true}` fills, beside the fused answer
(`matches`, `scores`), each composed query's `levels`: one `LevelDoc` per
fusion level of the model's method, in the order low (`sum`), mid (`cat`),
high (`hybrid`), each with its own top-`limit` `matches` and `scores`.
The encoder computes the level vectors in the same model call as the fused
one (`pipeline.py`); the indexer searches them in the same store call as the fused vectors,
and answers them with the same rule (`topk.py`); a sharded Flow's merger
merges them as it merges the fused answer. Image-only and text-only queries
have no levels (their `levels` stay empty).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from docarray import DocList

from .schemas import LevelDoc, QueryDoc

#: Model level name -> the name answers use.
LEVEL_NAMES = {"sum": "low", "cat": "mid", "hybrid": "high"}
LEVEL_ORDER = ("sum", "cat", "hybrid")


def level_docs(vectors: Mapping[str, np.ndarray]) -> DocList[LevelDoc]:
    """A composed query's `levels` from its level vectors (by the model's level name), low to high."""
    return DocList[LevelDoc](LevelDoc(level=LEVEL_NAMES[k], embedding=vectors[k]) for k in LEVEL_ORDER if k in vectors)


def drop_level_vectors(docs: Sequence[QueryDoc]) -> None:
    for doc in docs:
        for level in doc.levels or []:
            level.embedding = None


__all__ = ["LEVEL_NAMES", "LEVEL_ORDER", "drop_level_vectors", "level_docs"]
