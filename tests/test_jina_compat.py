"""jina_compat's pass-through (fix 3): the indexer hands `/encode` requests on without parsing them."""

import asyncio

import numpy as np
import pytest

pytest.importorskip("jina")

from docarray import DocList  # noqa: E402
from jina.serve.runtimes.worker.request_handling import WorkerRequestHandler  # noqa: E402
from jina.types.request.data import DataRequest  # noqa: E402

from mlcl_executor import jina_compat  # noqa: E402
from mlcl_executor.indexer import MLCLIndexer  # noqa: E402
from mlcl_executor.schemas import QueryDoc  # noqa: E402


def docs_parsed(req: DataRequest) -> bool:
    """Whether jina turned the request's documents into a DocList (jina 3.33's lazy field; the header
    and the protobuf are always read, the per-document pydantic parse is what a pass-through saves)."""
    return req.data._loaded_doc_array is not None


def wire_request(endpoint: str) -> DataRequest:
    """A request as a worker receives it: bytes off the wire, documents not parsed yet."""
    req = DataRequest()
    req.header.exec_endpoint = endpoint
    req.document_array_cls = DocList[QueryDoc]
    req.data.docs = DocList[QueryDoc]([QueryDoc(id=f"q{i}", text="x", embedding=np.full(4, i, np.float32)) for i in range(8)])
    return DataRequest(request=req.proto.SerializeToString())


class FakeHandler:
    """What the patched `handle` reads of a worker before it decides to pass a request through."""

    def __init__(self, executor):
        self._executor = executor
        self._batchqueue_config = {}


@pytest.fixture(scope="module")
def indexer(tmp_path_factory):
    jina_compat.apply()
    ex = MLCLIndexer(metas={"workspace": str(tmp_path_factory.mktemp("ws"))})
    yield ex
    ex.close()


def test_encode_passes_through_the_indexer_unparsed(indexer):
    assert jina_compat._is_passthrough(indexer, "/encode")
    req = wire_request("/encode")
    out = asyncio.run(WorkerRequestHandler.handle(FakeHandler(indexer), [req]))
    assert out is req
    assert not docs_parsed(req)  # jina would have parsed the 8 documents and serialised them again
    docs = DataRequest(request=out.proto.SerializeToString()).docs
    assert [d.id for d in DocList[QueryDoc].from_protobuf(docs.to_protobuf())] == [f"q{i}" for i in range(8)]


def test_only_marked_endpoints_pass_through(indexer):
    assert not any(jina_compat._is_passthrough(indexer, e) for e in ("/index", "/search", "/count", "/delete"))
    # called directly (no worker), the endpoint still returns its documents
    docs = DocList[QueryDoc]([QueryDoc(id="a")])
    assert indexer.encode_passthrough(docs=docs) is docs
