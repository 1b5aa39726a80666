"""The model id of an index's vectors (issue 21 item 4) and deleting by prefix (item 5), in-process.

The workspace records the model of the first write into an empty index; writes and searches of another
model are refused, naming both ids; `/clear` forgets the record; `/delete` takes an id prefix.
"""

from __future__ import annotations

import numpy as np
import pytest
from docarray import DocList

from mlcl_executor.errors import RequestError
from mlcl_executor.indexer import MLCLIndexer
from mlcl_executor.schemas import GalleryDoc, QueryDoc, StatsDoc, VectorsDoc
from mlcl_executor.vectors import MODEL_TAG
from mlcl_executor.workspace_model import MODEL_FILE, recorded_model, try_exclusive, workspace_models

D = 8
MODEL_A, MODEL_B = "a" * 16, "b" * 16


def vectors(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def gallery(ids, model=MODEL_A, seed=0):
    return DocList[GalleryDoc]([GalleryDoc(id=i, embedding=v, tags={"n": k, **({MODEL_TAG: model} if model else {})})
                                for k, (i, v) in enumerate(zip(ids, vectors(len(ids), seed)))])


def make_indexer(workspace, backend="memory") -> MLCLIndexer:
    """An indexer on `workspace` as flows/flow.yml's (its folder: WORKSPACE/MLCLIndexer/0)."""
    return MLCLIndexer(backend=backend, metas={"name": "MLCLIndexer", "workspace": str(workspace)},
                       runtime_args={"shard_id": 0, "shards": 1, "name": "indexer"})


def count(indexer) -> StatsDoc:
    return indexer.count(DocList[GalleryDoc]())[0]


@pytest.mark.parametrize("backend", ["memory", "hnsw"])
def test_the_first_write_records_the_model_and_other_models_are_refused(tmp_path, backend):
    indexer = make_indexer(tmp_path, backend)
    assert count(indexer).model is None
    answer = indexer.index(gallery(["x/1", "x/2", "y/1"]))
    assert all(MODEL_TAG not in d.tags for d in answer)  # the tag is checked, not stored or echoed
    assert recorded_model(indexer.workdir) == MODEL_A and count(indexer).model == MODEL_A

    with pytest.raises(RequestError, match=f"model {MODEL_A}.*encoder's model is {MODEL_B}.*mlcl index --reindex"):
        indexer.index(gallery(["z/1"], model=MODEL_B))
    with pytest.raises(RequestError, match=f"holds vectors of model {MODEL_A}"):
        indexer.index_vectors(DocList[VectorsDoc]([VectorsDoc(ids=["z/2"], embeddings=vectors(1), model=MODEL_B)]))
    assert count(indexer).count == 3  # nothing of model B was stored

    queries = DocList[QueryDoc]([QueryDoc(id="q-b", embedding=vectors(1)[0], model=MODEL_B),
                                 QueryDoc(id="q-a", embedding=vectors(1)[0], model=MODEL_A),
                                 QueryDoc(id="q-untagged", embedding=vectors(1)[0])])
    out = indexer.search(queries, parameters={"limit": 2})
    assert f"holds vectors of model {MODEL_A}" in out[0].error and MODEL_B in out[0].error and not out[0].matches
    assert out[1].error is None and len(out[1].matches) == 2
    assert out[2].error is None and len(out[2].matches) == 2  # a vector without a model id is not checked
    indexer.close()

    reopened = make_indexer(tmp_path, backend)  # the record survives a restart
    assert reopened.model_id == MODEL_A and workspace_models(tmp_path) == {reopened.workdir: MODEL_A}
    reopened.close()


def test_clear_forgets_the_model_and_an_unrecorded_index_adopts_none(tmp_path):
    indexer = make_indexer(tmp_path / "a")
    indexer.index(gallery(["1", "2"]))
    indexer.clear(DocList[GalleryDoc]())
    assert count(indexer).model is None and not (indexer.workdir / MODEL_FILE).exists()
    indexer.index(gallery(["3"], model=MODEL_B))  # an empty index takes any model
    assert count(indexer).model == MODEL_B
    indexer.close()

    legacy = make_indexer(tmp_path / "b")  # vectors written before model ids were recorded
    legacy.index(gallery(["1", "2"], model=None))
    legacy.index(gallery(["3"], model=MODEL_A))
    assert count(legacy).model is None  # not adopted: the untagged vectors' model is unknown
    legacy.close()


def test_one_request_of_two_models_is_refused(tmp_path):
    indexer = make_indexer(tmp_path)
    docs = gallery(["1"]) + gallery(["2"], model=MODEL_B)
    with pytest.raises(RequestError, match="vectors of models"):
        indexer.index(DocList[GalleryDoc](docs))
    assert count(indexer).count == 0 and count(indexer).model is None
    indexer.close()


@pytest.mark.parametrize("backend", ["memory", "hnsw"])
def test_delete_by_prefix(tmp_path, backend):
    indexer = make_indexer(tmp_path, backend)
    indexer.index(gallery(["shop1/a.png", "shop1/b/c.png", "shop10/a.png", "shop2/a.png"]))
    answer = indexer.delete(DocList[GalleryDoc](), parameters={"prefix": "shop1/"})
    assert sorted(d.id for d in answer) == ["shop1/a.png", "shop1/b/c.png"]
    assert count(indexer).count == 2
    assert len(indexer.delete(DocList[GalleryDoc](), parameters={"prefix": "nothing/"})) == 0
    for bad in ("", 3):
        with pytest.raises(RequestError, match="prefix"):
            indexer.delete(DocList[GalleryDoc](), parameters={"prefix": bad})
    with pytest.raises(RequestError, match="without documents"):
        indexer.delete(DocList[GalleryDoc]([GalleryDoc(id="shop2/a.png")]), parameters={"prefix": "shop"})
    assert count(indexer).count == 2
    indexer.close()


def test_a_serving_indexer_holds_its_workspace(tmp_path):
    indexer = make_indexer(tmp_path)
    assert try_exclusive(indexer.workdir) is None  # `mlcl index --reindex` does not swap under a running indexer
    indexer.close()
    handle = try_exclusive(indexer.workdir)
    assert handle is not None
    handle.close()


def test_mlcl_serve_refuses_a_workspace_of_another_model_in_one_line(tmp_path, capsys):
    from helpers import tiny_checkpoint

    from mlcl.model_id import checkpoint_id
    from mlcl_cli.cli import main
    from mlcl_cli.flows import free_port

    checkpoint = tiny_checkpoint()
    indexer = make_indexer(tmp_path / "ws")
    indexer.index(gallery(["1"], model=MODEL_A))
    indexer.close()
    ports = ["--grpc-port", str(free_port()), "--http-port", str(free_port())]
    assert main(["serve", "--workspace", str(tmp_path / "ws"), "--checkpoint", str(checkpoint), *ports]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("mlcl serve: workspace ")
    for part in (MODEL_A, checkpoint_id(checkpoint), "new --workspace", "mlcl index --reindex"):
        assert part in err[0]


def test_mlcl_serve_checks_the_model_its_flow_file_names(tmp_path, capsys):
    """A Flow YAML whose encoder names its own checkpoint (no --checkpoint): that model is the one checked."""
    import yaml
    from helpers import tiny_checkpoint

    from mlcl.model_id import checkpoint_id
    from mlcl.paths import DEFAULT_CHECKPOINT
    from mlcl_cli.cli import main
    from mlcl_cli.flows import encoder_checkpoint, flow_config, free_port

    checkpoint = tiny_checkpoint()
    config = flow_config(encoder_with={"checkpoint": str(checkpoint)})
    flow = tmp_path / "mine.yml"
    flow.write_text(yaml.safe_dump(config, sort_keys=False))
    assert encoder_checkpoint(flow_config(flow)) == checkpoint.resolve()
    assert encoder_checkpoint(flow_config()) == DEFAULT_CHECKPOINT  # flows/flow.yml: config.yml's null
    indexer = make_indexer(tmp_path / "ws")
    indexer.index(gallery(["1"], model=checkpoint_id(DEFAULT_CHECKPOINT)))  # vectors of the bundled model
    indexer.close()
    ports = ["--grpc-port", str(free_port()), "--http-port", str(free_port())]
    assert main(["serve", "--flow", str(flow), "--workspace", str(tmp_path / "ws"), *ports]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and checkpoint_id(checkpoint) in err[0] and checkpoint.name in err[0], err


def test_the_encoder_names_its_model_on_the_vectors_it_passes_on(tmp_path):
    from helpers import png_bytes, run_endpoint, tiny_checkpoint

    from mlcl.model_id import checkpoint_id
    from mlcl_executor.encoder import MLCLEncoder

    encoder = MLCLEncoder(checkpoint=str(tiny_checkpoint()), device="cpu", decode_workers=0, thumbnail_size=0)
    model = checkpoint_id(tiny_checkpoint())
    gallery_answer = run_endpoint(encoder.encode_gallery(DocList[GalleryDoc]([GalleryDoc(id="g", image=png_bytes())])))
    query_answer = encoder.encode_queries(DocList[QueryDoc]([QueryDoc(id="q", image=png_bytes(), text="make it blue")]))
    assert gallery_answer[0].tags[MODEL_TAG] == model and query_answer[0].model == model
    # a Flow of this encoder in front of an index of another model: refused, nothing stored, no search answered
    indexer = make_indexer(tmp_path)
    indexer.index(gallery(["other"], model=MODEL_A))
    with pytest.raises(RequestError, match=f"model {MODEL_A} and the encoder's model is {model}"):
        indexer.index(gallery_answer)
    searched = indexer.search(query_answer)
    assert f"the encoder's model is {model}" in searched[0].error and not searched[0].matches
    encoder.close()
    indexer.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_flow_composed_by_hand_refuses_another_models_index(tmp_path):
    """Not `mlcl serve` (which refuses at start): a Flow started from its YAML on a workspace of another model."""
    from helpers import REPO_ROOT, png_bytes, running_flow, tiny_checkpoint

    from mlcl.model_id import checkpoint_id
    from mlcl_cli.client import grpc_client, refusal

    indexer = make_indexer(tmp_path / "ws")
    indexer.index(gallery(["old/1", "old/2"], model=MODEL_A))
    indexer.close()
    model = checkpoint_id(tiny_checkpoint())
    with running_flow(REPO_ROOT / "flows" / "flow.yml", tmp_path / "ws",
                      encoder_with={"checkpoint": str(tiny_checkpoint()), "decode_workers": 0}) as flow:
        client = grpc_client(port=flow["grpc"])
        with pytest.raises(Exception) as info:
            client.post("/index", DocList[GalleryDoc]([GalleryDoc(id="new", image=png_bytes())]), return_type=DocList[GalleryDoc])
        reason = refusal(info.value)
        assert reason is not None and f"holds vectors of model {MODEL_A} and the encoder's model is {model}" in reason
        answer = client.post("/search", DocList[QueryDoc]([QueryDoc(image=png_bytes(), text="make it blue")]),
                             return_type=DocList[QueryDoc])
        assert f"the encoder's model is {model}" in answer[0].error and not answer[0].matches
        stats = client.post("/count", DocList[GalleryDoc](), return_type=DocList[StatsDoc])[0]
        assert (stats.count, stats.model) == (2, MODEL_A)  # nothing of the other model was stored
