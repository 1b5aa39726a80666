"""The stores of `mlcl_executor/stores/` directly: the contract against a reference model, the exact
store's matrix (swap-with-last, capacity doubling), HNSW deletes / re-inserts / `ef`, conversion of
docarray-era workspaces, and the module boundaries (no docarray outside `docarray_legacy.py`)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mlcl_executor.stores import Match, create_store
from mlcl_executor.stores.memory import INITIAL_CAPACITY

D = 12
BACKENDS = ["memory", "hnsw"]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def exact(model: dict, q: np.ndarray, k: int) -> list:
    ids = sorted(model)
    mat = unit(np.stack([model[i] for i in ids]))
    sims = mat @ unit(q)
    return [ids[j] for j in np.lexsort((np.array(ids), -sims))[:k]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_writes_match_a_reference_model_and_survive_restarts(tmp_path, backend):
    """Upserts (new + existing ids), deletes and re-inserts in random order, with restarts (crash: no
    close) in between; the store answers like an exact search over a dict of what was acknowledged."""
    rng = np.random.default_rng(1)
    model: dict = {}
    store = create_store(backend, D, tmp_path, hnsw={"ef": 400}, persistence={"compact_min_bytes": 4096})
    qs = rng.normal(size=(6, D)).astype(np.float32)
    for step in range(40):
        op = rng.random()
        if op < 0.6:
            ids = [f"d{int(i)}" for i in rng.integers(0, 150, size=int(rng.integers(1, 20)))]
            vecs = rng.normal(size=(len(ids), D)).astype(np.float32) * rng.uniform(0.1, 5.0)  # any norm
            store.upsert([{"id": i, "embedding": v, "uri": f"/{i}-{step}", "tags": {"step": step}} for i, v in zip(ids, vecs)])
            for i, v in zip(ids, vecs):  # the last row of an id wins
                model[i] = (v, step)
        elif op < 0.9 and model:
            gone = list(rng.choice(sorted(model), size=min(len(model), int(rng.integers(1, 10))), replace=False))
            store.delete(gone + ["never-stored"])
            for i in gone:
                del model[i]
        else:
            store = create_store(backend, D, tmp_path, hnsw={"ef": 400}, persistence={"compact_min_bytes": 4096})
        assert store.count() == len(model)
        assert all(store.exists(i) for i in model) and not store.exists("never-stored")
    ref = {i: v for i, (v, _) in model.items()}
    hits = store.search(qs, 8)
    for q, row in zip(qs, hits):
        assert [m.id for m, _ in row] == exact(ref, q, 8)
        m, score = row[0]
        assert isinstance(m, Match) and m.uri == f"/{m.id}-{model[m.id][1]}" and m.tags == {"step": model[m.id][1]}
        assert score == pytest.approx(float(unit(ref[m.id]) @ unit(q)), abs=1e-5)
        assert [s for _, s in row] == sorted((s for _, s in row), reverse=True)
    # lookup by id (a search by gallery id): each stored id's unit vector and tags, None for the others
    some = sorted(model)[:5]
    found = store.lookup(some + ["never-stored"])
    assert found[-1] is None
    for i, (vec, tags) in zip(some, found):
        np.testing.assert_allclose(vec, unit(model[i][0]), atol=1e-5)
        assert tags == {"step": model[i][1]}
    store.close()
    again = create_store(backend, D, tmp_path, hnsw={"ef": 400})
    assert again.count() == len(model) and [[m.id for m, _ in r] for r in again.search(qs, 8)] == [[m.id for m, _ in r] for r in hits]
    again.close()


def test_memory_store_is_one_contiguous_matrix_with_doubling_capacity(tmp_path):
    store = create_store("memory", D, tmp_path)
    rng = np.random.default_rng(0)
    vectors = unit(rng.normal(size=(INITIAL_CAPACITY + 10, D)))
    store.upsert([{"id": f"g{i}", "embedding": v} for i, v in enumerate(vectors[:INITIAL_CAPACITY])])
    assert store.matrix.shape == (INITIAL_CAPACITY, D) and store.matrix.flags.c_contiguous
    store.upsert([{"id": f"g{i}", "embedding": vectors[i]} for i in range(INITIAL_CAPACITY, INITIAL_CAPACITY + 10)])
    assert store.matrix.shape == (2 * INITIAL_CAPACITY, D)  # doubled, not grown by the request
    # swap-with-last: the live rows stay rows 0..n-1, each id on the row that holds its vector
    store.delete(["g0", "g5", f"g{INITIAL_CAPACITY + 9}"])
    assert store.count() == INITIAL_CAPACITY + 7
    for doc_id, row in store._rows.items():
        assert store._ids[row] == doc_id
        np.testing.assert_allclose(store.matrix[row], vectors[int(doc_id[1:])], atol=1e-6)
    assert sorted(store._rows.values()) == list(range(store.count()))
    # limit >= count returns every document, best first
    all_hits = store.search(vectors[:1], 10_000)[0]
    assert len(all_hits) == store.count() and [s for _, s in all_hits] == sorted((s for _, s in all_hits), reverse=True)


def test_bad_rows_are_rejected_before_anything_is_written(tmp_path):
    store = create_store("memory", D, tmp_path)
    good = {"id": "a", "embedding": np.ones(D)}
    for bad, message in [
        ({"id": "b", "embedding": np.ones(D + 1)}, "width 12"),
        ({"id": "b", "embedding": np.zeros(D)}, "zero or not finite"),
        ({"id": "b", "embedding": np.full(D, np.inf)}, "zero or not finite"),
        ({"id": "", "embedding": np.ones(D)}, "non-empty string"),
    ]:
        with pytest.raises(ValueError, match=message):
            store.upsert([good, bad])
        assert store.count() == 0 and store.log.bytes == 0
    with pytest.raises(ValueError, match="width 12"):
        store.search(np.ones((1, 5)), 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stored_tags_share_their_keys(tmp_path, backend):
    """Each document of a request arrives with its own copy of each tag name (protobuf); the store keeps one
    (a store of 1M documents holds each key once, not 1M times), and the tags read back are equal."""
    store = create_store(backend, D, tmp_path)
    names = ["".join(["mlcl_feature", "_norm"]) for _ in range(3)]  # equal strings, three objects
    assert names[0] is not names[1]
    store.upsert([{"id": f"g{i}", "embedding": np.ones(D) + i, "tags": {names[i]: 1.0 + i, "path": f"/p/{i}"}}
                  for i in range(3)])
    store.upsert([{"id": "g3", "embedding": np.ones(D) - 2, "tags": {"".join(["mlcl_feature", "_norm"]): 4.0}}])
    for reopened in (False, True):  # and as the write-ahead log or the snapshot brings them back
        if reopened:
            store.close()
            store = create_store(backend, D, tmp_path)
        found = store.lookup(["g0", "g1", "g2", "g3"])
        keys = [next(iter(tags)) for _, tags in found]
        assert all(k is keys[0] for k in keys), reopened
        assert [tags["mlcl_feature_norm"] for _, tags in found] == [1.0, 2.0, 3.0, 4.0]
    store.close()


def test_hnsw_deletes_reinserts_and_capacity(tmp_path):
    rng = np.random.default_rng(2)
    vectors = unit(rng.normal(size=(300, D)))
    store = create_store("hnsw", D, tmp_path, hnsw={"max_elements": 16, "ef": 300})
    for start in range(0, 300, 30):
        store.upsert([{"id": f"g{i}", "embedding": vectors[i]} for i in range(start, start + 30)])
    capacity = store.index.get_max_elements()
    assert 300 <= capacity < 600 and capacity & (capacity - 1) == 0  # doubled from 16, not resized per write
    store.delete([f"g{i}" for i in range(100)])
    assert store.count() == 200
    hits = store.search(vectors[:100], 5)
    assert all(int(m.id[1:]) >= 100 for row in hits for m, _ in row)  # deleted points are never answered
    # re-insert deleted ids (with other vectors): they come back, in freed slots (no growth)
    store.upsert([{"id": f"g{i}", "embedding": vectors[299 - i]} for i in range(50)])
    assert store.count() == 250 and store.index.get_max_elements() == capacity
    top = store.search(vectors[299:300], 2)[0]
    assert {m.id for m, _ in top} == {"g0", "g299"} and top[0][1] == pytest.approx(1.0, abs=1e-5)
    # an upsert of a stored id replaces its vector in place
    store.upsert([{"id": "g150", "embedding": vectors[0]}])
    assert store.search(vectors[0:1], 1)[0][0][0].id == "g150" and store.count() == 250
    store.close()
    again = create_store("hnsw", D, tmp_path)
    assert again.count() == 250 and again.search(vectors[0:1], 1)[0][0][0].id == "g150"
    again.close()


def test_hnsw_ef_is_a_validated_search_parameter(tmp_path):
    rng = np.random.default_rng(3)
    vectors = unit(rng.normal(size=(500, D)))
    store = create_store("hnsw", D, tmp_path, hnsw={"ef": 10, "M": 4, "ef_construction": 20})
    store.upsert([{"id": f"g{i}", "embedding": v} for i, v in enumerate(vectors)])
    qs = unit(rng.normal(size=(50, D)))
    truth = [exact({f"g{i}": v for i, v in enumerate(vectors)}, q, 10) for q in qs]

    def recall(**params):
        hits = store.search(qs, 10, **params)
        return np.mean([len({m.id for m, _ in h} & set(t)) / 10 for h, t in zip(hits, truth)])

    assert recall(ef=500) == 1.0  # ef = every point: exact
    assert recall(ef=500) > recall()  # a request's ef overrides the configured one
    assert store.check_params({"ef": 64.0, "limit": 3}) == {"ef": 64}  # numbers arrive as floats; others ignored
    for bad in (0, -3, 10.5, "many", 10**9):
        with pytest.raises(ValueError, match="parameter 'ef' must be (an integer|between)"):
            store.search(qs, 10, ef=bad)
    with pytest.raises(ValueError, match="unknown hnsw options"):
        create_store("hnsw", D, tmp_path / "x", hnsw={"eff": 3})
    store.close()


def test_hnsw_search_with_most_points_deleted_still_fills_the_limit(tmp_path):
    rng = np.random.default_rng(4)
    vectors = unit(rng.normal(size=(400, D)))
    store = create_store("hnsw", D, tmp_path, hnsw={"ef": 10})
    store.upsert([{"id": f"g{i}", "embedding": v} for i, v in enumerate(vectors)])
    store.delete([f"g{i}" for i in range(380)])
    hits = store.search(vectors[:5], 15)
    assert all(len(h) == 15 for h in hits) and all(int(m.id[1:]) >= 380 for h in hits for m, _ in h)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_docarray_era_workspace_is_converted_on_open(tmp_path, backend):
    """Workspaces written by the docarray-based stores (index.bin / hnsw/ + their logs) open as before."""
    from docarray import DocList

    from mlcl_executor.schemas import stored_doc_schema
    from mlcl_executor.stores.wal import UPSERT, WriteAheadLog, encode_batch
    from mlcl_executor.stores.base import Batch

    rng = np.random.default_rng(5)
    vectors = unit(rng.normal(size=(30, D)))
    docs = [dict(id=f"g{i}", embedding=v, uri=f"/{i}.png", tags={"n": i}) for i, v in enumerate(vectors[:20])]
    if backend == "memory":
        from docarray.index import InMemoryExactNNIndex

        old = InMemoryExactNNIndex[stored_doc_schema(D)]()
        old.index(DocList[stored_doc_schema(D)]([stored_doc_schema(D)(**d) for d in docs]))
        old.persist(file=str(tmp_path / "index.bin"))
        log = tmp_path / "index.log"
    else:
        from docarray.index import HnswDocumentIndex

        schema = stored_doc_schema(D, space="cosine", ef=128, M=16, ef_construction=200, max_elements=64, num_threads=1)
        old = HnswDocumentIndex[schema](work_dir=str(tmp_path / "hnsw"))
        old.index(DocList[schema]([schema(**d) for d in docs]))
        old._sqlite_conn.close()  # (docarray 0.41 has no public close)
        log = tmp_path / "hnsw.log"
    # acknowledged writes after the old snapshot: in the log, same record format
    wal = WriteAheadLog(log)
    wal.append(UPSERT, encode_batch(Batch([f"g{i}" for i in range(20, 30)], vectors[20:30], [None] * 10, [{}] * 10)))
    wal.close()
    store = create_store(backend, D, tmp_path)
    assert store.count() == 30
    top = store.search(vectors[3:4], 1)[0][0]
    assert top[0] == Match("g3", "/3.png", {"n": 3}) and top[1] == pytest.approx(1.0, abs=1e-5)
    assert store.search(vectors[25:26], 1)[0][0][0].id == "g25"
    assert not (tmp_path / "index.bin").exists() and not (tmp_path / "hnsw").exists()
    store.close()
    assert create_store(backend, D, tmp_path).count() == 30


@pytest.mark.slow
def test_only_the_legacy_reader_imports_docarray():
    code = (
        "import sys; import mlcl_executor.stores.memory, mlcl_executor.stores.hnsw, mlcl_executor.stores.wal;"
        "assert 'docarray' not in sys.modules and 'jina' not in sys.modules, 'docarray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
