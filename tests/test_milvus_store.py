"""The Milvus store against the real engine (Milvus Lite, started by these tests), in-process and in the indexer.

No mock: every test talks to a Milvus Lite server process (pymilvus starts it for a
`.db` file; `milvus_server` starts one on a TCP port, the way a cluster is reached).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from docarray import DocList


from helpers import REPO_ROOT, subprocess_env

if not os.environ.get("CI"):
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install '.[milvus]'); CI installs it")

from mlcl_executor.stores import create_store  # noqa: E402
from mlcl_executor.indexer import META_FILE, MLCLIndexer  # noqa: E402
from mlcl_executor.stores.milvus import MilvusStore, milvus_options  # noqa: E402
from mlcl_executor.schemas import GalleryDoc, QueryDoc  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]  # Flows / a Milvus Lite process
D = 16


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return unit(rng.normal(size=(80, D))), unit(rng.normal(size=(6, D)))


def rows(vectors, prefix="g", start=0):
    return [{"id": f"{prefix}{start + i}", "embedding": v, "uri": f"/imgs/{prefix}{start + i}.png", "tags": {"n": start + i}}
            for i, v in enumerate(vectors)]


def exact_top(vectors, q, k):
    sims = vectors @ q
    order = np.argsort(-sims, kind="stable")[:k]
    return [f"g{i}" for i in order], sims[order]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = create_store("milvus", D, tmp_path_factory.mktemp("milvus"), milvus={"index_type": "FLAT"})
    yield s
    s.close()


def test_scores_are_cosine_similarity_and_exact_with_flat(store, data):
    vectors, qs = data
    store.clear()
    store.upsert(rows(vectors))
    assert store.count() == len(vectors)
    for q, hits in zip(qs, store.search(qs, 7)):
        ids, sims = exact_top(vectors, q, 7)
        assert [m.id for m, _ in hits] == ids
        np.testing.assert_allclose([s for _, s in hits], sims, atol=1e-5)
    best = store.search(vectors[3:4], 1)[0][0]
    assert best[0].id == "g3" and best[1] == pytest.approx(1.0, abs=1e-5)
    assert best[0].uri == "/imgs/g3.png" and best[0].tags == {"n": 3}
    (vec, tags), missing = store.lookup(["g3", "nope"])  # a search by gallery id reads the stored vector and tags
    np.testing.assert_allclose(vec, vectors[3], atol=1e-6)
    assert tags == {"n": 3} and missing is None


def test_upsert_replaces_delete_exists_clear(store, data):
    vectors, qs = data
    store.clear()
    store.upsert(rows(vectors[:10]))
    # Replacing g0 by g5's vector, new uri and tags: one document, found where g5 is.
    store.upsert([{"id": "g0", "embedding": vectors[5], "uri": None, "tags": {"replaced": True}}])
    assert store.count() == 10
    hits = store.search(vectors[5:6], 2)[0]
    assert {m.id for m, _ in hits} == {"g0", "g5"}
    g0 = next(m for m, _ in hits if m.id == "g0")
    assert g0.uri is None and g0.tags == {"replaced": True}
    assert store.exists("g1") and not store.exists("nope")
    store.delete(["g1", "g2"])
    assert store.count() == 8 and not store.exists("g1")
    assert all(m.id not in ("g1", "g2") for m, _ in store.search(vectors[1:2], 8)[0])
    store.clear()
    assert store.count() == 0 and store.search(qs, 3) == [[] for _ in qs]
    store.upsert(rows(vectors[:3]))  # the width survives a clear
    assert store.count() == 3


def test_bad_rows_are_rejected_before_anything_is_written(store, data):
    vectors, _ = data
    store.clear()
    bad = rows(vectors[:3]) + [{"id": "wide", "embedding": np.ones(D + 1, np.float32), "uri": None, "tags": {}}]
    with pytest.raises(ValueError, match="'wide': embedding of shape \\(17,\\), the store holds width 16"):
        store.upsert(bad)
    with pytest.raises(ValueError, match="ids must be at most 512 bytes"):
        store.upsert([{"id": "x" * 600, "embedding": vectors[0]}])
    assert store.count() == 0


def test_configuration_errors_name_the_problem(tmp_path, data):
    with pytest.raises(ValueError, match=r"unknown milvus options \['colection'\]"):
        milvus_options({"colection": "x"})
    with pytest.raises(ValueError, match="index_type 'HNSW' needs a Milvus server"):
        MilvusStore(D, tmp_path, index_type="HNSW")
    s = MilvusStore(D, tmp_path, collection="widths")
    s.upsert(rows(data[0][:2]))
    s.close()
    with pytest.raises(ValueError, match="holds vectors of width 16, not 8"):
        MilvusStore(8, tmp_path, collection="widths")


def test_persistence_is_the_databases_a_killed_writer_loses_nothing_acknowledged(tmp_path, data):
    """A process writes, prints that the writes were acknowledged, and is killed (SIGKILL):
    the Milvus Lite engine it started stops with it. Reopening the file finds every write."""
    vectors, qs = data
    np.save(tmp_path / "v.npy", vectors)
    script = textwrap.dedent(f"""
        import time, numpy as np
        from mlcl_executor.stores.milvus import MilvusStore
        v = np.load({str(tmp_path / 'v.npy')!r})
        s = MilvusStore({D}, {str(tmp_path / 'ws')!r})
        s.upsert([{{"id": f"g{{i}}", "embedding": v[i], "uri": None, "tags": {{"n": i}}}} for i in range(len(v))])
        s.delete(["g0"])
        print("acknowledged", s.count(), flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=subprocess_env(),
                            cwd=str(REPO_ROOT))
    try:
        line = proc.stdout.readline()
        assert line.strip() == f"acknowledged {len(vectors) - 1}", line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.time() + 30
    while True:  # the engine notices its parent's lock is gone and exits
        try:
            s = MilvusStore(D, tmp_path / "ws")
            break
        except ConnectionError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    try:
        assert s.count() == len(vectors) - 1 and not s.exists("g0") and s.exists("g1")
        assert (tmp_path / "ws" / "milvus.db").exists()
        assert s.index_type == "FLAT"  # the default on Milvus Lite: exact
        for q, hits in zip(qs, s.search(qs, 5)):
            order = np.argsort(-(vectors[1:] @ q), kind="stable")[:5]
            assert [m.id for m, _ in hits] == [f"g{i + 1}" for i in order]
    finally:
        s.close()


