"""`mlcl encode FOLDER --out DIR` (mlcl/bulk_encode.py): the vectors and ids a served encoder would give the same
files, resumable (a second run skips what is done; a stopped run keeps whole parts), a folder of another model
refused; `mlcl index --vectors DIR` loads the folder into a running Flow."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from docarray import DocList
from PIL import Image

from helpers import png_bytes, run_endpoint, tiny_checkpoint
from mlcl.bulk_encode import EncodeOptions, encode_folder
from mlcl.gallery_files import gallery_items
from mlcl.model_id import checkpoint_id
from mlcl.vector_files import META_FILE, VectorDir
from mlcl_executor.reference import NORM_TAG
from mlcl_cli.commands.index import collect


def jpeg_bytes(seed: int, size=(900, 600)) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.clip(rng.normal(120, 40, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture()
def gallery(tmp_path):
    root = tmp_path / "gallery"
    (root / "tops").mkdir(parents=True)
    for i in range(5):
        (root / f"photo{i}.jpg").write_bytes(jpeg_bytes(i))
    (root / "tops" / "red.png").write_bytes(png_bytes((200, 30, 30), (40, 30)))
    (root / "tops" / "green.png").write_bytes(png_bytes((30, 200, 30), (30, 60)))
    (root / "broken.jpg").write_bytes(jpeg_bytes(9)[:500])
    (root / "notes.txt").write_text("not an image")
    return root


def options(**kw) -> EncodeOptions:
    return EncodeOptions(checkpoint=tiny_checkpoint(), device="cpu", batch_size=3, workers=kw.pop("workers", 0), **kw)


@pytest.mark.slow  # DataLoader worker processes
def test_vectors_and_ids_are_those_of_the_served_encoder(gallery, tmp_path):
    from mlcl_executor.encoder import MLCLEncoder
    from mlcl_executor.schemas import GalleryDoc

    result = encode_folder([gallery], tmp_path / "vecs", options(workers=2))
    assert (result.found, result.skipped, result.encoded) == (8, 0, 7)
    assert [doc_id for doc_id, _ in result.failed] == ["broken.jpg"]
    folder = VectorDir.open(tmp_path / "vecs")
    assert folder.model_id == checkpoint_id(tiny_checkpoint()) == result.model_id
    matrix, ids = folder.load()
    # the ids `mlcl index FOLDER` gives
    expected = [doc_id for doc_id, _ in collect([gallery], recursive=True) if doc_id != "broken.jpg"]
    assert sorted(ids) == expected and ids == [i for i, _ in gallery_items([gallery]) if i != "broken.jpg"]
    assert "tops/red.png" in ids
    encoder = MLCLEncoder(checkpoint=str(tiny_checkpoint()), device="cpu", decode_workers=0, thumbnail_size=0)
    docs = DocList[GalleryDoc]([GalleryDoc(id=i, image=(gallery / i).read_bytes()) for i in ids])
    served = run_endpoint(encoder.encode_gallery(docs))
    np.testing.assert_allclose(matrix, np.stack([d.embedding for d in served]), atol=1e-5)
    # each vector's feature norm, as the served encoder stores it (a search by gallery id needs it)
    norms = np.concatenate([part.norms for part in folder.parts()])
    np.testing.assert_allclose(norms, [d.tags[NORM_TAG] for d in served], rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    encoder.close()


def test_a_second_run_skips_what_is_done_and_adds_only_new_files(gallery, tmp_path):
    out = tmp_path / "vecs"
    first = encode_folder([gallery], out, options())
    before = VectorDir.open(out).load()
    again = encode_folder([gallery], out, options())
    assert (again.skipped, again.encoded, [i for i, _ in again.failed]) == (7, 0, ["broken.jpg"])
    (gallery / "tops" / "blue.png").write_bytes(png_bytes((30, 30, 200), (50, 50)))
    third = encode_folder([gallery], out, options())
    assert (third.skipped, third.encoded) == (7, 1)
    matrix, ids = VectorDir.open(out).load()
    assert len(ids) == len(set(ids)) == 8 and ids[-1] == "tops/blue.png"
    np.testing.assert_array_equal(matrix[:7], before[0])
    assert first.encoded == 7
    # every part has its norms, row for row: those of a single run over the same files
    encode_folder([gallery], tmp_path / "once", options())
    assert norms_by_id(out) == pytest.approx(norms_by_id(tmp_path / "once"), rel=1e-5)
    assert len(norms_by_id(out)) == 8 and min(norms_by_id(out).values()) > 0


@pytest.mark.slow  # DataLoader worker processes
def test_a_stopped_run_keeps_whole_parts_and_the_next_run_finishes(gallery, tmp_path):
    out = tmp_path / "vecs"
    batches = []

    def stop_after_two(n):
        batches.append(n)
        if len(batches) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encode_folder([gallery], out, options(part_size=2, workers=1), progress=stop_after_two)
    folder = VectorDir.open(out)
    kept = folder.ids()
    assert 0 < len(kept) < 7 and len(folder.part_numbers()) >= 1
    # a part cut short (its matrix never renamed into place) does not count
    (out / "part-000099.txt").write_text("ghost\n")
    (out / "part-000099.npy.tmp").write_bytes(b"partial")
    resumed = encode_folder([gallery], out, options())
    assert resumed.skipped == len(kept) and resumed.encoded == 7 - len(kept)
    matrix, ids = VectorDir.open(out).load()
    assert sorted(ids) == sorted(i for i, _ in gallery_items([gallery]) if i != "broken.jpg")
    assert matrix.shape == (7, VectorDir.open(out).dim)


def test_a_folder_of_another_model_or_not_a_vector_folder_is_refused(gallery, tmp_path):
    out = tmp_path / "vecs"
    encode_folder([gallery], out, options())
    meta = json.loads((out / META_FILE).read_text())
    meta["model_id"] = "0123456789abcdef"
    (out / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="two models cannot be mixed"):
        encode_folder([gallery], out, options())
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a vector folder"):
        encode_folder([gallery], other, options())
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        encode_folder([tmp_path / "missing"], tmp_path / "v2", options())


def norms_by_id(out) -> dict:
    return {i: n for part in VectorDir.open(out).parts() for i, n in zip(part.ids, part.norms.tolist())}


def test_a_damaged_part_is_named(gallery, tmp_path):
    out = tmp_path / "vecs"
    encode_folder([gallery], out, options(part_size=3))
    (out / "part-000001.txt").write_text("a\n")
    with pytest.raises(ValueError, match=r"part-000001.txt: 1 ids for \d+ vectors"):
        VectorDir.open(out).load()
    np.save(out / "part-000000.norms.npy", np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"part-000000.norms.npy: expected \d+ float norms \(one per vector\), got shape \(2,\)"):
        VectorDir.open(out).load()


def test_a_folder_without_norms_still_loads_its_documents_not_searchable_by_id(gallery, tmp_path, make_encoder):
    """A folder written before the norms were (or by another writer): `mlcl index --vectors DIR` sends it as before;
    a search by the id of one of its documents is the clear 'no feature norm' refusal, not a wrong answer."""
    import argparse

    from mlcl_cli.commands.index import _vector_blocks, vectors_doc
    from mlcl_executor.indexer import MLCLIndexer
    from mlcl_executor.schemas import GalleryDoc, VectorsDoc

    out = tmp_path / "vecs"
    encode_folder([gallery], out, options(part_size=4))
    full = VectorDir.open(out).load()
    for f in out.glob("part-*.norms.npy"):
        f.unlink()
    folder = VectorDir.open(out)
    matrix, ids = folder.load()
    np.testing.assert_array_equal(matrix, full[0])
    assert ids == full[1] and all(part.norms is None for part in folder.parts())
    args = argparse.Namespace(paths=[], vectors=out, ids=None, model_id=None, checkpoint=None, id_prefix="")
    model_id, total, blocks = _vector_blocks(args, 5)
    docs = DocList[VectorsDoc]([vectors_doc(model_id, *block) for block in blocks])
    assert total == 7 and all(d.norms is None for d in docs)
    encoder = make_encoder(thumbnail_size=0)
    indexer = MLCLIndexer(metas={"name": "ix", "workspace": str(tmp_path / "ws")}, runtime_args={"shard_id": 0, "shards": 1, "name": "ix"})
    answer = indexer.index_vectors(encoder.check_vector_blocks(docs))
    assert [d.error for d in answer] == [None, None] and sum(d.count for d in answer) == 7
    found = indexer.lookup(DocList[GalleryDoc]([GalleryDoc(id="tops/red.png")]))[0]
    assert found.embedding is None and "reference_id 'tops/red.png' was indexed from a vector without its image's " \
        "feature norm" in found.error
    indexer.close()


@pytest.mark.slow  # DataLoader worker processes
def test_cli_encode_one_line_errors_and_summary(gallery, tmp_path, capsys):
    from mlcl_cli.cli import main

    ckpt = str(tiny_checkpoint())
    assert main(["encode", str(tmp_path / "missing"), "--out", str(tmp_path / "v"), "--checkpoint", ckpt]) == 2
    assert capsys.readouterr().err.strip().endswith("no such file or folder")
    assert main(["encode", str(gallery), "--out", str(tmp_path / "v"), "--checkpoint", ckpt, "--device", "cpu",
                 "--workers", "1", "--no-progress"]) == 1  # broken.jpg
    out = capsys.readouterr()
    assert "mlcl encode: broken.jpg: " in out.err and len(out.err.strip().splitlines()) == 1
    assert "encoded 7 images" in out.out and "mlcl index --vectors" in out.out
    assert main(["encode", str(gallery), "--out", str(tmp_path / "v"), "--checkpoint", ckpt, "--workers", "x"]) == 2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mlcl_index_vectors_dir_through_a_flow(gallery, tmp_path):
    from test_flow_restart import Server, cli

    from mlcl_cli.flows import free_port

    (gallery / "broken.jpg").unlink()
    ckpt = str(tiny_checkpoint())
    done = cli("encode", str(gallery), "--out", str(tmp_path / "vecs"), "--checkpoint", ckpt, "--device", "cpu",
               "--no-progress")
    assert done.returncode == 0, done.stderr
    grpc, http = free_port(), free_port()
    server = Server(["--grpc-port", str(grpc), "--http-port", str(http), "--workspace", str(tmp_path / "ws"),
                     "--checkpoint", ckpt, "--device", "cpu"], tmp_path / "serve.log")
    try:
        server.wait_ready()
        loaded = cli("index", "--vectors", str(tmp_path / "vecs"), "--port", str(grpc), "--no-progress")
        assert loaded.returncode == 0, loaded.stderr
        assert "indexed 7 of 7 vectors" in loaded.stdout and "the index holds 7" in loaded.stdout
        found = cli("search", "--image", str(gallery / "tops" / "red.png"), "-k", "3", "--json", "--port", str(grpc),
                    "--keep-reference")
        assert json.loads(found.stdout)["matches"][0]["id"] == "tops/red.png"
        # a search by the gallery id of a bulk-loaded vector (its norm came with it) equals one with its image
        from mlcl_cli.client import grpc_client
        from mlcl_executor.schemas import QueryDoc

        client = grpc_client(port=grpc)
        image = (gallery / "photo2.jpg").read_bytes()
        queries = [QueryDoc(image=image, text="make it red", reference_id="photo2.jpg"),
                   QueryDoc(text="make it red", reference_id="photo2.jpg"), QueryDoc(reference_id="photo2.jpg")]
        answer = client.post("/search", DocList[QueryDoc](queries), parameters={"limit": 10}, return_type=DocList[QueryDoc])
        assert [m.id for m in answer[1].matches] == [m.id for m in answer[0].matches] and len(answer[0].matches) == 6
        assert answer[1].scores == pytest.approx(answer[0].scores, abs=1e-4) and answer[2].matches
        # a folder of another model's vectors: refused by the encoder, nothing stored
        shutil.copytree(tmp_path / "vecs", tmp_path / "other")
        meta = json.loads((tmp_path / "other" / META_FILE).read_text())
        (tmp_path / "other" / META_FILE).write_text(json.dumps({**meta, "model_id": "0123456789abcdef"}))
        (tmp_path / "other" / "part-000000.txt").write_text(
            "".join(f"other{i}\n" for i in range(7)))
        wrong = cli("index", "--vectors", str(tmp_path / "other"), "--port", str(grpc), "--no-progress")
        assert wrong.returncode == 1 and "cannot be mixed in" in wrong.stderr
        assert "the index holds 7" in cli("index", "--vectors", str(tmp_path / "vecs"), "--port", str(grpc),
                                          "--no-progress").stdout
        # a folder written before the norms were: loaded as before and said so; a search by its ids is the clear refusal
        from jina.excepts import BadServer

        from helpers import server_error

        shutil.copytree(tmp_path / "vecs", tmp_path / "old")
        for f in (tmp_path / "old").glob("part-*.norms.npy"):
            f.unlink()
        old = cli("index", "--vectors", str(tmp_path / "old"), "--port", str(grpc), "--no-progress")
        assert old.returncode == 0 and "indexed 7 of 7 vectors" in old.stdout
        assert f"7 vectors of {tmp_path / 'old'} have no feature norm" in old.stderr
        with pytest.raises(BadServer) as err:
            client.post("/search", DocList[QueryDoc]([QueryDoc(reference_id="photo2.jpg")]), return_type=DocList[QueryDoc])
        assert "reference_id 'photo2.jpg' was indexed from a vector without its image's feature norm" in server_error(err.value)
        assert server.stop() == 0
    finally:
        server.kill()
