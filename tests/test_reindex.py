"""`mlcl index --reindex` (issue 21 item 4): the gallery of a workspace re-encoded with another model from the
stored paths into a fresh index, swapped in only when no indexer serves the workspace; the old index is whole
until then; documents that cannot be re-encoded stop it unless --drop-missing."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from docarray import DocList

from helpers import png_bytes, run_endpoint, tiny_checkpoint
from mlcl.bulk_encode import EncodeOptions
from mlcl.model_id import checkpoint_id
from mlcl_cli.reindex import reindex, work_folder
from mlcl_executor.indexer import MLCLIndexer
from mlcl_executor.schemas import GalleryDoc, QueryDoc, StatsDoc
from mlcl_executor.reference import NORM_TAG
from mlcl_executor.vectors import MODEL_TAG

OLD_MODEL = "0" * 16
OLD_DIM = 8
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]


def make_indexer(workspace, backend="memory") -> MLCLIndexer:
    return MLCLIndexer(backend=backend, metas={"name": "indexer", "workspace": str(workspace)},
                       runtime_args={"shard_id": 0, "shards": 1, "name": "indexer"})


@pytest.fixture()
def files(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    paths = []
    for i, colour in enumerate(COLOURS):
        path = root / f"img{i}.png"
        path.write_bytes(png_bytes(colour, (40, 30)))
        paths.append(path)
    return paths


def old_workspace(tmp_path, files, backend="memory", extra=()):
    """A workspace indexed with an 8-wide model `OLD_MODEL`: ids, paths and a thumbnail tag as `mlcl index` leaves them."""
    ws = tmp_path / "ws"
    indexer = make_indexer(ws, backend)
    rng = np.random.default_rng(0)
    docs = [GalleryDoc(id=f"shop/{p.name}", embedding=rng.normal(size=OLD_DIM).astype(np.float32),
                       tags={"path": str(p), "thumbnail": f"data:thumb{i}", "colour": i, MODEL_TAG: OLD_MODEL,
                             NORM_TAG: 3.0})
            for i, p in enumerate(files)]
    docs += [GalleryDoc(id=i, embedding=rng.normal(size=OLD_DIM).astype(np.float32), tags={MODEL_TAG: OLD_MODEL})
             for i in extra]
    indexer.index(DocList[GalleryDoc](docs))
    indexer.close()
    return ws


def options() -> EncodeOptions:
    return EncodeOptions(device="cpu", batch_size=2, workers=0)


@pytest.mark.parametrize("backend", ["memory", "hnsw"])
def test_reindex_re_encodes_from_the_stored_paths_and_keeps_ids_and_tags(tmp_path, files, backend):
    from mlcl_executor.encoder import MLCLEncoder

    ws = old_workspace(tmp_path, files, backend)
    result = reindex(ws, tiny_checkpoint(), options(), say=lambda line: None)
    assert result.swapped and (result.documents, result.encoded, result.dropped) == (5, 5, [])
    assert result.model_id == checkpoint_id(tiny_checkpoint()) and result.old_model == OLD_MODEL
    assert not work_folder(ws).exists()

    indexer = make_indexer(ws, backend)
    stats = indexer.count(DocList[GalleryDoc]())[0]
    assert (stats.count, stats.model) == (5, result.model_id) and stats.dim != OLD_DIM
    # the new vectors are the new model's gallery vectors of the same files: each file's own vector finds it first
    encoder = MLCLEncoder(checkpoint=str(tiny_checkpoint()), device="cpu", decode_workers=0, thumbnail_size=0)
    served = run_endpoint(encoder.encode_gallery(DocList[GalleryDoc]([GalleryDoc(image=p.read_bytes()) for p in files])))
    queries = DocList[QueryDoc]([QueryDoc(id=p.name, embedding=d.embedding, model=result.model_id) for p, d in zip(files, served)])
    answer = indexer.search(queries, parameters={"limit": 1})
    for path, query in zip(files, answer):
        assert query.error is None and query.matches[0].id == f"shop/{path.name}"
        assert query.scores[0] == pytest.approx(1.0, abs=1e-5)
    stored = {m.id: m.tags for m in indexer.store.documents()}
    assert stored["shop/img3.png"]["colour"] == 3
    # the new model's feature norm, not the old one's (which would fuse the new vector wrongly in a search by id)
    new_norms = {f"shop/{p.name}": d.tags[NORM_TAG] for p, d in zip(files, served)}
    assert all(stored[i][NORM_TAG] == pytest.approx(n, rel=1e-5) for i, n in new_norms.items())
    assert stored["shop/img3.png"][NORM_TAG] != 3.0
    # thumbnails live in the workspace's files (not the store's tags) and come with the swap
    thumb = indexer.thumbnail_lookup(DocList[GalleryDoc]([GalleryDoc(id="shop/img3.png")]))[0]
    assert thumb.error is None and thumb.tags["thumbnail"] == "data:thumb3"
    encoder.close()
    indexer.close()


def test_documents_without_an_image_stop_it_unless_dropped(tmp_path, files):
    ws = old_workspace(tmp_path, files, extra=["from-vectors"])
    with pytest.raises(ValueError, match="1 of 6 documents cannot be re-encoded.*'from-vectors'.*--drop-missing"):
        reindex(ws, tiny_checkpoint(), options(), say=lambda line: None)
    indexer = make_indexer(ws)  # untouched: the old model, all six
    assert (indexer.count(DocList[GalleryDoc]())[0].count, indexer.model_id) == (6, OLD_MODEL)
    indexer.close()
    result = reindex(ws, tiny_checkpoint(), options(), drop_missing=True, say=lambda line: None)
    assert (result.encoded, [i for i, _ in result.dropped]) == (5, ["from-vectors"])


def test_the_swap_waits_for_the_serving_flow_which_answers_from_the_old_index_meanwhile(tmp_path, files):
    ws = old_workspace(tmp_path, files)
    serving = make_indexer(ws)  # a Flow's indexer on the workspace
    said, results = [], []
    worker = threading.Thread(target=lambda: results.append(
        reindex(ws, tiny_checkpoint(), options(), say=said.append)))
    worker.start()
    deadline = time.monotonic() + 120
    while not said and time.monotonic() < deadline:
        time.sleep(0.2)
    assert said and "stop it to swap" in said[0]
    query = DocList[QueryDoc]([QueryDoc(id="q", embedding=np.ones(OLD_DIM, np.float32), model=OLD_MODEL)])
    assert len(serving.search(query, parameters={"limit": 3})[0].matches) == 3  # still served, from the old index
    assert serving.store.count() == 5
    serving.close()  # the Flow stops: the swap goes ahead
    worker.join(120)
    assert results and results[0].swapped
    reopened = make_indexer(ws)
    assert reopened.model_id == checkpoint_id(tiny_checkpoint()) and reopened.store.count() == 5
    reopened.close()


def test_cli_reindex_one_line_errors(tmp_path, capsys):
    from mlcl_cli.cli import main

    assert main(["index", "--reindex", "--workspace", str(tmp_path / "nothing"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    assert main(["index", "--reindex", "some/folder", "--workspace", str(tmp_path)]) == 2
    assert "takes no images" in capsys.readouterr().err
