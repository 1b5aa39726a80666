"""The one merge of ranked lists: a store's hits, the shards' answers, each fusion level's answers.

Every answer of `/search` (the fused one and each level's, from one store or from
all shards) is cut by `top_k`, so they follow one rule: best score first, equal
scores in id order, at most `limit` after skipping the first `offset` (a page),
and the gallery document the query names as its reference (`reference_id`) left
out unless the request says `exclude_reference: false`. Exact across shards:
each shard answers its first `offset + limit` (unsliced), so its list holds every
candidate that could be on the global page, and the merge cuts the page.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Optional, Tuple

Ranked = List[Tuple[Any, float]]  # (match with an `id`, score) pairs


def top_k(lists: Iterable[Iterable[Tuple[Any, float]]], limit: int, skip_id: Optional[str] = None, offset: int = 0) -> Ranked:
    """The (match, score) pairs of all `lists` ranked `offset` to `offset + limit - 1` (from 0), without the
    match whose id is `skip_id`."""
    pairs = [(match, float(score)) for ranked in lists for match, score in ranked if match.id != skip_id]
    pairs.sort(key=lambda pair: (-pair[1], pair[0].id))
    return pairs[offset : offset + limit]


def reference_to_skip(reference_id: Optional[str], exclude_reference: bool) -> Optional[str]:
    """The id `top_k` leaves out for a query (None: nothing): its reference, when the request excludes it."""
    return reference_id if exclude_reference and reference_id else None


def candidates(limit: int, exclude_reference: bool, offset: int = 0) -> int:
    """How many hits to ask a store for: the page's end (`offset + limit`), one more when the reference may be
    among them."""
    return offset + limit + (1 if exclude_reference else 0)


__all__ = ["Ranked", "candidates", "reference_to_skip", "top_k"]
