"""MLCLIndexer and its backends in-process: scores, upsert/update/delete, widths, persistence, shards."""

from __future__ import annotations

import numpy as np
import pytest
from docarray import DocList


from mlcl_executor.indexer import MLCLIndexer, shard_of
from mlcl_executor.merger import MLCLMerger
from mlcl_executor.stores import create_store
from mlcl_executor.schemas import GalleryDoc, QueryDoc

D = 16
BACKENDS = ["memory", "hnsw"]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return unit(rng.normal(size=(60, D))), unit(rng.normal(size=(5, D)))


def gallery(vectors, prefix="g", start=0):
    return DocList[GalleryDoc](
        [GalleryDoc(id=f"{prefix}{start + i}", embedding=v, image=f"/imgs/{prefix}{start + i}.png", tags={"n": start + i})
         for i, v in enumerate(vectors)]
    )


def queries(vectors, **fields):
    return DocList[QueryDoc]([QueryDoc(id=f"q{i}", embedding=v, **fields) for i, v in enumerate(vectors)])


def make_indexer(tmp_path, backend="memory", shard_id=0, shards=1, **kw) -> MLCLIndexer:
    return MLCLIndexer(
        backend=backend, metas={"name": "indexer", "workspace": str(tmp_path)},
        runtime_args={"shard_id": shard_id, "shards": shards, "name": "indexer"}, **kw,
    )


def exact_top(vectors, q, k):
    sims = vectors @ q
    order = np.argsort(-sims)[:k]
    return [f"g{i}" for i in order], sims[order]


@pytest.mark.parametrize("backend", BACKENDS)
def test_store_scores_are_cosine_similarity(tmp_path, data, backend):
    vectors, qs = data
    store = create_store(backend, D, tmp_path)
    store.upsert([{"id": f"g{i}", "embedding": v} for i, v in enumerate(vectors)])
    for q, hits in zip(qs, store.search(qs, 5)):
        ids, sims = exact_top(vectors, q, 5)
        assert [d.id for d, _ in hits] == ids
        np.testing.assert_allclose([s for _, s in hits], sims, atol=1e-5)
    store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_index_search_update_delete_and_restart(tmp_path, data, backend):
    vectors, qs = data
    idx = make_indexer(tmp_path, backend, expose_paths=True)  # (default: no server path in answers, test_filters.py)
    out = idx.index(docs=gallery(vectors[:40]))
    assert all(d.error is None and d.embedding is None for d in out)  # answers are slim
    assert idx.count(docs=DocList[GalleryDoc]())[0].count == 40

    res = idx.search(docs=queries(qs), parameters={"limit": 5.0})  # numbers arrive as floats
    for q, doc in zip(qs, res):
        ids, sims = exact_top(vectors[:40], q, 5)
        assert [m.id for m in doc.matches] == ids
        np.testing.assert_allclose(doc.scores, sims, atol=1e-5)
        assert doc.scores == sorted(doc.scores, reverse=True)
        assert doc.matches[0].uri == f"/imgs/{ids[0]}.png" and doc.matches[0].tags["n"] == int(ids[0][1:])
        assert doc.embedding is None

    # upsert: same id again replaces (no duplicate), new ids are added
    idx.index(docs=gallery(vectors[40:45], start=0))  # g0..g4 get new vectors
    assert idx.count(docs=DocList[GalleryDoc]())[0].count == 40
    top = idx.search(docs=queries(vectors[40:41]), parameters={"limit": 1})[0]
    assert top.matches[0].id == "g0" and top.scores[0] == pytest.approx(1.0, abs=1e-5)

    # update: known ids replaced, unknown ids get an error
    upd = idx.update(docs=gallery(np.stack([vectors[0], vectors[1]]), start=1) + gallery(vectors[2:3], prefix="nope"))
    assert [d.error for d in upd][:2] == [None, None]
    assert "not in the index" in upd[2].error and "'nope0'" in upd[2].error
    assert idx.search(docs=queries(vectors[0:1]), parameters={"limit": 1})[0].matches[0].id == "g1"

    # delete: unknown ids reported, known ones gone
    dele = idx.delete(docs=DocList[GalleryDoc]([GalleryDoc(id="g1"), GalleryDoc(id="g39"), GalleryDoc(id="ghost")]))
    assert [d.error is None for d in dele] == [True, True, False]
    assert idx.count(docs=DocList[GalleryDoc]())[0].count == 38
    # re-adding a deleted id works (the hnsw store gives it a new label in a freed slot)
    idx.index(docs=gallery(vectors[39:40], start=39))
    assert idx.count(docs=DocList[GalleryDoc]())[0].count == 39
    before = idx.search(docs=queries(qs), parameters={"limit": 7})
    idx.close()

    again = make_indexer(tmp_path, backend)  # a restart: same workspace
    assert again.count(docs=DocList[GalleryDoc]())[0].count == 39
    after = again.search(docs=queries(qs), parameters={"limit": 7})
    assert [[m.id for m in d.matches] for d in after] == [[m.id for m in d.matches] for d in before]
    np.testing.assert_allclose([d.scores for d in after], [d.scores for d in before], atol=1e-6)

    again.clear(docs=DocList[GalleryDoc]())
    assert again.count(docs=DocList[GalleryDoc]())[0].count == 0
    assert again.search(docs=queries(qs), parameters={"limit": 3})[0].matches == []
    again.close()


