"""Per-level answers: what each fusion level of MLCL alone returns for a composed query.

`/search` with `parameters: {"levels": true}` fills, beside the fused answer
(`matches`, `scores`), each composed query's `levels`: one `LevelDoc` per
fusion level of the model's method, in the order low (`sum`), mid (`cat`),
high (`hybrid`), each with its own top-`limit` `matches` and `scores`.
The encoder computes the level vectors in the same model call as the fused
one; the indexer searches them all in one store call. Image-only and
text-only queries have no levels (their `levels` stay empty).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from docarray import DocList

from .schemas import LevelDoc, LevelMatchDoc, QueryDoc
from .thumbnails import match_tags

#: Model level name -> the name answers use.
LEVEL_NAMES = {"sum": "low", "cat": "mid", "hybrid": "high"}
LEVEL_ORDER = ("sum", "cat", "hybrid")


def param_flag(parameters: Optional[Mapping[str, Any]], key: str, default: bool = False) -> bool:
    """A boolean request parameter (JSON true/false, or "true"/"1"/"yes"/"on" as text)."""
    value = (parameters or {}).get(key, default)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def encode_with_levels(model: Any, images: Any, texts: Sequence[str]) -> Tuple[np.ndarray, List[DocList[LevelDoc]]]:
    """Fused query vectors [B, D] and, per row, the level vectors as `LevelDoc`s (one model call)."""
    out = model.encode_query_levels(images, texts)
    fused = out["fused"].float().cpu().numpy()
    per_level = {k: v.float().cpu().numpy() for k, v in out.items() if k in LEVEL_NAMES}
    names = [k for k in LEVEL_ORDER if k in per_level]
    rows = [DocList[LevelDoc](LevelDoc(level=LEVEL_NAMES[k], embedding=per_level[k][r]) for k in names)
            for r in range(fused.shape[0])]
    return fused, rows


def search_levels(
    search: Callable[[np.ndarray, int], Sequence[Sequence[Tuple[Any, float]]]],
    docs: Sequence[QueryDoc],
    limit: int,
    exclude_reference: bool,
    thumbnails: bool,
) -> None:
    """Fill `matches`/`scores` of every level of every query that has level vectors, in place.

    `search(vectors, k)` is the store's search: per row, (stored doc, score) best
    first. Level vectors are dropped from the answer either way.
    """
    todo: List[Tuple[QueryDoc, LevelDoc]] = []
    for doc in docs:
        for level in doc.levels or []:
            level.matches, level.scores = DocList[LevelMatchDoc](), []
            if level.embedding is not None and not doc.error:
                todo.append((doc, level))
    if todo:
        vectors = np.stack([np.asarray(level.embedding, dtype=np.float32) for _, level in todo])
        hits = search(vectors, limit + (1 if exclude_reference else 0))
        for (doc, level), row_hits in zip(todo, hits):
            skip = doc.reference_id if exclude_reference else None
            kept = [(m, s) for m, s in row_hits if m.id != skip][:limit]
            level.matches = DocList[LevelMatchDoc](
                [LevelMatchDoc(id=m.id, uri=m.uri, tags=match_tags(m.tags, thumbnails), score=float(s)) for m, s in kept]
            )
            level.scores = [float(s) for _, s in kept]
    drop_level_vectors(docs)


def drop_level_vectors(docs: Sequence[QueryDoc]) -> None:
    for doc in docs:
        for level in doc.levels or []:
            level.embedding = None


def merge_levels(doc: QueryDoc, others: Sequence[Optional[QueryDoc]], limit: int) -> None:
    """Sharded indexers: each level's global top-`limit` from the shards' lists (as the fused answer)."""
    pools: Dict[str, List[Tuple[float, LevelMatchDoc]]] = {}
    order: List[str] = []
    for source in [doc, *others]:
        for level in (source.levels if source is not None else None) or []:
            if level.level not in pools:
                pools[level.level] = []
                order.append(level.level)
            pools[level.level].extend(zip(level.scores, level.matches))
    merged = []
    for name in order:
        pairs = sorted(pools[name], key=lambda p: (-p[0], p[1].id))[:limit]
        merged.append(LevelDoc(level=name, matches=DocList[LevelMatchDoc]([m for _, m in pairs]), scores=[float(s) for s, _ in pairs]))
    doc.levels = DocList[LevelDoc](merged)


__all__ = ["LEVEL_NAMES", "drop_level_vectors", "encode_with_levels", "merge_levels", "param_flag", "search_levels"]
