"""`/encode` answered from the request's protobuf (jina_patches/worker.py fix 4, proto_docs.py) gives the same answer,
document for document, as the typed path; requests it cannot read fall back to the typed path."""

import asyncio

import numpy as np
import pytest

pytest.importorskip("jina")

from docarray import DocList  # noqa: E402
from jina.types.request.data import DataRequest  # noqa: E402

from helpers import data_uri, png_bytes, run_endpoint  # noqa: E402
from mlcl_executor.jina_patches import worker as patched_worker  # noqa: E402
from mlcl_executor.errors import RequestError  # noqa: E402
from mlcl_executor import proto_docs  # noqa: E402
from mlcl_executor.schemas import QueryDoc  # noqa: E402


@pytest.fixture(scope="module")
def worker(tmp_path_factory, make_worker):
    """jina's own worker around an MLCLEncoder (batch_size 4, one image root); the encoder is `worker._executor`."""
    from helpers import tiny_checkpoint

    root = tmp_path_factory.mktemp("roots")
    (root / "blue.png").write_bytes(png_bytes((30, 30, 200)))
    return make_worker("MLCLEncoder", uses_with={"checkpoint": str(tiny_checkpoint()), "device": "cpu", "batch_size": 4,
                                                 "image_roots": [str(root)]})


@pytest.fixture(scope="module")
def encoder(worker):
    return worker._executor


def mixed_docs(encoder):
    red, green = png_bytes((200, 30, 30), (40, 30)), png_bytes((30, 200, 30), (25, 50))
    return [
        QueryDoc(id="composed", image=red, text="make it blue"),
        QueryDoc(id="uri", image=data_uri(green), text="  add a circle "),
        QueryDoc(id="image-only", image=green),
        QueryDoc(id="text-only", text="a red square"),
        QueryDoc(id="stale", image=red, text="x", embedding=np.ones(3, np.float32), error="old"),
        QueryDoc(id="corrupt", image=b"not an image", text="y"),
        QueryDoc(id="path", image="blue.png", text="make it red"),
        QueryDoc(id="outside", image="/etc/passwd"),
        QueryDoc(id="empty"),
        QueryDoc(id="blank-text", text="   "),
    ]


def wire_request(docs, parameters=None) -> DataRequest:
    req = DataRequest()
    req.header.exec_endpoint = "/encode"
    req.document_array_cls = DocList[QueryDoc]
    req.data.docs = DocList[QueryDoc](docs)
    if parameters:
        req.parameters = parameters
    return DataRequest(request=req.proto.SerializeToString())


def answer(req: DataRequest):
    """The answer as the next hop (gateway, client) reads it."""
    out = DataRequest(request=req.proto.SerializeToString())
    out.document_array_cls = DocList[QueryDoc]
    return out.data.docs


@pytest.mark.parametrize("kind", ["query", "gallery"])
def test_raw_answer_equals_the_typed_answer(worker, encoder, kind):
    req = wire_request(mixed_docs(encoder), {"as": kind})
    out = asyncio.run(worker.handle([req]))
    assert out is req and req.data._loaded_doc_array is None  # answered in place, never parsed into documents
    raw = answer(out)
    typed = run_endpoint(encoder.encode(docs=DocList[QueryDoc](mixed_docs(encoder)), parameters={"as": kind}))
    assert [d.id for d in raw] == [d.id for d in typed]
    for r, t in zip(raw, typed):
        assert r.error == t.error, r.id
        assert r.image == t.image, r.id  # payloads dropped, a path kept
        assert r.text == t.text
        if t.embedding is None:
            assert r.embedding is None, r.id
        else:
            np.testing.assert_array_equal(np.asarray(r.embedding), np.asarray(t.embedding))
    by_id = {d.id: d for d in raw}
    assert by_id["composed"].embedding.shape == (encoder.model.embed_dim,)
    assert by_id["path"].image == "blue.png" and by_id["path"].embedding is not None
    assert "not a decodable image" in by_id["corrupt"].error and by_id["corrupt"].embedding is None
    assert "outside the allowed image roots" in by_id["outside"].error
    if kind == "query":
        assert by_id["text-only"].embedding is not None
        assert "neither image nor text" in by_id["empty"].error and "neither" in by_id["blank-text"].error
    else:
        assert "has no image" in by_id["text-only"].error


def test_unknown_value_kinds_take_the_typed_path(worker, encoder):
    docs = [QueryDoc(id="t", image=np.zeros((20, 30, 3), np.uint8), text="make it red"), QueryDoc(id="b", image=png_bytes())]
    req = wire_request(docs)
    before = req.data._content.docs.SerializeToString()
    assert proto_docs.items(req.data._content.docs) is None  # a tensor image is not read raw
    assert asyncio.run(patched_worker._answer_raw(worker, req, "/encode")) is False
    assert req.data._content.docs.SerializeToString() == before  # untouched: jina parses it and the endpoint serves it
    got = run_endpoint(encoder.encode(docs=DocList[QueryDoc](docs)))
    assert all(d.embedding is not None and d.error is None for d in got)


def test_bad_parameter_is_a_client_error_and_leaves_the_request_alone(worker, encoder):
    req = wire_request([QueryDoc(id="a", image=png_bytes(), text="x")])
    before = req.data._content.docs.SerializeToString()
    with pytest.raises(RequestError, match="'as' must be 'query' or 'gallery'"):
        asyncio.run(encoder.encode_proto(req.data._content.docs, {"as": "both"}))
    assert req.data._content.docs.SerializeToString() == before
    out = asyncio.run(worker.handle([wire_request([QueryDoc(id="a", text="x")], {"as": "both"})]))
    assert "'as' must be 'query' or 'gallery'" in out.status.exception.args[0]