def test_wrong_width_rejects_the_request_and_stores_nothing(tmp_path, data):
    vectors, qs = data
    idx = make_indexer(tmp_path)
    idx.index(docs=gallery(vectors[:10]))
    bad = gallery(vectors[10:12], start=10) + DocList[GalleryDoc]([GalleryDoc(id="wide", embedding=np.ones(D + 3))])
    with pytest.raises(ValueError, match=r"/index rejected, nothing was stored: document 'wide': embedding width 19, the index holds width 16"):
        idx.index(docs=bad)
    with pytest.raises(ValueError, match="NaN"):
        idx.update(docs=DocList[GalleryDoc]([GalleryDoc(id="g0", embedding=np.full(D, np.nan))]))
    with pytest.raises(ValueError, match="document 'z': embedding is all zero"):
        idx.index(docs=DocList[GalleryDoc]([GalleryDoc(id="z", embedding=np.zeros(D))]))
    assert idx.count(docs=DocList[GalleryDoc]())[0].count == 10
    # a query of the wrong width is that query's error; the others are served
    res = idx.search(docs=DocList[QueryDoc]([QueryDoc(id="bad", embedding=np.ones(5)), QueryDoc(id="ok", embedding=qs[0]), QueryDoc(id="none")]))
    assert "query vector of shape (5,), expected (16,) (the index holds width 16)" in res[0].error
    assert res[1].error is None and len(res[1].matches) == 10
    assert "has no embedding" in res[2].error
    idx.close()
    # the width is remembered in the workspace: another dim is refused at start-up
    with pytest.raises(ValueError, match="holds vectors of width 16 but dim: 8"):
        make_indexer(tmp_path, dim=8)
    with pytest.raises(ValueError, match="holds a 'memory' index"):
        make_indexer(tmp_path, backend="hnsw")


def test_documents_without_vectors_or_ids_are_reported_not_stored(tmp_path, data):
    vectors, _ = data
    idx = make_indexer(tmp_path)
    docs = DocList[GalleryDoc]([
        GalleryDoc(id="a", embedding=vectors[0]),
        GalleryDoc(id="b", error="document 'b': corrupt image"),  # the encoder's verdict passes through
        GalleryDoc(id="c"),
    ])
    out = idx.index(docs=docs)
    assert out[0].error is None and out[1].error == "document 'b': corrupt image" and "no embedding" in out[2].error
    assert idx.count(docs=DocList[GalleryDoc]())[0].count == 1


