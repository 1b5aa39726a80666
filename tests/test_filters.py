"""Metadata filters and pages of `/search`: the parser, every operator on every backend against a brute-force
reference (shards and `offset` included), and the Milvus translation (templates, Milvus Lite, injection)."""

from __future__ import annotations

import numpy as np
import pytest
from docarray import DocList

from mlcl_executor.errors import RequestError
from mlcl_executor.filters import parse_filter
from mlcl_executor.indexer import MLCLIndexer
from mlcl_executor.merger import MLCLMerger
from mlcl_executor.schemas import GalleryDoc, QueryDoc
from mlcl_executor.stores import create_store
from mlcl_executor.stores.milvus_filter import LITE, SERVER, milvus_filter

D = 16
N = 240
INJECTION = 'x" or id != "'  # a value that would end the string it is written in, were it pasted as it is
WEIRD = 'a"b\\c'


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def make_tags(rng: np.random.Generator, i: int) -> dict:
    """Tags of every kind a filter meets: strings, ints, floats, booleans, a nested object, absent tags, null,
    a value of another type than most, a list, and strings a pasted expression would break on."""
    tags: dict = {}
    r = rng.random()
    if r < 0.85:
        tags["category"] = ["dress", "shirt", "toptee", "shoe", WEIRD, "café"][int(rng.integers(0, 6))]
    elif r < 0.92:
        tags["category"] = None
    r = rng.random()
    if r < 0.5:
        tags["price"] = int(rng.integers(0, 100))
    elif r < 0.75:
        tags["price"] = float(np.round(rng.uniform(0, 100), 2))
    elif r < 0.85:
        tags["price"] = "n/a"
    if rng.random() < 0.8:
        tags["in_stock"] = bool(rng.random() < 0.5)
    if rng.random() < 0.7:
        tags["size"] = {"eu": int(rng.integers(30, 46))}
    if rng.random() < 0.1:
        tags["colours"] = ["red", "blue"]
    if i == 7:
        tags["category"] = INJECTION
    return tags


@pytest.fixture(scope="module")
def gallery_data():
    rng = np.random.default_rng(3)
    vectors = unit(rng.normal(size=(N, D)))
    tags = [make_tags(rng, i) for i in range(N)]
    return vectors, tags, unit(rng.normal(size=(4, D)))


# ------------------------------------------------------------- the reference
MISSING = object()


