"""Retrieval metrics as pure tensor functions.

Conventions (shared by every benchmark, see docs/evaluation.md):

* A query's *rank* is the 1-based position of its best-scoring positive in the
  ranking of the gallery, after the query's excluded items (e.g. its reference
  image) have been removed.  Recall@k is the share of queries whose rank is
  <= k, reported in percent.
* Tie rule: **pessimistic**.  A non-positive item whose score *equals* the best
  positive's score is counted as ranked above it.  The rank is therefore
  ``1 + #{non-excluded, non-positive g : score[g] >= best positive score}``.
  This never flatters a model (a collapsed model that scores everything alike
  gets recall 0, not a lucky hit from argsort order), needs no sort, and is
  independent of gallery order.  With float features exact ties are rare, so
  it agrees with the argsort used by the public reference code on real models.
* Several positives per query (shapes: every gallery image of the target scene)
  are allowed: a hit is any positive within the top k.
* A query with no non-excluded positive gets the rank ``G + 1`` (``G`` = gallery
  size): a miss for every k <= G, still counted in the denominator.
* NaN scores (a NaN query or gallery vector) never flatter: a NaN positive
  score counts as -inf, a NaN non-positive score as ranked above the positive.
* Subset recall (CIRR) ranks only the query's subset (its img_set members minus
  the reference): it is ordinary recall with everything outside the subset
  excluded.

Everything works on chunks of queries so a 20k x 20k evaluation never holds the
full [Q, G] score matrix (1.6 GB in float32) at once: positives, exclusions and
subsets are given as padded index lists ``LongTensor[Q, P]`` (``-1`` = padding)
and turned into boolean masks one chunk at a time.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

PAD = -1  # padding value of index lists


def first_positive_ranks(
    scores: torch.Tensor,
    positives: torch.Tensor,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """1-based rank of each query's best positive (pessimistic ties).

    scores: FloatTensor[Q, G]; positives, exclude: BoolTensor[Q, G].
    Returns LongTensor[Q]; queries without a non-excluded positive get G + 1.
    """
    if scores.shape != positives.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and positives {tuple(positives.shape)} differ")
    num_gallery = scores.shape[1]
    valid = torch.ones_like(positives) if exclude is None else ~exclude
    pos = positives & valid
    neg = valid & ~positives
    neg_inf = torch.tensor(float("-inf"), dtype=scores.dtype, device=scores.device)
    nan = torch.isnan(scores)
    # NaN never helps a query: a NaN positive is no hit (-inf), a NaN non-positive is ranked ahead.
    best_pos = torch.where(pos & ~nan, scores, neg_inf).amax(dim=1, keepdim=True)  # [Q, 1]
    ahead = (((scores >= best_pos) | nan) & neg).sum(dim=1)
    has_pos = pos.any(dim=1)
    miss = torch.full_like(ahead, num_gallery + 1)
    return torch.where(has_pos, ahead + 1, miss)


def recall_from_ranks(ranks: torch.Tensor, ks: Iterable[int], prefix: str = "R@") -> dict[str, float]:
    """Recall@k in percent for each k, from ranks of `first_positive_ranks`."""
    ranks = ranks.reshape(-1)
    if ranks.numel() == 0:
        raise ValueError("no queries to score")
    return {f"{prefix}{k}": float((ranks <= k).double().mean() * 100.0) for k in ks}


def recall_at_k(
    scores: torch.Tensor,
    positives: torch.Tensor,
    exclude: torch.Tensor | None = None,
    ks: Sequence[int] = (1, 5, 10, 50),
) -> dict[str, float]:
    """Recall@k (percent) from a full score matrix and boolean masks."""
    return recall_from_ranks(first_positive_ranks(scores, positives, exclude), ks)


def subset_recall_at_k(
    scores: torch.Tensor,
    positives: torch.Tensor,
    subset: torch.Tensor,
    exclude: torch.Tensor | None = None,
    ks: Sequence[int] = (1, 2, 3),
) -> dict[str, float]:
    """Recall_subset@k (percent): rank only the gallery items in `subset`.

    subset: BoolTensor[Q, G], True for the items that take part in the query's
    ranking (CIRR: its img_set members other than the reference).
    """
    outside = ~subset if exclude is None else (~subset | exclude)
    ranks = first_positive_ranks(scores, positives, outside)
    return recall_from_ranks(ranks, ks, prefix="Rsubset@")


def index_mask(indices: torch.Tensor, num_gallery: int) -> torch.Tensor:
    """BoolTensor[Q, G] from a padded index list LongTensor[Q, P] (PAD = -1)."""
    q = indices.shape[0]
    mask = torch.zeros(q, num_gallery + 1, dtype=torch.bool, device=indices.device)
    if indices.numel():
        idx = torch.where(indices < 0, torch.full_like(indices, num_gallery), indices)
        mask.scatter_(1, idx, True)
    return mask[:, :num_gallery]  # drop the padding column


def pad_indices(lists: Sequence[Sequence[int]], device: torch.device | str | None = None) -> torch.Tensor:
    """Padded LongTensor[Q, max len] (PAD = -1) from ragged lists of gallery indices."""
    width = max((len(x) for x in lists), default=0)
    out = torch.full((len(lists), width), PAD, dtype=torch.long)
    for i, row in enumerate(lists):
        if row:
            out[i, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
    return out if device is None else out.to(device)


def chunked_ranks(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    positives: torch.Tensor,
    exclude: torch.Tensor | None = None,
    subset: torch.Tensor | None = None,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Ranks of every query against the gallery, computed chunk by chunk.

    queries: [Q, D] and gallery: [G, D] (unit-norm: score = cosine);
    positives / exclude / subset: padded index lists [Q, *] (PAD = -1).
    Returns (ranks LongTensor[Q], subset ranks LongTensor[Q] or None), on CPU.
    Peak memory is O(chunk_size * G), never O(Q * G).
    """
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"query dim {queries.shape[1]} != gallery dim {gallery.shape[1]}")
    num_gallery = gallery.shape[0]
    ranks, sub_ranks = [], []
    for start in range(0, queries.shape[0], chunk_size):
        stop = start + chunk_size
        scores = queries[start:stop] @ gallery.T
        dev = scores.device
        pos = index_mask(positives[start:stop].to(dev), num_gallery)
        exc = None if exclude is None else index_mask(exclude[start:stop].to(dev), num_gallery)
        ranks.append(first_positive_ranks(scores, pos, exc).cpu())
        if subset is not None:
            outside = ~index_mask(subset[start:stop].to(dev), num_gallery)
            if exc is not None:
                outside |= exc
            sub_ranks.append(first_positive_ranks(scores, pos, outside).cpu())
    empty = torch.zeros(0, dtype=torch.long)
    all_ranks = torch.cat(ranks) if ranks else empty
    if subset is None:
        return all_ranks, None
    return all_ranks, (torch.cat(sub_ranks) if sub_ranks else empty)


def chunked_top_k(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    k: int,
    exclude: torch.Tensor | None = None,
    restrict_to: torch.Tensor | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Gallery indices of each query's top k, best first: LongTensor[Q, k'] on CPU.

    Excluded items, and items outside `restrict_to` when given (padded index
    lists), are never returned; k' = min(k, G).  Ties are broken by gallery
    order (stable sort), so the lists are reproducible.  Rows with fewer than
    k' eligible items are padded with PAD.
    """
    num_gallery = gallery.shape[0]
    k = min(k, num_gallery)
    out = []
    for start in range(0, queries.shape[0], chunk_size):
        stop = start + chunk_size
        scores = queries[start:stop] @ gallery.T
        dev = scores.device
        banned = torch.zeros_like(scores, dtype=torch.bool)
        if exclude is not None:
            banned |= index_mask(exclude[start:stop].to(dev), num_gallery)
        if restrict_to is not None:
            banned |= ~index_mask(restrict_to[start:stop].to(dev), num_gallery)
        scores = scores.masked_fill(banned, float("-inf"))
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        order = torch.where(torch.gather(banned, 1, order), torch.full_like(order, PAD), order)
        out.append(order.cpu())
    return torch.cat(out) if out else torch.zeros(0, k, dtype=torch.long)