# ------------------------------------------------------------------ the indexer
def make_indexer(workspace, **kw) -> MLCLIndexer:
    return MLCLIndexer(backend="milvus", metas={"name": "indexer", "workspace": str(workspace)},
                       runtime_args={"shard_id": 0, "shards": kw.pop("shards", 1), "name": "indexer"}, **kw)


def test_indexer_on_milvus_keeps_no_state_and_learns_the_width_from_the_database(tmp_path, data):
    vectors, qs = data
    db = tmp_path / "db" / "gallery.db"  # outside the workspace: the indexer's workspace stays empty
    options = {"uri": str(db), "collection": "gallery", "index_type": "FLAT"}
    ix = make_indexer(tmp_path / "ws", milvus=options, expose_paths=True)
    assert ix.dim is None and ix.store is None  # nothing stored yet, nowhere
    docs = DocList[GalleryDoc]([GalleryDoc(id=f"g{i}", embedding=v, image=f"/imgs/g{i}.png",
                                           tags={"n": i, "thumbnail": f"data:image/png;base64,T{i}"})
                                for i, v in enumerate(vectors)])
    ix.index(docs)
    assert ix.count(DocList[GalleryDoc]())[0].count == len(vectors)
    # thumbnails stay in the collection's tags (replicas share the database, not a workspace)
    assert ix.thumbnails is None and ix.store.lookup(["g2"])[0][1]["thumbnail"] == "data:image/png;base64,T2"
    assert ix.thumbnail_lookup(DocList[GalleryDoc]([GalleryDoc(id="g2")]))[0].tags == {"thumbnail": "data:image/png;base64,T2"}
    res = ix.search(DocList[QueryDoc]([QueryDoc(id="q", embedding=vectors[4], reference_id="g4")]), parameters={"limit": 3})[0]
    ids, sims = exact_top(vectors, vectors[4], 4)
    assert [m.id for m in res.matches] == ids[1:] and res.scores == pytest.approx(list(sims[1:]), abs=1e-5)
    assert res.matches[0].uri == f"/imgs/{ids[1]}.png"
    ix.close()
    assert not (tmp_path / "ws" / META_FILE).exists()

    again = make_indexer(tmp_path / "other-ws", milvus=options)  # any workspace: the database knows
    try:
        assert again.dim == D and again.store.count() == len(vectors)
        answer = again.update(DocList[GalleryDoc]([GalleryDoc(id="g1", embedding=vectors[2]),
                                                   GalleryDoc(id="new", embedding=vectors[2])]))
        assert answer[0].error is None and "not in the index" in answer[1].error
        answer = again.delete(DocList[GalleryDoc]([GalleryDoc(id="g1"), GalleryDoc(id="new")]))
        assert answer[0].error is None and "not in the index" in answer[1].error
        assert again.store.count() == len(vectors) - 1
        with pytest.raises(ValueError, match="embedding width 8, the index holds width 16"):
            again.index(DocList[GalleryDoc]([GalleryDoc(id="w", embedding=np.ones(8, np.float32))]))
    finally:
        again.close()


