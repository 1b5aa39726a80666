"""The one merge of ranked lists: a store's hits, the shards' answers, each fusion level's answers.

Every answer of `/search` (the fused one and each level's, from one store or from
all shards) is cut by `top_k`, so they follow one rule: best score first, equal
scores in id order, at most `limit`, and the gallery document the query names as
its reference (`reference_id`) left out unless the request says
`exclude_reference: false`. Exact across shards: each shard's list holds every
candidate that could be in the global top-`limit`.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Optional, Tuple

Ranked = List[Tuple[Any, float]]  # (match with an `id`, score) pairs


def top_k(lists: Iterable[Iterable[Tuple[Any, float]]], limit: int, skip_id: Optional[str] = None) -> Ranked:
    """The best `limit` (match, score) pairs of all `lists`, without the match whose id is `skip_id`."""
    pairs = [(match, float(score)) for ranked in lists for match, score in ranked if match.id != skip_id]
    pairs.sort(key=lambda pair: (-pair[1], pair[0].id))
    return pairs[:limit]


def reference_to_skip(reference_id: Optional[str], exclude_reference: bool) -> Optional[str]:
    """The id `top_k` leaves out for a query (None: nothing): its reference, when the request excludes it."""
    return reference_id if exclude_reference and reference_id else None


def candidates(limit: int, exclude_reference: bool) -> int:
    """How many hits to ask a store for: one more than `limit` when the reference may be among them."""
    return limit + (1 if exclude_reference else 0)


__all__ = ["Ranked", "candidates", "reference_to_skip", "top_k"]
