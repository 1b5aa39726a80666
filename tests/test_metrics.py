"""Retrieval metrics against hand-computed rankings."""

from __future__ import annotations

import pytest
import torch

from mlcl.eval import metrics as M


def mask(q: int, g: int, pairs: list[tuple[int, int]]) -> torch.Tensor:
    out = torch.zeros(q, g, dtype=torch.bool)
    for i, j in pairs:
        out[i, j] = True
    return out


def test_rank_is_position_of_best_positive():
    scores = torch.tensor([[0.9, 0.5, 0.7, 0.1]])
    # ranking: 0 (0.9), 2 (0.7), 1 (0.5), 3 -> positive 2 is second
    assert M.first_positive_ranks(scores, mask(1, 4, [(0, 2)])).tolist() == [2]
    assert M.first_positive_ranks(scores, mask(1, 4, [(0, 3)])).tolist() == [4]
    assert M.first_positive_ranks(scores, mask(1, 4, [(0, 0)])).tolist() == [1]


def test_ties_are_pessimistic():
    # all equal: both negatives count as ranked above the positive
    scores = torch.tensor([[0.5, 0.5, 0.5]])
    assert M.first_positive_ranks(scores, mask(1, 3, [(0, 1)])).tolist() == [3]
    # a positive tied with another positive is not pushed down by it
    scores = torch.tensor([[0.5, 0.5, 0.2]])
    assert M.first_positive_ranks(scores, mask(1, 3, [(0, 0), (0, 1)])).tolist() == [1]
    # a collapsed model (all scores equal) never gets a lucky R@1
    scores = torch.zeros(4, 10)
    pos = mask(4, 10, [(0, 0), (1, 3), (2, 9), (3, 5)])
    assert M.recall_at_k(scores, pos, ks=(1, 9, 10)) == {"R@1": 0.0, "R@9": 0.0, "R@10": 100.0}


def test_reference_exclusion_removes_item_from_ranking():
    scores = torch.tensor([[0.9, 0.8, 0.1]])  # 0 is the reference
    pos = mask(1, 3, [(0, 1)])
    assert M.first_positive_ranks(scores, pos).tolist() == [2]
    assert M.first_positive_ranks(scores, pos, mask(1, 3, [(0, 0)])).tolist() == [1]


def test_several_hits_per_query_best_one_counts():
    scores = torch.tensor([[0.2, 0.6, 0.9, 0.7, 0.65]])
    # positives 1 (0.6) and 3 (0.7): the best is 3, only item 2 (0.9) is above it
    pos = mask(1, 5, [(0, 1), (0, 3)])
    assert M.first_positive_ranks(scores, pos).tolist() == [2]
    # excluding hit 3 leaves hit 1, below 2, 4 (0.65) -> rank 3
    assert M.first_positive_ranks(scores, pos, mask(1, 5, [(0, 3)])).tolist() == [3]


def test_query_without_positive_is_a_miss_in_the_denominator():
    scores = torch.tensor([[0.9, 0.1], [0.3, 0.8]])
    pos = mask(2, 2, [(0, 0), (1, 0)])
    exc = mask(2, 2, [(1, 0)])  # query 1's only positive is excluded
    ranks = M.first_positive_ranks(scores, pos, exc)
    assert ranks.tolist() == [1, 3]  # G + 1
    assert M.recall_from_ranks(ranks, (1, 2)) == {"R@1": 50.0, "R@2": 50.0}


def test_recall_from_ranks_percent():
    ranks = torch.tensor([1, 2, 3, 7])
    assert M.recall_from_ranks(ranks, (1, 2, 5, 10)) == {"R@1": 25.0, "R@2": 50.0, "R@5": 75.0, "R@10": 100.0}
    with pytest.raises(ValueError):
        M.recall_from_ranks(torch.zeros(0, dtype=torch.long), (1,))


def test_subset_recall_ranks_only_the_subset():
    # gallery 0..5; 0 = reference (excluded); subset = {1, 2, 3}; target 3
    scores = torch.tensor([[0.99, 0.8, 0.5, 0.6, 0.95, 0.1]])
    pos = mask(1, 6, [(0, 3)])
    exc = mask(1, 6, [(0, 0)])
    subset = mask(1, 6, [(0, 1), (0, 2), (0, 3)])
    # full ranking without the reference: 4, 1, 3 -> rank 3
    assert M.recall_at_k(scores, pos, exc, ks=(2, 3)) == {"R@2": 0.0, "R@3": 100.0}
    # within the subset: 1 (0.8) above 3 (0.6) -> rank 2
    assert M.subset_recall_at_k(scores, pos, subset, exc) == {
        "Rsubset@1": 0.0, "Rsubset@2": 100.0, "Rsubset@3": 100.0}


