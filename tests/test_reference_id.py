"""Search by gallery id (mlcl_executor/reference.py, reference_lookup.py): a query that names `reference_id` and
carries no image uses the indexed image's own features, and equals a search with the original image.

In process: the encoder and the indexer are called directly, and a small stand-in for the Flow (`InProcessFlow`)
answers the gateway's `/lookup` and `/search` with them, so the gateway's resolver runs as in a Flow. The real
Flow (HTTP, 400s, shards) is in tests/test_flow_e2e.py and tests/test_flow_sharded.py.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
from docarray import DocList

from helpers import run_endpoint, shapes_test_split
from mlcl_executor.errors import RequestError
from mlcl_executor.indexer import MLCLIndexer
from mlcl_executor.merger import MLCLMerger
from mlcl_executor.reference import NORM_TAG
from mlcl_executor.reference_lookup import ReferenceResolver
from mlcl_executor.schemas import GalleryDoc, QueryDoc

N_TRIPLETS = 6  # 36 gallery images


@pytest.fixture(scope="module")
def shapes():
    return shapes_test_split(N_TRIPLETS)


@pytest.fixture(scope="module")
def encoder(make_encoder):
    return make_encoder(batch_size=8, thumbnail_size=0)


def make_indexer(path, backend: str = "memory", shard_id: int = 0, shards: int = 1, **options: Any) -> MLCLIndexer:
    return MLCLIndexer(backend=backend, metas={"name": "indexer", "workspace": str(path)},
                       runtime_args={"shard_id": shard_id, "shards": shards, "name": "indexer"}, **options)


def gallery_docs(shapes) -> DocList[GalleryDoc]:
    return DocList[GalleryDoc](GalleryDoc(id=name, image=shapes.image_path(name).read_bytes()) for name in shapes.gallery)


class InProcessFlow:
    """jina's request handler, answered by the encoder and indexer in this process (one shard, or several and the merger)."""

    def __init__(self, encoder: Any, indexers: List[MLCLIndexer]) -> None:
        self.encoder, self.indexers, self.merger = encoder, indexers, MLCLMerger()
        self.sent: List[str] = []
        self.query_vectors: Dict[str, np.ndarray] = {}  # what the encoder made of each query (the indexer drops it)

    def __call__(self, request: Any, return_type: Any = None) -> Tuple[Any, Any]:
        self.sent.append(request.header.exec_endpoint)
        return asyncio.ensure_future(self._answer(request)), None

    def _all_shards(self, endpoint: str, docs_proto: Any, cls: Any, **kwargs: Any) -> Any:
        answers = [getattr(ix, endpoint)(DocList[cls].from_protobuf(docs_proto), **kwargs) for ix in self.indexers]
        if len(answers) == 1:
            return answers[0]
        merge = self.merger.merge_lookup if endpoint == "lookup" else self.merger.merge_search
        return merge(docs_matrix=answers, **kwargs)

    async def _answer(self, request: Any) -> Any:
        from jina.types.request.data import DataRequest

        proto = request.proto_with_data
        parameters = dict(request.parameters or {})
        if request.header.exec_endpoint == "/lookup":
            out = self._all_shards("lookup", proto.data.docs, GalleryDoc)
        else:
            docs = self.encoder.encode_queries(DocList[QueryDoc].from_protobuf(proto.data.docs), parameters=parameters)
            self.query_vectors.update({d.id: np.asarray(d.embedding) for d in docs if d.embedding is not None})
            out = self._all_shards("search", docs.to_protobuf(), QueryDoc, parameters=parameters)
        answer = DataRequest()
        answer.header.request_id = request.header.request_id
        answer.data.docs = out
        return DataRequest(answer.proto.SerializeToString())


def search_request(docs: List[QueryDoc], **parameters: Any) -> Any:
    from jina.types.request.data import DataRequest

    req = DataRequest()
    req.data.docs = DocList[QueryDoc](docs)
    req.header.exec_endpoint = "/search"
    req.parameters = parameters
    return DataRequest(req.proto.SerializeToString())  # as it arrives at the gateway: serialised


def post(flow: InProcessFlow, docs: List[QueryDoc], **parameters: Any) -> Any:
    """The answer of a /search sent through the gateway's resolver to `flow`."""
    async def send() -> Any:
        future, _ = ReferenceResolver(flow)(request=search_request(docs, **parameters), return_type=DocList[QueryDoc])
        return await asyncio.wait_for(future, 60)

    return asyncio.run(send())


def answer_docs(answer: Any) -> DocList[QueryDoc]:
    return DocList[QueryDoc].from_protobuf(answer.proto_with_data.data.docs)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# --------------------------------------------------------------- the encoder
