"""Vectors in bulk: gallery documents that bring their own vector skip the model (when the model id matches),
and `mlcl index --vectors FILE.npy --ids FILE.txt` loads them through a running Flow."""

from __future__ import annotations

import json

import numpy as np
import pytest
from docarray import DocList

from helpers import png_bytes, run_endpoint, tiny_checkpoint
from mlcl_executor.schemas import GalleryDoc, QueryDoc, StatsDoc
from mlcl_cli.flows import free_port
from mlcl_cli.client import grpc_client
from mlcl_executor.vectors import MODEL_TAG, checkpoint_id, load_vector_files


@pytest.fixture(scope="module")
def encoder(counting_encoder):
    return counting_encoder


def test_vectors_with_the_model_id_skip_the_model_others_are_refused(encoder):
    dim = encoder.model.embed_dim
    rng = np.random.default_rng(0)
    good = rng.normal(size=(3, dim)).astype(np.float32)
    mid = checkpoint_id(tiny_checkpoint())
    assert encoder.model_id == mid and len(mid) == 16
    docs = DocList[GalleryDoc]([
        GalleryDoc(id="v0", embedding=good[0], tags={MODEL_TAG: mid, "kind": "vector"}),
        GalleryDoc(id="v1", embedding=good[1], tags={MODEL_TAG: "0123456789abcdef"}),
        GalleryDoc(id="v2", embedding=good[2]),  # no model id
        GalleryDoc(id="v3", embedding=np.ones(dim + 1, np.float32), tags={MODEL_TAG: mid}),
        GalleryDoc(id="v4", embedding=np.full(dim, np.nan, np.float32), tags={MODEL_TAG: mid}),
        GalleryDoc(id="img", image=png_bytes((200, 30, 30))),
    ])
    encoder.calls["image"].clear()
    out = run_endpoint(encoder.encode_gallery(docs=docs))
    assert encoder.calls["image"] == [1]  # only the image went through the model
    np.testing.assert_array_equal(out[0].embedding, good[0])
    # the model tag is checked and answered (the encoder names the model of each vector it passes on; the indexer
    # checks it against its workspace's and does not store it: tests/test_workspace_model.py)
    assert out[0].error is None and out[0].tags == {"kind": "vector", MODEL_TAG: mid}
    assert "tags['mlcl_model'] = '0123456789abcdef'" in out[1].error and mid in out[1].error
    assert "tags['mlcl_model'] = None" in out[2].error
    assert f"the model's vectors have width {dim}" in out[3].error
    assert "NaN" in out[4].error
    assert all(d.embedding is None for d in out[1:5])
    assert out[5].error is None and out[5].embedding.shape == (dim,) and out[5].tags[MODEL_TAG] == mid
    # queries never take a client's vector: /search encodes what it is given
    q = run_endpoint(encoder.encode_queries(docs=DocList[QueryDoc]([QueryDoc(id="q", embedding=good[0])])))[0]
    assert q.embedding is None and "neither image nor text" in q.error