def test_index_mask_and_padding():
    idx = M.pad_indices([[2, 0], [], [1]])
    assert idx.tolist() == [[2, 0], [-1, -1], [1, -1]]
    assert M.index_mask(idx, 3).tolist() == [[True, False, True], [False] * 3, [False, True, False]]


def _naive_ranks(scores, pos_lists, exc_lists):
    """Per-query loop with argsort: the obvious reference (valid without ties)."""
    out = []
    for i, row in enumerate(scores):
        order = [j for j in torch.argsort(row, descending=True).tolist() if j not in exc_lists[i]]
        hits = [r for r, j in enumerate(order, 1) if j in pos_lists[i]]
        out.append(hits[0] if hits else len(row) + 1)
    return out


def test_chunked_ranks_match_naive_loop_on_large_gallery():
    g = torch.Generator().manual_seed(0)
    q, num_gallery, d = 150, 20_000, 8
    queries = torch.nn.functional.normalize(torch.randn(q, d, generator=g), dim=1)
    gallery = torch.nn.functional.normalize(torch.randn(num_gallery, d, generator=g), dim=1)
    pos_lists = [torch.randint(0, num_gallery, (1 + i % 3,), generator=g).tolist() for i in range(q)]
    exc_lists = [[(i * 7) % num_gallery] for i in range(q)]
    sub_lists = [sorted(set(p) | {(i * 11) % num_gallery, (i * 13) % num_gallery}) for i, p in enumerate(pos_lists)]
    ranks, sub_ranks = M.chunked_ranks(
        queries, gallery, M.pad_indices(pos_lists), M.pad_indices(exc_lists), M.pad_indices(sub_lists), chunk_size=64
    )
    assert ranks.tolist() == _naive_ranks(queries @ gallery.T, pos_lists, exc_lists)
    scores = queries @ gallery.T
    expected_sub = []
    for i in range(q):
        members = [j for j in sub_lists[i] if j not in exc_lists[i]]
        ranked = sorted(members, key=lambda j: -scores[i, j].item())
        hits = [r for r, j in enumerate(ranked, 1) if j in pos_lists[i]]
        expected_sub.append(hits[0] if hits else num_gallery + 1)
    assert sub_ranks.tolist() == expected_sub


def test_chunked_top_k_stable_ties_exclusion_and_subset():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    # query 0 scores: 1, 0, 1, 0.6 -> ties 0 and 2 keep gallery order
    top = M.chunked_top_k(queries, gallery, 3, chunk_size=1)
    assert top[0].tolist() == [0, 2, 3]
    # exclude item 0 for query 0 and item 1 for query 1
    top = M.chunked_top_k(queries, gallery, 5, exclude=M.pad_indices([[0], [1]]))
    assert top.tolist() == [[2, 3, 1, -1], [3, 0, 2, -1]]
    # only the subset {1, 3} (query 0), {0, 1} (query 1), query 1's 1 excluded
    top = M.chunked_top_k(queries, gallery, 3, M.pad_indices([[0], [1]]), M.pad_indices([[1, 3], [0, 1]]))
    assert top.tolist() == [[3, 1, -1], [0, -1, -1]]


def test_nan_query_is_a_miss_not_a_hit():
    # Defect 2: a NaN query vector made every comparison false -> rank 1 (a hit).
    scores = torch.tensor([[float("nan")] * 4, [0.9, 0.1, 0.5, 0.2]])
    positives = torch.tensor([[True, False, False, False], [True, False, False, False]])
    ranks = M.first_positive_ranks(scores, positives)
    assert ranks.tolist()[1] == 1
    assert ranks.tolist()[0] > 1  # never a hit at rank 1
    assert M.recall_from_ranks(ranks, (1,))["R@1"] == 50.0


def test_nan_gallery_score_ranks_above_the_positive():
    # A NaN gallery score (a broken gallery vector) must not be silently skipped: it counts as ahead.
    scores = torch.tensor([[0.9, float("nan"), 0.1]])
    positives = torch.tensor([[True, False, False]])
    assert M.first_positive_ranks(scores, positives).tolist() == [2]
    # ...and a NaN positive score is no hit, whatever the others score
    scores = torch.tensor([[float("nan"), 0.1, 0.2]])
    assert M.first_positive_ranks(scores, positives).tolist() == [3]
    # through the chunked path too
    q = torch.tensor([[float("nan"), 0.0]])
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ranks, _ = M.chunked_ranks(q, g, M.pad_indices([[0]]))
    assert ranks.tolist() != [1]
