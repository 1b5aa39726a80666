"""MLCLEncoder in-process: batched encoding, query kinds, per-document errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from docarray import DocList
from PIL import Image

from helpers import count_model_calls, data_uri, png_bytes, run_endpoint, tiny_checkpoint
from mlcl_executor.errors import RequestError
from mlcl_executor.encoder import MLCLEncoder
from mlcl_executor.schemas import GalleryDoc, QueryDoc

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (90, 90, 90)]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery")
    (root / "red.png").write_bytes(png_bytes(COLOURS[0]))
    return root


@pytest.fixture(scope="module")
def encoder(make_encoder, roots):
    enc = make_encoder(batch_size=4, image_roots=[str(roots)])
    enc.calls = count_model_calls(enc)
    return enc


def direct_query(enc, image=None, text=None):
    images = enc.model.preprocess(Image.open(__import__("io").BytesIO(image)))[None] if image is not None else None
    return enc.model.encode_query(images=images, texts=[text] if text else None)[0].numpy()


def test_gallery_vectors_are_unit_norm_and_batched(encoder):
    encoder.calls["image"].clear()
    docs = DocList[GalleryDoc]([GalleryDoc(id=f"g{i}", image=png_bytes(COLOURS[i % 6], (30 + i, 20))) for i in range(10)])
    out = run_endpoint(encoder.encode_gallery(docs=docs))
    vectors = np.stack([d.embedding for d in out])
    assert vectors.shape == (10, encoder.model.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.calls["image"] == [4, 4, 2]  # batch_size 4: three model calls, not ten


def test_a_large_request_is_decoded_ahead_of_its_model_calls(make_encoder):
    """A request larger than batch_size goes in parts: every part's images are queued to the decode workers
    before the first model call (the workers decode the next parts while the model runs); the answers are
    those of the request as one piece, a bad image still its own error."""
    piped = make_encoder(batch_size=4, decode_workers=1)
    inline = make_encoder(batch_size=4, decode_workers=0)
    events = []
    decode_soon, encode_gallery = piped.decoder.decode_soon, piped.model.encode_gallery
    piped.decoder.decode_soon = lambda values, thumbnails=False: (events.append(("decode", len(values))),
                                                                 decode_soon(values, thumbnails))[1]
    piped.model.encode_gallery = lambda images: (events.append(("model", images.shape[0])), encode_gallery(images))[1]

    def docs():
        return DocList[GalleryDoc]([GalleryDoc(id=f"g{i}", image=b"not an image" if i == 5 else png_bytes(COLOURS[i % 6], (30 + i, 20)))
                                    for i in range(10)])

    out, expected = run_endpoint(piped.encode_gallery(docs=docs())), run_endpoint(inline.encode_gallery(docs=docs()))
    assert events == [("decode", 4)] * 2 + [("decode", 2)] + [("model", 4), ("model", 3), ("model", 2)]
    assert out[5].embedding is None and out[5].error == expected[5].error and "g5" in out[5].error
    for got, want in zip(out, expected):
        if want.embedding is not None:
            np.testing.assert_allclose(got.embedding, want.embedding, atol=1e-6)
            assert got.tags["thumbnail"] == want.tags["thumbnail"]


def test_mixed_queries_are_grouped_and_match_the_model(encoder):
    encoder.calls["query"].clear()
    red, blue = png_bytes(COLOURS[0]), png_bytes(COLOURS[2])
    docs = DocList[QueryDoc]([
        QueryDoc(id="both1", image=data_uri(red), text="make the red square blue"),
        QueryDoc(id="img", image=blue),
        QueryDoc(id="txt", text="  a green circle  "),
        QueryDoc(id="both2", image=blue, text="make it red"),
        QueryDoc(id="neither", text="   "),
        QueryDoc(id="tensor", image=np.asarray(Image.open(__import__("io").BytesIO(red)))),
    ])
    out = run_endpoint(encoder.encode_queries(docs=docs))
    assert sorted(encoder.calls["query"], key=str) == sorted([(2, 2), (2, None), (None, 1)], key=str)
    np.testing.assert_allclose(out[0].embedding, direct_query(encoder, red, "make the red square blue"), atol=1e-5)
    np.testing.assert_allclose(out[1].embedding, direct_query(encoder, blue), atol=1e-5)
    np.testing.assert_allclose(out[2].embedding, direct_query(encoder, None, "a green circle"), atol=1e-5)
    np.testing.assert_allclose(out[5].embedding, out_img := direct_query(encoder, red), atol=1e-5)
    assert out_img.shape == (encoder.model.embed_dim,)
    assert out[4].embedding is None and out[4].error == "document 'neither': has neither image nor text"


def test_bad_documents_get_errors_and_the_rest_are_served(encoder, roots, tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes())
    docs = DocList[QueryDoc]([
        QueryDoc(id="ok", image=png_bytes(), text="x"),
        QueryDoc(id="corrupt", image=b"\x89PNG\r\n\x1a\n broken"),
        QueryDoc(id="outside", image=str(outside)),
        QueryDoc(id="url", image="https://example.com/a.png"),
        QueryDoc(id="inside", image=str(roots / "red.png")),
        QueryDoc(id="relative", image="red.png", text="make it blue"),
        QueryDoc(id="empty"),
    ])
    out = {d.id: d for d in run_endpoint(encoder.encode_queries(docs=docs))}
    for ok in ("ok", "inside", "relative"):
        assert out[ok].error is None and out[ok].embedding is not None
    assert out["corrupt"].error.startswith("document 'corrupt': bytes (") and "corrupt" in out["corrupt"].error
    assert "document 'outside': path" in out["outside"].error and "outside the allowed image roots" in out["outside"].error
    assert out["url"].error == "document 'url': URL 'https://example.com/a.png': remote URLs are disabled on this server (allow_urls: false)"
    assert out["empty"].error == "document 'empty': has neither image nor text"
    assert all(out[k].embedding is None for k in ("corrupt", "outside", "url", "empty"))


def test_gallery_needs_an_image_and_documents_without_ids_are_named_by_position(encoder):
    docs = DocList[GalleryDoc]([GalleryDoc(id="a", image=png_bytes()), GalleryDoc(id="b")])
    docs[1].id = None  # as over HTTP, where clients may omit ids
    out = run_endpoint(encoder.encode_gallery(docs=docs))
    assert out[0].error is None
    assert out[1].error == "document #1 (no id): has no image (a gallery document needs one)"


def test_encode_endpoint_does_queries_or_gallery(encoder):
    img = png_bytes(COLOURS[3])
    as_gallery = run_endpoint(encoder.encode(docs=DocList[QueryDoc]([QueryDoc(image=img, text="ignored")]), parameters={"as": "gallery"}))
    indexed = run_endpoint(encoder.encode_gallery(docs=DocList[GalleryDoc]([GalleryDoc(image=img)])))
    np.testing.assert_allclose(as_gallery[0].embedding, indexed[0].embedding, atol=1e-6)
    as_query = run_endpoint(encoder.encode(docs=DocList[QueryDoc]([QueryDoc(image=img, text="make it red")]), parameters={}))
    assert not np.allclose(as_query[0].embedding, indexed[0].embedding)
    with pytest.raises(RequestError, match="parameter 'as' must be 'query' or 'gallery', got 'both'"):
        run_endpoint(encoder.encode(docs=DocList[QueryDoc]([QueryDoc(id="z", image=img)]), parameters={"as": "both"}))


def test_configuration_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MLCLEncoder(checkpoint=str(tmp_path / "missing.pt"), device="cpu")
    with pytest.raises(ValueError, match="inference weighting"):
        MLCLEncoder(checkpoint=str(tiny_checkpoint()), device="cpu", inference_weighting="swapped")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            MLCLEncoder(checkpoint=str(tiny_checkpoint()), device="cuda")