def test_vector_files_are_checked(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((3, 4), np.float32))
    (tmp_path / "ids.txt").write_text("a\nb\nc\n")
    matrix, ids = load_vector_files(tmp_path / "v.npy", tmp_path / "ids.txt")
    assert matrix.shape == (3, 4) and ids == ["a", "b", "c"]
    (tmp_path / "two.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="2 ids for 3 vectors"):
        load_vector_files(tmp_path / "v.npy", tmp_path / "two.txt")
    (tmp_path / "dup.txt").write_text("a\na\nb\n")
    with pytest.raises(ValueError, match="unique"):
        load_vector_files(tmp_path / "v.npy", tmp_path / "dup.txt")
    np.save(tmp_path / "bad.npy", np.zeros(3))
    with pytest.raises(ValueError, match="2-D float matrix"):
        load_vector_files(tmp_path / "bad.npy", tmp_path / "ids.txt")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mlcl_index_vectors_through_a_flow(tmp_path):
    from test_flow_restart import Server, cli

    grpc, http = free_port(), free_port()
    ckpt = str(tiny_checkpoint())
    server = Server(["--grpc-port", str(grpc), "--http-port", str(http), "--workspace", str(tmp_path / "ws"),
                     "--checkpoint", ckpt, "--device", "cpu"], tmp_path / "serve.log")
    try:
        server.wait_ready()
        client = grpc_client(port=grpc)
        image = png_bytes((30, 200, 30), (40, 36))
        # the vector of an image as the Flow computes it (/encode as gallery), then sent in bulk under other ids
        vec = client.post("/encode", DocList[QueryDoc]([QueryDoc(id="x", image=image)]), parameters={"as": "gallery"},
                          return_type=DocList[QueryDoc])[0].embedding
        rng = np.random.default_rng(1)
        others = rng.normal(size=(2499, len(vec))).astype(np.float32)
        np.save(tmp_path / "g.npy", np.vstack([np.asarray(vec, np.float32)[None], others]))
        (tmp_path / "g.txt").write_text("\n".join(["same-as-image"] + [f"v{i}" for i in range(2499)]) + "\n")

        wrong = cli("index", "--vectors", str(tmp_path / "g.npy"), "--ids", str(tmp_path / "g.txt"),
                    "--model-id", "0000000000000000", "--port", str(grpc), "--no-progress", "--batch-size", "500")
        assert wrong.returncode == 1 and "cannot be mixed in" in wrong.stderr
        assert client.post("/count", DocList[GalleryDoc](), return_type=DocList[StatsDoc])[0].count == 0

        done = cli("index", "--vectors", str(tmp_path / "g.npy"), "--ids", str(tmp_path / "g.txt"),
                   "--checkpoint", ckpt, "--port", str(grpc), "--no-progress", "--batch-size", "500")
        assert done.returncode == 0, done.stderr
        assert "indexed 2500 of 2500 vectors" in done.stdout and "the index holds 2500" in done.stdout
        found = cli("search", "--image", str(_write(tmp_path / "q.png", image)), "-k", "3", "--json", "--port", str(grpc))
        answer = json.loads(found.stdout)
        assert answer["matches"][0]["id"] == "same-as-image", answer
        assert server.stop() == 0
    finally:
        server.kill()


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_vector_blocks_are_checked_by_the_encoder_and_stored_by_the_shards(encoder, tmp_path):
    from mlcl_executor.indexer import MLCLIndexer
    from mlcl_executor.merger import MLCLMerger
    from mlcl_executor.schemas import VectorsDoc

    dim = encoder.model.embed_dim
    rng = np.random.default_rng(2)
    vecs = rng.normal(size=(50, dim)).astype(np.float32)
    ids = [f"b{i}" for i in range(50)]
    mid = encoder.model_id

    def blocks():
        return DocList[VectorsDoc]([
            VectorsDoc(id="ok", ids=ids, embeddings=vecs, model=mid),
            VectorsDoc(id="other-model", ids=ids[:2], embeddings=vecs[:2], model="ffffffffffffffff"),
            VectorsDoc(id="short", ids=ids[:3], embeddings=vecs[:2], model=mid),
            VectorsDoc(id="wide", ids=ids[:2], embeddings=np.ones((2, dim + 1), np.float32), model=mid),
        ])

    encoder.calls["image"].clear()
    checked = encoder.check_vector_blocks(docs=blocks())
    assert encoder.calls["image"] == []  # no model work
    assert checked[0].error is None and checked[0].embeddings is not None
    assert "cannot be mixed in" in checked[1].error and "of shape (2, 32), expected (3, 32) (one row per id: 3 ids)" in checked[2].error
    assert f"expected (2, {dim})" in checked[3].error and all(d.embeddings is None for d in checked[1:])

    shards = [MLCLIndexer(metas={"name": "ix", "workspace": str(tmp_path)}, runtime_args={"shard_id": s, "shards": 2, "name": "ix"})
              for s in range(2)]
    answers = [s.index_vectors(docs=encoder.check_vector_blocks(docs=blocks())) for s in shards]
    merged = MLCLMerger().merge_vectors(docs_matrix=answers)
    assert merged[0].count == 50 and merged[0].error is None and merged[0].embeddings is None
    assert [d.count for d in merged[1:]] == [0, 0, 0] and all(d.error for d in merged[1:])
    assert sum(s.store.count() for s in shards) == 50 and all(s.store.count() > 0 for s in shards)
    hits = shards[0].store.search(vecs[:1], 1)[0] + shards[1].store.search(vecs[:1], 1)[0]
    assert max(hits, key=lambda h: h[1])[0].id == "b0"
    # a block of another width than the index holds is rejected as a whole
    with pytest.raises(ValueError, match=r"rejected, nothing was stored: .*of shape \(1, 7\), expected \(1, \d+\) .*the index holds width"):
        shards[0].index_vectors(docs=DocList[VectorsDoc]([VectorsDoc(ids=["x"], embeddings=np.ones((1, 7), np.float32), model=mid)]))


def test_a_block_with_a_bad_norm_is_refused_naming_it(encoder, tmp_path):
    from mlcl_executor.errors import RequestError
    from mlcl_executor.indexer import MLCLIndexer
    from mlcl_executor.reference import NORM_TAG
    from mlcl_executor.schemas import VectorsDoc

    dim, mid = encoder.model.embed_dim, encoder.model_id
    vecs = np.random.default_rng(3).normal(size=(4, dim)).astype(np.float32)
    ids = ["n0", "n1", "n2", "n3"]
    good = np.array([2.0, 3.0, 4.0, 5.0], np.float32)

    def block(name, norms):
        return VectorsDoc(id=name, ids=ids, embeddings=vecs, model=mid, norms=norms)

    checked = encoder.check_vector_blocks(docs=DocList[VectorsDoc]([
        block("good", good), block("none", None), block("nan", np.array([2, np.nan, 4, 5], np.float32)),
        block("zero", np.array([2, 3, 0, 0], np.float32)), block("negative", np.array([-1, 3, 4, 5], np.float32)),
        block("short", good[:3]),
    ]))
    assert checked[0].error is None and checked[1].error is None and checked[0].norms is not None
    assert checked[2].error == "document 'nan': norm of id 'n1' is nan: a feature norm is finite and > 0"
    assert checked[3].error == "document 'zero': norm of id 'n2' is 0.0 (and 1 more): a feature norm is finite and > 0"
    assert checked[4].error == "document 'negative': norm of id 'n0' is -1.0: a feature norm is finite and > 0"
    assert checked[5].error == "document 'short': norms of shape (3,), expected (4,) (one per id)"
    assert all(d.embeddings is None and d.norms is None for d in checked[2:])

    # an indexer that is sent such a block (a Flow without the encoder's check) stores nothing of the request
    indexer = MLCLIndexer(metas={"name": "ix", "workspace": str(tmp_path)}, runtime_args={"shard_id": 0, "shards": 1, "name": "ix"})
    with pytest.raises(RequestError, match="rejected, nothing was stored: document 'nan': norm of id 'n1' is nan"):
        indexer.index_vectors(docs=DocList[VectorsDoc]([block("good", good), block("nan", np.array([2, np.nan, 4, 5], np.float32))]))
    assert indexer.store is None or indexer.store.count() == 0
    answer = indexer.index_vectors(docs=DocList[VectorsDoc]([block("good", good)]))
    assert answer[0].count == 4 and answer[0].norms is None  # answers carry counts, not arrays
    assert [hit[1][NORM_TAG] for hit in indexer.store.lookup(ids)] == [2.0, 3.0, 4.0, 5.0]  # the tag /index writes
    indexer.close()


def test_encode_as_gallery_always_recomputes_a_querys_vector(encoder):
    # /encode takes QueryDocs: a vector left from an earlier call is not a "vector in bulk" (and has no model tag)
    dim = encoder.model.embed_dim
    docs = DocList[QueryDoc]([QueryDoc(id="a", image=png_bytes((30, 30, 200)))])
    first = run_endpoint(encoder.encode(docs=docs, parameters={"as": "gallery"}))[0]
    assert first.error is None and first.embedding.shape == (dim,)
    again = run_endpoint(encoder.encode(docs=DocList[QueryDoc]([QueryDoc(id="a", embedding=np.ones(dim, np.float32))]), parameters={"as": "gallery"}))[0]
    assert again.embedding is None and "has no image" in again.error