def ref_value(tags: dict, key: str):
    value = tags
    for part in key.split("__"):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def ref_kind(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return None  # missing, null, list, object: no value


def ref_eq(v, x) -> bool:
    return ref_kind(v) is not None and ref_kind(v) == ref_kind(x) and v == x


def ref_op(op: str, x, v) -> bool:
    if op == "$eq":
        return ref_eq(v, x)
    if op == "$neq":
        return not ref_eq(v, x)
    if op == "$in":
        return any(ref_eq(v, y) for y in x)
    if op == "$nin":
        return not any(ref_eq(v, y) for y in x)
    if op == "$exists":
        return (ref_kind(v) is not None) == x
    if op == "$not":
        return not all(ref_op(o, y, v) for o, y in x.items())
    if ref_kind(v) != ref_kind(x) or ref_kind(v) not in ("number", "string"):
        return False
    return {"$gt": v > x, "$gte": v >= x, "$lt": v < x, "$lte": v <= x}[op]


def ref_match(flt: dict, tags: dict) -> bool:
    """The documented meaning (filters.py), one document at a time."""
    for key, spec in flt.items():
        if key in ("$and", "$or"):
            items = spec if isinstance(spec, list) else [{k: v} for k, v in spec.items()]
            results = [ref_match(f, tags) for f in items]
            if not (all(results) if key == "$and" else any(results)):
                return False
        elif key == "$not":
            if ref_match(spec, tags):
                return False
        elif not all(ref_op(op, x, ref_value(tags, key)) for op, x in spec.items()):
            return False
    return True


def ref_search(vectors, tags, flt, q, limit, offset=0):
    kept = [i for i in range(len(vectors)) if ref_match(flt, tags[i])]
    order = sorted(kept, key=lambda i: -float(vectors[i] @ q))
    return [f"g{i}" for i in order[offset : offset + limit]]


BOOL_IS_NO_NUMBER = {"in_stock": {"$eq": 1}}  # a boolean is not a number
NOTHING = {"category": {"$eq": "nothing"}}
LIST_HAS_NO_VALUE = {"colours": {"$exists": True}}
FILTERS = [
    {"category": {"$eq": "dress"}},
    {"category": {"$neq": "dress"}},
    {"category": {"$in": ["dress", "toptee"]}},
    {"category": {"$nin": ["dress", "toptee"]}},
    {"price": {"$gt": 50}},
    {"price": {"$gte": 50.5}},
    {"price": {"$lt": 20}},
    {"price": {"$lte": 20}},
    {"price": {"$gte": 10, "$lt": 30}},
    {"category": {"$gt": "shirt"}},
    {"category": {"$lte": "dress"}},
    {"price": {"$in": [10, 20.5, 33, "n/a"]}},
    {"price": {"$nin": [10, 20.5, "n/a", True]}},
    {"in_stock": {"$eq": True}},
    BOOL_IS_NO_NUMBER,
    {"in_stock": {"$exists": True}},
    {"size__eu": {"$gte": 40}},
    LIST_HAS_NO_VALUE,
    {"$and": [{"category": {"$eq": "dress"}}, {"price": {"$lt": 50}}]},
    {"$and": {"category": {"$eq": "shoe"}, "in_stock": {"$eq": False}}},  # docarray's object form
    {"$or": [{"category": {"$eq": "shoe"}}, {"in_stock": {"$eq": False}}]},
    {"category": {"$in": ["shirt", "shoe"]}, "in_stock": {"$eq": True}},  # several keys: all
    {"$not": {"category": {"$in": ["dress"]}}},
    {"$not": {"$or": [{"category": {"$eq": "shoe"}}, {"price": {"$eq": 10}}]}},
    {"$not": {"$and": [{"category": {"$neq": "dress"}}, {"price": {"$nin": [10, 11]}}]}},
    {"category": {"$not": {"$eq": "dress"}}},
    {"category": {"$eq": WEIRD}},
    {"category": {"$eq": "café"}},
    {"category": {"$eq": INJECTION}},
    NOTHING,
]
NEEDS_NEGATION = [  # the complement of a range or of $exists: true (Milvus Lite cannot say it)
    {"in_stock": {"$exists": False}},
    {"price": {"$not": {"$gt": 50}}},
    {"$not": {"size__eu": {"$lt": 40}}},
]


def test_the_reference_agrees_with_docarrays_evaluator_where_docarray_defines_the_same(gallery_data):
    """The language is docarray's: on documents that have the tag (docarray's $neq/$nin say no for an absent
    one, MongoDB and we say yes) and without booleans among numbers, both evaluators agree."""
    from docarray import BaseDoc
    from docarray.utils.filter import filter_docs

    class Tagged(BaseDoc):
        tags: dict = {}

    _, tags, _ = gallery_data
    docs = DocList[Tagged]([Tagged(id=f"g{i}", tags=t) for i, t in enumerate(tags)])
    checked = 0
    for flt in FILTERS:
        if any(k.startswith("$") for k in flt) or any("$not" in spec for spec in flt.values()):
            continue
        if flt is BOOL_IS_NO_NUMBER:  # Python says True == 1; JSON, Milvus and we say a boolean is no number
            continue
        keys = list(flt)
        with_tags = [d for d, t in zip(docs, tags) if all(ref_kind(ref_value(t, k)) is not None for k in keys)
                     and not any(isinstance(ref_value(t, k), bool) for k in keys if k != "in_stock")]
        sub = DocList[Tagged](with_tags)
        query = {f"tags__{k}": spec for k, spec in flt.items()}
        try:
            theirs = {d.id for d in filter_docs(sub, query)}
        except TypeError:  # docarray compares a string with a number and fails; we say no
            continue
        ours = {d.id for d in sub if ref_match(flt, tags[int(d.id[1:])])}
        assert theirs == ours, flt
        checked += 1
    assert checked >= 15


# -------------------------------------------------------------------- parser
@pytest.mark.parametrize("bad, message", [
    ({"category": {"$regex": "d.*"}}, "unknown operator '\\$regex'"),
    ({"$nor": []}, "unknown operator '\\$nor'"),
    ({"category": "dress"}, "a tag takes an object of operators"),
    ({"category": {"$in": "dress"}}, "\\$in takes a non-empty list"),
    ({"category": {"$eq": None}}, "does not compare with null"),
    ({"category": {"$eq": ["a"]}}, "compares with a string, a number or a boolean"),
    ({"price": {"$gt": True}}, "not booleans"),
    ({"price": {"$gt": float("nan")}}, "finite number"),
    ({"in_stock": {"$exists": "yes"}}, "\\$exists takes true or false"),
    ({"$or": "x"}, "\\$or takes a list"),
    ({"$and": []}, "\\$and of nothing"),
    ({'category"] == "x" or id != "': {"$eq": 1}}, "tag name .* is not allowed"),
    ({"a b": {"$eq": 1}}, "tag name 'a b' is not allowed"),
    ({"0": {"$eq": 1}}, "not only digits"),
    ({"c": {"$eq": "line\nbreak"}}, "control characters"),
    ("{not json", "not valid JSON"),
    ([{"c": {"$eq": 1}}], "expected an object of conditions"),
])
def test_a_malformed_filter_is_a_client_error_that_names_the_problem(bad, message):
    with pytest.raises(RequestError, match="parameter 'filter': " + ".*" + message):
        parse_filter(bad)


def test_the_parser_takes_json_text_and_treats_empty_as_none():
    assert parse_filter(None) is None and parse_filter({}) is None and parse_filter("") is None
    flt = parse_filter('{"category": {"$in": ["dress", "toptee"]}, "price": {"$lt": 50}}')
    assert flt is not None and flt.keys() == ["category", "price"]
    deep = {"c": {"$eq": 1}}
    for _ in range(20):
        deep = {"$not": deep}
    with pytest.raises(RequestError, match="nested deeper"):
        parse_filter(deep)
    with pytest.raises(RequestError, match="more than 256 conditions"):
        parse_filter({"$or": [{"c": {"$eq": i}} for i in range(300)]})


# ------------------------------------------------------------------ backends
def stored(vectors, tags):
    return [{"id": f"g{i}", "embedding": v, "uri": None, "tags": t} for i, (v, t) in enumerate(zip(vectors, tags))]


def check_store(store, gallery_data, filters):
    vectors, tags, qs = gallery_data
    for flt in filters:
        where = parse_filter(flt)
        for limit in (5, N):
            hits = store.search(qs, limit, where=where)
            for q, row in zip(qs, hits):
                assert [m.id for m, _ in row] == ref_search(vectors, tags, flt, q, limit), (flt, limit)
                assert all(ref_match(flt, m.tags) for m, _ in row)


@pytest.mark.parametrize("backend, options", [
    ("memory", {}),
    ("hnsw", {"hnsw": {"ef": 400}}),  # a filter that keeps few documents: exact over them
    ("hnsw", {"hnsw": {"ef": 400, "exact_below": 1}}),  # every filter through hnswlib's filter callback
])
def test_every_operator_on_the_local_stores_matches_the_reference(tmp_path, gallery_data, backend, options):
    vectors, tags, _ = gallery_data
    store = create_store(backend, D, tmp_path, **options)
    store.upsert(stored(vectors, tags))
    check_store(store, gallery_data, FILTERS + NEEDS_NEGATION)
    # writes are seen by the next filter (the columns are rebuilt), deleted documents never come back
    store.delete([f"g{i}" for i in range(0, N, 3)])
    store.upsert([{"id": "g1", "embedding": vectors[1], "uri": None, "tags": {"category": "new"}}])
    kept = {f"g{i}" for i in range(N) if i % 3}
    hits = store.search(gallery_data[2], N, where=parse_filter({"category": {"$neq": "zzz"}}))
    assert {m.id for m, _ in hits[0]} == kept
    hits = store.search(gallery_data[2][:1], 5, where=parse_filter({"category": {"$eq": "new"}}))
    assert [m.id for m, _ in hits[0]] == ["g1"]
    store.close()


def make_indexer(tmp_path, backend="memory", shard_id=0, shards=1, **kw) -> MLCLIndexer:
    return MLCLIndexer(backend=backend, metas={"name": "indexer", "workspace": str(tmp_path)},
                       runtime_args={"shard_id": shard_id, "shards": shards, "name": "indexer"}, **kw)


def gallery_docs(vectors, tags):
    return DocList[GalleryDoc]([GalleryDoc(id=f"g{i}", embedding=v, tags=t) for i, (v, t) in enumerate(zip(vectors, tags))])


def queries(qs, **fields):
    return DocList[QueryDoc]([QueryDoc(id=f"q{i}", embedding=q, **fields) for i, q in enumerate(qs)])


@pytest.mark.parametrize("backend", ["memory", "hnsw"])
def test_pages_and_filters_through_shards_equal_one_indexer_and_the_reference(tmp_path, gallery_data, backend):
    vectors, tags, qs = gallery_data
    single = make_indexer(tmp_path / "one", backend)
    single.index(docs=gallery_docs(vectors, tags))
    shards = [make_indexer(tmp_path / "two", backend, shard_id=s, shards=2) for s in range(2)]
    for shard in shards:
        shard.index(docs=gallery_docs(vectors, tags))
    merger = MLCLMerger(default_limit=10)
    for flt in [None, {"category": {"$in": ["dress", "shoe"]}}, {"$not": {"price": {"$lt": 50}}}]:
        pages = []
        for offset in (0, 7, 14):
            params = {"limit": 7, "offset": offset, **({"filter": flt} if flt else {})}
            one = single.search(docs=queries(qs), parameters=params)
            merged = merger.merge_search(docs_matrix=[s.search(docs=queries(qs), parameters=params) for s in shards],
                                         parameters=params)
            assert [[m.id for m in d.matches] for d in merged] == [[m.id for m in d.matches] for d in one]
            for q, d in zip(qs, one):
                assert [m.id for m in d.matches] == ref_search(vectors, tags, flt or {}, q, 7, offset)
            pages.append([[m.id for m in d.matches] for d in one])
        # the pages are consecutive: together, the first 21
        whole = single.search(docs=queries(qs), parameters={"limit": 21, **({"filter": flt} if flt else {})})
        assert [p0 + p1 + p2 for p0, p1, p2 in zip(*pages)] == [[m.id for m in d.matches] for d in whole]
    # the reference is left out before the page is cut, on every page
    ref_q = queries(qs[:1], reference_id="g5")
    ids = [m.id for m in single.search(docs=ref_q, parameters={"limit": N, "exclude_reference": False})[0].matches]
    rest = [i for i in ids if i != "g5"]
    assert [m.id for m in single.search(docs=queries(qs[:1], reference_id="g5"), parameters={"limit": 5, "offset": 5})[0].matches] == rest[5:10]
    with pytest.raises(RequestError, match="parameter 'offset' must be between 0 and 10000"):
        single.search(docs=queries(qs), parameters={"offset": 10001})
    with pytest.raises(RequestError, match="unknown operator"):
        single.search(docs=queries(qs), parameters={"filter": {"c": {"$like": "x"}}})


def test_answers_carry_no_server_path_unless_configured(tmp_path, gallery_data):
    vectors, _, qs = gallery_data
    def docs():  # (an index answer slims the documents it was given)
        return DocList[GalleryDoc]([
            GalleryDoc(id="a", embedding=vectors[0], image="/srv/photos/a.png", tags={"path": "/srv/photos/a.png", "k": 1}),
            GalleryDoc(id="b", embedding=vectors[1], image="https://example.org/b.png", tags={"k": 2}),
        ])

    hidden = make_indexer(tmp_path / "hidden")
    hidden.index(docs=docs())
    shown = make_indexer(tmp_path / "shown", expose_paths=True)
    shown.index(docs=docs())
    answer = {m.id: m for m in hidden.search(docs=queries(qs[:1]), parameters={"limit": 2})[0].matches}
    assert answer["a"].uri is None and answer["a"].tags == {"k": 1}
    assert answer["b"].uri == "https://example.org/b.png"  # a URL is no server path
    with pytest.raises(RequestError, match="server paths"):
        hidden.search(docs=queries(qs[:1]), parameters={"filter": {"path": {"$eq": "/srv/photos/a.png"}}})
    answer = {m.id: m for m in shown.search(docs=queries(qs[:1]), parameters={"limit": 2})[0].matches}
    assert answer["a"].uri == "/srv/photos/a.png" and answer["a"].tags["path"] == "/srv/photos/a.png"


# -------------------------------------------------------------------- Milvus
def test_milvus_values_travel_as_parameters_where_the_target_takes_them():
    flt = parse_filter({"category": {"$in": [INJECTION, "dress"]}, "price": {"$gt": 3}, "$not": {"s": {"$eq": WEIRD}}})
    expr, params = milvus_filter(flt, SERVER)
    assert INJECTION not in expr and WEIRD not in expr and "dress" not in expr
    assert sorted(map(str, params.values())) == sorted(map(str, [[INJECTION, "dress"], 3, WEIRD]))
    assert expr.count("{p") == len(params) and "(not " in expr
    expr, params = milvus_filter(flt, LITE)
    assert params == {} and "not" not in expr.replace("not in", "")
    assert '"x\\" or id != \\""' in expr  # the quote is escaped: the value stays one string literal
    with pytest.raises(RequestError, match="cannot be expressed on Milvus Lite"):
        milvus_filter(parse_filter({"in_stock": {"$exists": False}}), LITE)
    assert "not" in milvus_filter(parse_filter({"in_stock": {"$exists": False}}), SERVER)[0]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_every_operator_on_milvus_lite_matches_the_reference_and_an_injection_stays_a_value(tmp_path, gallery_data):
    pytest.importorskip("pymilvus")
    vectors, tags, qs = gallery_data
    store = create_store("milvus", D, tmp_path, milvus={"uri": str(tmp_path / "m.db")})
    try:
        store.upsert(stored(vectors, tags))
        assert store.lite and store.dialect == LITE
        check_store(store, gallery_data, FILTERS)
        hits = store.search(qs[:1], N, where=parse_filter({"category": {"$eq": INJECTION}}))
        assert [m.id for m, _ in hits[0]] == ["g7"]  # only the document whose tag is that very string
        for flt in NEEDS_NEGATION:
            with pytest.raises(RequestError, match="cannot be expressed on Milvus Lite"):
                store.search(qs, 5, where=parse_filter(flt))
    finally:
        store.close()


def test_the_brute_force_reference_is_not_trivial(gallery_data):
    """Each filter keeps some documents and drops others, so a store that ignored it would fail."""
    _, tags, _ = gallery_data
    for flt in FILTERS + NEEDS_NEGATION:
        kept = sum(ref_match(flt, t) for t in tags)
        if flt is BOOL_IS_NO_NUMBER or flt is NOTHING or flt is LIST_HAS_NO_VALUE:
            assert kept == 0
        elif flt == {"category": {"$eq": INJECTION}}:
            assert kept == 1
        else:
            assert 0 < kept < N, flt
