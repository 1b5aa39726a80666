"""The one answer to each small question: request parameters (params.py), ranked lists (topk.py), vectors (vectors.py)."""

from types import SimpleNamespace

import numpy as np
import pytest

from mlcl_executor.errors import RequestError, doc_name
from mlcl_executor.params import param_bool, param_choice, param_int
from mlcl_executor.topk import candidates, reference_to_skip, top_k
from mlcl_executor.vectors import bad_rows, model_problem, vector_problem


# ------------------------------------------------------------------ params
def test_integers_arrive_as_floats_and_anything_else_is_the_clients_mistake():
    assert param_int({"limit": 5.0}, "limit") == 5 and param_int({"limit": "7"}, "limit") == 7
    assert param_int({}, "limit", 10) == 10 and param_int({"limit": None}, "limit", 10) == 10
    for bad, message in ((2.5, "must be an integer, got 2.5"), ("ten", "must be an integer, got 'ten'"),
                         (True, "must be an integer, got True"), (0, "must be between 1 and 1000, got 0"),
                         (10**9, "must be between 1 and 1000, got 1000000000")):
        with pytest.raises(RequestError, match=f"parameter 'limit' {message}"):
            param_int({"limit": bad}, "limit", 10, low=1, high=1000)


def test_a_boolean_is_strict_everywhere():
    for value, expected in ((True, True), (0, False), ("yes", True), (" OFF ", False), (1.0, True)):
        assert param_bool({"levels": value}, "levels") is expected
    assert param_bool({}, "exclude_reference", True) is True
    for bad in ("maybe", 2, "", [True]):
        with pytest.raises(RequestError, match="parameter 'levels' must be true or false"):
            param_bool({"levels": bad}, "levels")


def test_a_choice_names_its_words():
    assert param_choice({"as": "Gallery"}, "as", ("query", "gallery"), "query") == "gallery"
    assert param_choice(None, "as", ("query", "gallery"), "query") == "query"
    with pytest.raises(RequestError, match="parameter 'as' must be 'query' or 'gallery', got 'both'"):
        param_choice({"as": "both"}, "as", ("query", "gallery"), "query")


def test_every_executor_refuses_a_bad_flag_the_same_way(make_encoder, tmp_path):
    """`levels: "maybe"` was refused by the indexer and read as false by the encoder."""
    from docarray import DocList

    from mlcl_executor.indexer import MLCLIndexer
    from mlcl_executor.schemas import QueryDoc

    encoder = make_encoder()
    indexer = MLCLIndexer(metas={"workspace": str(tmp_path)})
    for executor in (encoder.encode_queries, indexer.search):
        with pytest.raises(RequestError, match="parameter 'levels' must be true or false, got 'maybe'"):
            executor(docs=DocList[QueryDoc]([QueryDoc(text="x")]), parameters={"levels": "maybe"})
    indexer.close()


# -------------------------------------------------------------------- topk
def m(doc_id):
    return SimpleNamespace(id=doc_id)


def test_top_k_merges_lists_best_first_ties_by_id_and_leaves_the_reference_out():
    shard_a = [(m("a"), 0.9), (m("ref"), 0.8), (m("c"), 0.5)]
    shard_b = [(m("b"), 0.8), (m("d"), 0.7)]
    kept = top_k([shard_a, shard_b], 3, skip_id="ref")
    assert [(x.id, s) for x, s in kept] == [("a", 0.9), ("b", 0.8), ("d", 0.7)]
    assert [x.id for x, _ in top_k([shard_a, shard_b], 3)] == ["a", "b", "ref"]  # equal scores: id order
    assert reference_to_skip("ref", True) == "ref" and reference_to_skip("ref", False) is None
    assert reference_to_skip(None, True) is None
    assert candidates(10, True) == 11 and candidates(10, False) == 10


# ----------------------------------------------------------------- vectors
def test_one_vector_check_for_vectors_and_matrices():
    assert vector_problem(np.ones(4), 4) is None and vector_problem(np.ones((2, 4)), 4, rows=2) is None
    assert vector_problem(np.ones(5), 4) == "of shape (5,), expected (4,)"
    assert vector_problem(np.ones((2, 4)), None) == "of shape (2, 4), expected (dim,)"
    assert vector_problem(np.ones((2, 4)), 4, rows=3) == "of shape (2, 4), expected (3, 4)"
    assert vector_problem([1.0, float("nan")], 2) == "has NaN or infinite values"
    assert vector_problem(np.zeros(3), 3) is None
    assert vector_problem(np.zeros(3), 3, nonzero=True) == "is all zero (no direction to compare)"
    assert vector_problem("abc", 3).startswith("is not numeric")
    assert list(bad_rows(np.array([[1, 0], [0, 0], [np.inf, 1]], np.float32))) == [1, 2]
    assert model_problem("m1", "m1") is None and "cannot be mixed in" in model_problem("m2", "m1")


def test_documents_are_named_by_id_or_position():
    assert doc_name("g1", 3) == "document 'g1'" and doc_name("", 3) == doc_name(None, 3) == "document #3 (no id)"