def test_gallery_images_keep_their_feature_norm_hidden_from_answers(encoder, shapes, tmp_path):
    docs = run_endpoint(encoder.encode_gallery(gallery_docs(shapes)[:4]))
    norms = [d.tags[NORM_TAG] for d in docs]
    assert all(n > 0 for n in norms) and not np.allclose(norms, 1.0)  # raw features (the combiner's input) are not unit
    indexer = make_indexer(tmp_path)
    first = np.asarray(docs[0].embedding).copy()
    echoed = indexer.index(docs)
    assert all(NORM_TAG not in d.tags for d in echoed)  # stored, not echoed
    hits = indexer.search(DocList[QueryDoc]([QueryDoc(id="q", embedding=first)]), parameters={"limit": 4})
    assert hits[0].matches and all(NORM_TAG not in m.tags for m in hits[0].matches)


def test_a_reference_id_without_image_that_nothing_looked_up_is_an_error_naming_it(encoder):
    out = encoder.encode_queries(DocList[QueryDoc]([QueryDoc(id="q", reference_id="g7", text="make it red")]))
    assert out[0].embedding is None and "'g7'" in out[0].error and "MLCLGateway" in out[0].error


# ---------------------------------------------------- search by id == by image
@pytest.mark.parametrize("backend,shards", [("memory", 1), ("hnsw", 1), ("memory", 2)])
def test_a_search_by_gallery_id_equals_a_search_with_the_original_image(encoder, shapes, tmp_path, backend, shards):
    indexers = [make_indexer(tmp_path / str(s), backend, s, shards) for s in range(shards)]
    encoded = run_endpoint(encoder.encode_gallery(gallery_docs(shapes))).to_protobuf()
    for ix in indexers:  # every shard is sent everything and keeps what it owns, as in a Flow
        ix.index(DocList[GalleryDoc].from_protobuf(encoded))
    assert_by_id_equals_by_image(shapes, InProcessFlow(encoder, indexers), [shapes.gallery[i] for i in (0, 7, 20)],
                                 "add a red circle")
    for ix in indexers:
        ix.close()


def assert_by_id_equals_by_image(shapes, flow: InProcessFlow, refs: List[str], text: str) -> None:
    """Queries by each reference's image and by its gallery id (with `text`, and the first alone) get the same top 10,
    from query vectors at cosine >= 0.9999."""
    by_image = [QueryDoc(id=f"img-{r}", image=shapes.image_path(r).read_bytes(), text=text, reference_id=r)
                for r in refs] + [QueryDoc(id="img-alone", image=shapes.image_path(refs[0]).read_bytes(), reference_id=refs[0])]
    by_id = [QueryDoc(id=f"id-{r}", text=text, reference_id=r) for r in refs] + [QueryDoc(id="id-alone", reference_id=refs[0])]
    with_image = answer_docs(post(flow, by_image, limit=10))
    sent = len(flow.sent)
    with_id = answer_docs(post(flow, by_id, limit=10))
    assert flow.sent[sent:] == ["/lookup", "/search"]  # one lookup for the request, then the search
    for a, b in zip(with_image, with_id):
        assert a.error is None and b.error is None
        assert [m.id for m in b.matches] == [m.id for m in a.matches] and len(a.matches) == 10
        assert cosine(flow.query_vectors[a.id], flow.query_vectors[b.id]) >= 0.9999
        assert b.reference_id not in [m.id for m in b.matches]  # still left out of its own results
        assert all(NORM_TAG not in m.tags for m in b.matches)  # stored, not shown


def bulk_loaded(shapes, tmp_path, indexers: List[MLCLIndexer], encoder, block_size: int = 10) -> None:
    """The gallery through the bulk path: `mlcl encode`'s work into a vector folder, then the blocks `mlcl index
    --vectors DIR` sends, checked by the encoder and stored by every shard (as in a Flow)."""
    import argparse

    from helpers import tiny_checkpoint
    from mlcl.bulk_encode import EncodeOptions, encode_items
    from mlcl_cli.commands.index import _vector_blocks, vectors_doc
    from mlcl_executor.schemas import VectorsDoc

    out = tmp_path / "vecs"
    items = [(name, shapes.image_path(name)) for name in shapes.gallery]
    encode_items(items, out, EncodeOptions(checkpoint=tiny_checkpoint(), device="cpu", batch_size=7, workers=0, part_size=16))
    args = argparse.Namespace(paths=[], vectors=out, ids=None, model_id=None, checkpoint=None, id_prefix="")
    model_id, total, blocks = _vector_blocks(args, block_size)
    docs = DocList[VectorsDoc]([vectors_doc(model_id, *block) for block in blocks])
    assert total == len(shapes.gallery) and all(d.norms is not None for d in docs)
    checked = encoder.check_vector_blocks(docs).to_protobuf()
    for ix in indexers:
        answer = ix.index_vectors(DocList[VectorsDoc].from_protobuf(checked))
        assert all(d.error is None for d in answer)


