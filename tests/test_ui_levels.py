"""Per-level answers and gallery thumbnails (what the search page shows), in process.

The model's `encode_query_levels`, the encoder's `levels` parameter and
thumbnails, the indexer's per-level search and thumbnail handling, and the
sharded merge of per-level answers.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from docarray import DocList
from PIL import Image

from helpers import data_uri, png_bytes, run_endpoint
from mlcl_executor.indexer import MLCLIndexer
from mlcl_executor.merger import MLCLMerger
from mlcl_executor.schemas import GalleryDoc, QueryDoc
from mlcl_executor.thumbnails import make_thumbnail

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (90, 90, 90), (250, 120, 0)]


def decode(uri: str) -> Image.Image:
    header, payload = uri.split(",", 1)
    assert header.startswith("data:image/") and header.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(payload)))


# ------------------------------------------------------------------ model
@pytest.mark.parametrize("method, expected", [("mlcl", ["sum", "cat", "hybrid"]), ("clip4cir", ["hybrid"])])
def test_model_levels_are_unit_vectors_and_fused_equals_encode_query(method, expected):
    from mlcl.model import build_model

    torch.manual_seed(0)
    model = build_model("mlcl-micro", method=method).eval()
    images = torch.rand(3, 3, model.image_size, model.image_size)
    texts = ["make the red circle blue", "remove the square", "add a triangle"]
    out = model.encode_query_levels(images, texts)
    assert sorted(out) == sorted(expected + ["fused"])
    torch.testing.assert_close(out["fused"], model.encode_query(images=images, texts=texts))
    for level in expected:
        torch.testing.assert_close(out[level].norm(dim=-1), torch.ones(3))
    if "sum" in out:  # the low level is the plain sum of the two features
        low = F.normalize(model.image_features(images) + model.text_features(texts), dim=-1)
        torch.testing.assert_close(out["sum"], low)
    with pytest.raises(ValueError, match="3 images but 2 texts"):
        model.encode_query_levels(images, texts[:2])


# ---------------------------------------------------------------- encoder
@pytest.fixture(scope="module")
def encoder(make_encoder):
    return make_encoder(batch_size=4, thumbnail_size=16)


def test_encoder_adds_level_vectors_only_when_asked_and_only_to_composed_queries(encoder):
    def queries():
        return DocList[QueryDoc]([
            QueryDoc(id="both", image=png_bytes(COLOURS[0]), text="make it green"),
            QueryDoc(id="image", image=png_bytes(COLOURS[1])),
            QueryDoc(id="text", text="a blue circle"),
        ])

    plain = run_endpoint(encoder.encode_queries(queries()))
    assert all(len(d.levels) == 0 for d in plain)
    asked = run_endpoint(encoder.encode_queries(queries(), parameters={"levels": True}))
    both = asked[0]
    assert [lv.level for lv in both.levels] == ["low", "mid", "high"]
    np.testing.assert_allclose(both.embedding, plain[0].embedding, atol=1e-5)  # the fused vector is unchanged
    for lv in both.levels:
        assert lv.embedding.shape == both.embedding.shape and abs(np.linalg.norm(lv.embedding) - 1) < 1e-4
    assert not np.allclose(both.levels[0].embedding, both.levels[2].embedding)
    assert len(asked[1].levels) == 0 and len(asked[2].levels) == 0
    assert asked[1].embedding is not None and asked[2].embedding is not None


def test_encoder_keeps_a_size_capped_thumbnail_with_each_gallery_image(encoder):
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 60, 3), dtype=np.uint8))
    buf = io.BytesIO()
    big.save(buf, "PNG")
    docs = DocList[GalleryDoc]([
        GalleryDoc(id="red", image=data_uri(png_bytes(COLOURS[0], size=(40, 30))), tags={"colour": "red"}),
        GalleryDoc(id="noise", image=buf.getvalue()),
        GalleryDoc(id="broken", image=b"not an image"),
    ])
    out = run_endpoint(encoder.encode_gallery(docs))
    red = decode(out[0].tags["thumbnail"])
    assert red.size == (16, 12) and out[0].tags["colour"] == "red"
    assert red.convert("RGB").getpixel((8, 6)) == COLOURS[0]  # PNG: lossless for flat images
    noise = decode(out[1].tags["thumbnail"])
    assert max(noise.size) == 16
    assert out[2].error and "thumbnail" not in out[2].tags


def test_thumbnail_size_caps():
    flat = Image.new("RGB", (300, 200), COLOURS[2])
    uri = make_thumbnail(flat, 128, 32768)
    assert uri.startswith("data:image/png;base64,") and decode(uri).size == (128, 85)
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 255, (256, 256, 3), dtype=np.uint8))
    jpeg = make_thumbnail(noise, 128, 20000)  # too big as PNG, fits as JPEG
    assert jpeg.startswith("data:image/jpeg;base64,") and len(jpeg) <= 20000
    assert make_thumbnail(noise, 128, 500) is None  # fits in neither: no thumbnail rather than a big one
    assert make_thumbnail(flat, 0, 32768) is None


# ---------------------------------------------------------------- indexer
def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def make_indexer(path, shard_id=0, shards=1) -> MLCLIndexer:
    return MLCLIndexer(metas={"name": "indexer", "workspace": str(path)},
                       runtime_args={"shard_id": shard_id, "shards": shards, "name": "indexer"})


@pytest.fixture()
def vectors():
    rng = np.random.default_rng(0)
    return unit(rng.normal(size=(40, 8))), unit(rng.normal(size=(3, 8))), unit(rng.normal(size=(3, 3, 8)))


def gallery(vectors):
    return DocList[GalleryDoc]([GalleryDoc(id=f"g{i}", embedding=v, tags={"n": i, "thumbnail": f"data:image/png;base64,T{i}"})
                                for i, v in enumerate(vectors)])


def level_queries(qs, lv, **fields):
    from mlcl_executor.levels import LEVEL_NAMES
    from mlcl_executor.schemas import LevelDoc

    names = list(LEVEL_NAMES.values())
    return DocList[QueryDoc]([
        QueryDoc(id=f"q{i}", embedding=q, levels=DocList[LevelDoc]([LevelDoc(level=names[j], embedding=lv[i, j]) for j in range(3)]), **fields)
        for i, q in enumerate(qs)
    ])


def top(vectors, q, k, skip=None):
    order = [f"g{i}" for i in np.argsort(-(vectors @ q))]
    return [g for g in order if g != skip][:k]


def test_indexer_answers_each_level_with_its_own_top_k(tmp_path, vectors):
    g, qs, lv = vectors
    indexer = make_indexer(tmp_path)
    answer = indexer.index(docs=gallery(g))
    assert all("thumbnail" not in d.tags and "n" in d.tags for d in answer)  # stored, not echoed

    plain = indexer.search(docs=level_queries(qs, lv), parameters={"limit": 5})
    assert all(len(lvl.matches) == 0 and lvl.embedding is None for d in plain for lvl in d.levels)
    assert all("thumbnail" not in m.tags and "n" in m.tags for d in plain for m in d.matches)

    out = indexer.search(docs=level_queries(qs, lv, reference_id="g3"),
                         parameters={"limit": 5, "levels": True, "thumbnails": True})
    for i, d in enumerate(out):
        assert [m.id for m in d.matches] == top(g, qs[i], 5, skip="g3")
        assert [lvl.level for lvl in d.levels] == ["low", "mid", "high"]
        for j, lvl in enumerate(d.levels):
            assert [m.id for m in lvl.matches] == top(g, lv[i, j], 5, skip="g3")
            np.testing.assert_allclose(lvl.scores, [g[int(m.id[1:])] @ lv[i, j] for m in lvl.matches], atol=1e-5)
            assert lvl.embedding is None
            assert all(m.tags["thumbnail"] == f"data:image/png;base64,T{m.id[1:]}" for m in lvl.matches)
        assert d.embedding is None


def test_sharded_levels_merge_to_the_single_shard_answer(tmp_path, vectors):
    g, qs, lv = vectors
    single = make_indexer(tmp_path / "one")
    single.index(docs=gallery(g))
    shards = [make_indexer(tmp_path / "two", shard_id=s, shards=2) for s in range(2)]
    for shard in shards:
        shard.index(docs=gallery(g))
    params = {"limit": 4, "levels": True}
    expected = single.search(docs=level_queries(qs, lv), parameters=params)
    merged = MLCLMerger(default_limit=10).merge_search(
        docs_matrix=[s.search(docs=level_queries(qs, lv), parameters=params) for s in shards], parameters=params)
    for e, m in zip(expected, merged):
        assert [lvl.level for lvl in m.levels] == ["low", "mid", "high"]
        assert [[x.id for x in lvl.matches] for lvl in m.levels] == [[x.id for x in lvl.matches] for lvl in e.levels]
        np.testing.assert_allclose(np.concatenate([l.scores for l in m.levels]), np.concatenate([l.scores for l in e.levels]), atol=1e-6)