def test_exclude_reference_and_limits(tmp_path, data):
    vectors, _ = data
    idx = make_indexer(tmp_path)
    idx.index(docs=gallery(vectors[:20]))

    def search(**parameters):  # a fresh query each time: answers drop the query's vector
        q = DocList[QueryDoc]([QueryDoc(embedding=vectors[3], reference_id="g3")])
        return idx.search(docs=q, parameters=parameters)[0]

    excluded = search(limit=5)
    assert "g3" not in [m.id for m in excluded.matches] and len(excluded.matches) == 5
    assert search(limit=5, exclude_reference=False).matches[0].id == "g3"
    assert len(search(limit=500).matches) == 19
    with pytest.raises(ValueError, match="limit"):
        search(limit=0)


def test_shards_partition_ids_and_merge_to_the_single_shard_answer(tmp_path, data):
    vectors, qs = data
    single = make_indexer(tmp_path / "one")
    single.index(docs=gallery(vectors))
    shards = [make_indexer(tmp_path / "two", shard_id=s, shards=2) for s in range(2)]
    for shard in shards:  # polling ALL: every shard sees every document, keeps its own
        shard.index(docs=gallery(vectors))
    counts = [s.count(docs=DocList[GalleryDoc]())[0] for s in shards]
    assert sum(c.count for c in counts) == len(vectors) and min(c.count for c in counts) > 0
    assert all(shard_of(f"g{i}", 2) in (0, 1) for i in range(10))

    merger = MLCLMerger(default_limit=10)
    for limit in (1, 10, 100):
        answers = [s.search(docs=queries(qs), parameters={"limit": limit}) for s in shards]
        merged = merger.merge_search(docs_matrix=answers, parameters={"limit": limit})
        expected = single.search(docs=queries(qs), parameters={"limit": limit})
        assert [[m.id for m in d.matches] for d in merged] == [[m.id for m in d.matches] for d in expected]
        np.testing.assert_allclose(np.concatenate([d.scores for d in merged]), np.concatenate([d.scores for d in expected]), atol=1e-6)
    total = merger.merge_count(docs_matrix=[s.count(docs=DocList[GalleryDoc]()) for s in shards])[0]
    assert total.count == len(vectors) and set(total.shards) == {"0", "1"}

    # an update of an id is done by the shard that owns it, the other shard's answer does not override it
    answers = [s.update(docs=gallery(vectors[:1]) + gallery(vectors[:1], prefix="zz")) for s in shards]
    merged = merger.merge(docs_matrix=answers)
    assert merged[0].error is None and "not in the index" in merged[1].error


def test_hnsw_store_is_usable_from_other_threads(tmp_path, data):
    # Jina calls endpoints from a thread pool; the store is opened in __init__ (another thread).
    from concurrent.futures import ThreadPoolExecutor

    vectors, qs = data
    idx = make_indexer(tmp_path, "hnsw", dim=D)
    with ThreadPoolExecutor(2) as pool:
        pool.submit(idx.index, docs=gallery(vectors[:10])).result()
        res = pool.submit(idx.search, docs=queries(qs), parameters={"limit": 3}).result()
    assert all(len(d.matches) == 3 for d in res)
    # the hnsw store's `ef` is a request parameter, validated like `limit`
    res = idx.search(docs=queries(qs), parameters={"limit": 3, "ef": 200.0})
    assert all(len(d.matches) == 3 for d in res)
    with pytest.raises(ValueError, match="parameter 'ef' must be between 1 and"):
        idx.search(docs=queries(qs), parameters={"limit": 3, "ef": 0})
    idx.close()


# ---------------------------------------------------------------- persistence: log + snapshots
SNAPSHOT = {"memory": "memory.snap", "hnsw": "hnsw.meta"}
LOG = {"memory": "index.log", "hnsw": "hnsw.log"}


def rows(vectors, start=0, prefix="g"):
    return [{"id": f"{prefix}{start + i}", "embedding": v, "uri": f"/imgs/{start + i}.png", "tags": {"n": start + i}}
            for i, v in enumerate(vectors)]


