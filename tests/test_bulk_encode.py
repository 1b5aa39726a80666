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


def test_a_damaged_part_is_named(gallery, tmp_path):
    out = tmp_path / "vecs"
    encode_folder([gallery], out, options(part_size=3))
    (out / "part-000001.txt").write_text("a\n")
    with pytest.raises(ValueError, match=r"part-000001.txt: 1 ids for \d+ vectors"):
        VectorDir.open(out).load()


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
        assert server.stop() == 0
    finally:
        server.kill()