def test_indexer_on_milvus_records_the_model_in_the_database_and_refuses_another(tmp_path, data):
    """The model record of a milvus index lives beside the collection (not in a workspace): every indexer on
    the collection reads it, another model's writes and searches are refused, /clear forgets it."""
    from mlcl_executor.errors import RequestError
    from mlcl_executor.vectors import MODEL_TAG

    vectors, _ = data
    options = {"uri": str(tmp_path / "db" / "gallery.db"), "collection": "gallery", "index_type": "FLAT"}

    def docs(ids, model):
        return DocList[GalleryDoc]([GalleryDoc(id=i, embedding=vectors[k], tags={MODEL_TAG: model})
                                    for k, i in enumerate(ids)])

    ix = make_indexer(tmp_path / "ws", milvus=options)
    ix.index(docs(["a", "b"], "model-A"))
    assert ix.count(DocList[GalleryDoc]())[0].model == "model-A" and ix.store.recorded_model() == "model-A"
    with pytest.raises(RequestError, match="holds vectors of model model-A.*model-B"):
        ix.index(docs(["c"], "model-B"))
    assert ix.store.count() == 2  # nothing of model B was stored
    ix.close()
    assert not any((tmp_path / "ws").rglob("mlcl-model.json"))  # the record is not in the workspace

    again = make_indexer(tmp_path / "other-ws", milvus=options)  # another indexer on the collection
    try:
        assert again.model_id == "model-A"
        out = again.search(DocList[QueryDoc]([QueryDoc(id="q", embedding=vectors[0], model="model-B"),
                                              QueryDoc(id="ok", embedding=vectors[0], model="model-A")]),
                           parameters={"limit": 1})
        assert "holds vectors of model model-A" in out[0].error and not out[0].matches
        assert out[1].error is None and out[1].matches[0].id == "a"
        again.clear(DocList[GalleryDoc]())
        assert again.store.recorded_model() is None and again.count(DocList[GalleryDoc]())[0].model is None
        again.index(docs(["c"], "model-B"))  # an empty index takes any model
        assert again.store.recorded_model() == "model-B"
    finally:
        again.close()


def test_indexer_on_milvus_refuses_shards(tmp_path):
    with pytest.raises(ValueError, match="run the indexer with replicas, not shards"):
        make_indexer(tmp_path, shards=2, milvus={"uri": str(tmp_path / "m.db")})


def test_a_milvus_lite_file_is_refused_to_a_second_process_with_what_to_do(tmp_path):
    held = MilvusStore(D, tmp_path)
    try:
        code = (f"from mlcl_executor.stores.milvus import MilvusStore\ntry:\n    MilvusStore({D}, {str(tmp_path)!r})\n"
                "except ConnectionError as exc:\n    print(exc)")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env=subprocess_env(), cwd=str(REPO_ROOT))
        assert "cannot open" in done.stdout and "run a Milvus server and set milvus.uri" in done.stdout, done.stderr[-2000:]
    finally:
        held.close()