@pytest.mark.parametrize("backend,shards", [("memory", 1), ("hnsw", 1), ("memory", 2),
                                            pytest.param("milvus", 1, marks=pytest.mark.slow)])
def test_a_search_by_the_id_of_a_bulk_loaded_vector_equals_a_search_with_the_original_image(encoder, shapes, tmp_path,
                                                                                           backend, shards):
    options = {}
    if backend == "milvus":
        pytest.importorskip("pymilvus", reason="the milvus extra is not installed")
        options = {"milvus": {"uri": str(tmp_path / "gallery.db"), "index_type": "FLAT"}}
    indexers = [make_indexer(tmp_path / str(s), backend, s, shards, **options) for s in range(shards)]
    try:
        bulk_loaded(shapes, tmp_path, indexers, encoder)
        assert_by_id_equals_by_image(shapes, InProcessFlow(encoder, indexers), [shapes.gallery[i] for i in (1, 12, 22)],
                                     "make it green")
    finally:
        for ix in indexers:
            ix.close()


def test_an_id_not_in_the_gallery_is_a_client_error_that_names_it(encoder, shapes, tmp_path):
    from jina.proto import jina_pb2

    from mlcl_executor.jina_patches.gateway import client_error_reason

    indexer = make_indexer(tmp_path)
    indexer.index(run_endpoint(encoder.encode_gallery(gallery_docs(shapes)[:3])))
    flow = InProcessFlow(encoder, [indexer])
    answer = post(flow, [QueryDoc(id="q", reference_id="no-such-image", text="x"),
                         QueryDoc(id="ok", reference_id=shapes.gallery[0], text="x")])
    assert answer.header.status.code == jina_pb2.StatusProto.ERROR
    reason = client_error_reason(answer.header.status.description)  # what MLCLGateway answers as HTTP 400
    assert reason is not None and "'no-such-image' is not in the gallery" in reason
    assert flow.sent == ["/lookup"]  # the search itself never ran


def test_a_vector_indexed_without_its_norm_cannot_be_a_reference_by_id(tmp_path):
    indexer = make_indexer(tmp_path)
    indexer.index(DocList[GalleryDoc]([GalleryDoc(id="v", embedding=np.ones(8, np.float32))]))
    out = indexer.lookup(DocList[GalleryDoc]([GalleryDoc(id="v"), GalleryDoc(id="w")]))
    assert out[0].embedding is None and "'v'" in out[0].error and "norm" in out[0].error
    assert out[1].embedding is None and out[1].error == "reference_id 'w' is not in the gallery"


def test_queries_with_an_image_pass_the_resolver_untouched(encoder):
    sent = []

    def handle(request: Any, return_type: Any = None, **kwargs: Any) -> Tuple[Any, Any]:
        sent.append(request)
        return "future", None

    resolver = ReferenceResolver(handle)
    req = search_request([QueryDoc(id="q", image="data:image/png;base64,AA==", reference_id="g1", text="x")])
    assert resolver(request=req, return_type=None) == ("future", None) and sent == [req]


def test_shards_answer_only_the_ids_they_own(tmp_path):
    from mlcl_executor.indexer import shard_of

    vec = np.arange(1, 9, dtype=np.float32)
    shards = [make_indexer(tmp_path / str(s), "memory", s, 2) for s in range(2)]
    ids = [f"g{i}" for i in range(6)]
    for ix in shards:
        ix.index(DocList[GalleryDoc]([GalleryDoc(id=i, embedding=vec, tags={NORM_TAG: 3.0}) for i in ids]))
    answers = [ix.lookup(DocList[GalleryDoc]([GalleryDoc(id=i) for i in ids + ["missing"]])) for ix in shards]
    for s, answer in enumerate(answers):
        for doc in answer:
            owned = shard_of(doc.id, 2) == s
            assert (doc.embedding is not None or doc.error is not None) == owned
    merged = MLCLMerger().merge_lookup(docs_matrix=answers)
    for doc in merged[:6]:
        np.testing.assert_allclose(doc.embedding, 3.0 * vec / np.linalg.norm(vec), rtol=1e-6)
    assert merged[6].error == "reference_id 'missing' is not in the gallery"