def top_ids(store, qs, k=5):
    return [[d.id for d, _ in hits] for hits in store.search(qs, k)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_upsert_appends_to_the_log_and_does_not_rewrite_the_snapshot(tmp_path, data, backend):
    vectors, _ = data
    store = create_store(backend, D, tmp_path)
    store.upsert(rows(vectors[:40]))
    store.close()  # compaction: everything in the snapshot, empty log
    snapshot, log = tmp_path / SNAPSHOT[backend], tmp_path / LOG[backend]
    assert snapshot.is_file() and log.stat().st_size == 0
    before = (snapshot.stat().st_mtime_ns, snapshot.stat().st_size, snapshot.read_bytes())

    store = create_store(backend, D, tmp_path)
    store.upsert(rows(vectors[40:42], start=40))
    grown = log.stat().st_size
    assert 0 < grown < 2 * (2 * D * 4 + 200)  # the log grew by about the two documents, no more
    store.delete(["g0"])
    assert log.stat().st_size > grown
    assert (snapshot.stat().st_mtime_ns, snapshot.stat().st_size, snapshot.read_bytes()) == before
    assert store.compactions == 0
    store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_acknowledged_writes_survive_a_crash(tmp_path, data, backend):
    vectors, qs = data
    store = create_store(backend, D, tmp_path)
    store.upsert(rows(vectors[:30]))
    store.close()
    store = create_store(backend, D, tmp_path)  # writes after the last snapshot live only in the log
    store.upsert(rows(vectors[30:50], start=30))
    store.upsert(rows(vectors[50:52], start=0))  # replaces g0, g1
    store.delete(["g5", "g31"])  # a delete as the last write
    expected = top_ids(store, qs)
    # a crash: no close(); a new store on the same workspace (a torn, unacknowledged record at the end too)
    with open(tmp_path / LOG[backend], "ab") as f:
        f.write(b"U\x99\x00\x00\x00\x00\x00\x00\x00\x12\x34")
    again = create_store(backend, D, tmp_path)
    assert again.count() == 48 and not again.exists("g5") and not again.exists("g31") and again.exists("g49")
    assert top_ids(again, qs) == expected
    top = again.search(vectors[50:51], 1)[0][0]
    assert top[0].id == "g0" and top[1] == pytest.approx(1.0, abs=1e-5)
    assert top[0].uri == "/imgs/0.png" and top[0].tags == {"n": 0}
    assert (tmp_path / LOG[backend]).stat().st_size == 0  # replayed into a new snapshot
    # writes after the replay are durable too, and a second crash loses nothing
    again.upsert(rows(vectors[52:53], start=60))
    third = create_store(backend, D, tmp_path)
    assert third.count() == 49 and third.exists("g60")
    third.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_clear_survives_a_crash(tmp_path, data, backend):
    vectors, qs = data
    store = create_store(backend, D, tmp_path)
    store.upsert(rows(vectors[:10]))
    store.close()
    store = create_store(backend, D, tmp_path)
    store.clear()
    store.upsert(rows(vectors[10:12], start=10))
    again = create_store(backend, D, tmp_path)  # crash: no close()
    assert again.count() == 2 and again.exists("g10") and not again.exists("g0")
    again.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_log_is_compacted_when_it_outgrows_the_snapshot(tmp_path, data, backend):
    vectors, qs = data
    store = create_store(backend, D, tmp_path, persistence={"compact_min_bytes": 2048, "compact_ratio": 1.0})
    for start in range(0, 60, 5):
        store.upsert(rows(vectors[start : start + 5], start=start))
        log_bytes = (tmp_path / LOG[backend]).stat().st_size
        assert log_bytes <= max(2048, store.snapshot_bytes)  # bounded by the policy after every write
    assert 1 <= store.compactions < 12  # some, not one per write
    expected = top_ids(store, qs)
    again = create_store(backend, D, tmp_path)  # crash: snapshot + the rest of the log
    assert again.count() == 60 and top_ids(again, qs) == expected
    again.close()
    with pytest.raises(ValueError, match="unknown persistence options"):
        create_store(backend, D, tmp_path, persistence={"fsnyc": False})
