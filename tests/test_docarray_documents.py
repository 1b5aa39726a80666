"""MLCLEncoder in a Flow built on docarray's standard documents (ImageDoc, TextDoc, ImageTextDoc).

The indexer here is not ours: it is written in this test, the way a user's Flow
would have it, on docarray's `InMemoryExactNNIndex` over `ImageDoc`.
"""

# No `from __future__ import annotations`: Jina reads the test indexer's annotations at class creation.

from typing import Any, Dict, List, Optional


import numpy as np
import pytest
from docarray import BaseDoc, DocList
from docarray.documents import ImageDoc, TextDoc
from docarray.index import InMemoryExactNNIndex
from jina import Executor, Flow, requests
from PIL import Image

from helpers import REPO_ROOT, data_uri, png_bytes, shapes_test_split, run_endpoint, tiny_checkpoint
from mlcl_executor.encoder import MLCLEncoder
from mlcl_executor.schemas import GalleryDoc, QueryDoc
from mlcl_cli.flows import free_port
from mlcl_executor.standard_docs import ImageTextDoc

pytestmark = pytest.mark.timeout(240)


class SearchResult(BaseDoc):
    """What the user's indexer answers: ids and cosine similarities of the best gallery images."""

    ids: List[str] = []
    scores: List[float] = []


class StandardDocIndexer(Executor):
    """A user's indexer: docarray's exact in-memory index over standard ImageDoc documents."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._index = InMemoryExactNNIndex[ImageDoc]()

    @requests(on="/index")
    def index(self, docs: DocList[ImageDoc], **kwargs: Any) -> DocList[ImageDoc]:
        self._index.index(docs)
        return docs

    @requests(on="/search")
    def search(self, docs: DocList[ImageTextDoc], parameters: Optional[Dict[str, Any]] = None, **kwargs: Any) -> DocList[SearchResult]:
        limit = int((parameters or {}).get("limit", 5))
        out = DocList[SearchResult]()
        for doc in docs:
            matches, scores = self._index.find(np.asarray(doc.embedding, dtype=np.float32), search_field="embedding", limit=limit)
            out.append(SearchResult(id=doc.id, ids=[m.id for m in matches], scores=[float(s) for s in scores]))
        return out


@pytest.fixture(scope="module")
def encoders(make_encoder):
    return make_encoder(documents="docarray", metas={"name": "std"}), make_encoder(metas={"name": "ours"})


def test_docarray_mode_exposes_only_the_standard_endpoints(encoders):
    standard, ours = encoders
    assert sorted(e for e in standard.requests if not e.startswith("_jina")) == ["/index", "/search"]
    assert {"/index", "/update", "/search", "/encode"} <= set(ours.requests)
    with pytest.raises(ValueError, match="documents must be one of"):
        MLCLEncoder(checkpoint=str(tiny_checkpoint()), device="cpu", documents="clip")


def test_standard_documents_map_to_our_vectors(encoders):
    standard, ours = encoders
    png = png_bytes((200, 30, 30))
    tensor = np.asarray(Image.open(__import__("io").BytesIO(png)).convert("RGB"))
    # An ImageDoc's image is its tensor, else bytes_, else url (a data URI here): one vector.
    images = DocList[ImageDoc]([ImageDoc(id="t", tensor=tensor), ImageDoc(id="b", bytes_=png), ImageDoc(id="u", url=data_uri(png))])
    standard.encode_image_docs(images)
    gallery = run_endpoint(ours.encode_gallery(DocList[GalleryDoc]([GalleryDoc(id="g", image=png)])))[0].embedding
    for doc in images:
        np.testing.assert_allclose(doc.embedding, gallery, atol=1e-5)
    assert images[1].bytes_ == png  # the user's payload is left alone

    composed = standard.encode_query_docs(DocList[ImageTextDoc]([
        ImageTextDoc(id="both", image=ImageDoc(bytes_=png), text=TextDoc(text="make it blue")),
        ImageTextDoc(id="text", text=TextDoc(text="a blue square")),
        ImageTextDoc(id="image", image=ImageDoc(bytes_=png)),
    ]))
    texts = standard.encode_text_docs(DocList[TextDoc]([TextDoc(id="t", text="a blue square")]))
    mine = run_endpoint(ours.encode_queries(DocList[QueryDoc]([
        QueryDoc(image=png, text="make it blue"), QueryDoc(text="a blue square"), QueryDoc(image=png),
    ])))
    for doc, ref in zip(composed, mine):
        np.testing.assert_allclose(doc.embedding, ref.embedding, atol=1e-5)
    np.testing.assert_allclose(texts[0].embedding, mine[1].embedding, atol=1e-5)
    assert not np.allclose(mine[0].embedding, mine[2].embedding)  # the text changes the query


def test_a_bad_standard_document_gets_no_vector_and_the_rest_are_served(encoders):
    standard, _ = encoders
    docs = DocList[ImageDoc]([ImageDoc(id="ok", bytes_=png_bytes()), ImageDoc(id="corrupt", bytes_=b"not an image"),
                              ImageDoc(id="path", url="/etc/passwd.png"), ImageDoc(id="empty")])
    standard.encode_image_docs(docs)
    assert docs[0].embedding is not None
    assert [d.embedding for d in docs[1:]] == [None, None, None]


@pytest.mark.slow
def test_mlcl_encoder_in_a_flow_of_standard_documents_with_a_users_indexer():
    shapes = shapes_test_split(6)
    names = list(shapes.gallery)
    ckpt = str(tiny_checkpoint())
    port = free_port()
    flow = (
        Flow(port=port)
        .add(name="encoder", uses=str(REPO_ROOT / "config.yml"), uses_with={"checkpoint": ckpt, "device": "cpu", "documents": "docarray", "torch_threads": 1})
        .add(name="indexer", uses=StandardDocIndexer)
    )
    with flow:
        gallery = DocList[ImageDoc](ImageDoc(id=n, bytes_=shapes.image_path(n).read_bytes()) for n in names)
        indexed = flow.post("/index", gallery, return_type=DocList[ImageDoc])
        assert len(indexed) == len(names) and all(d.embedding is not None for d in indexed)
        triplets = shapes.triplets[:4]
        queries = DocList[ImageTextDoc](
            ImageTextDoc(id=f"q{i}", image=ImageDoc(bytes_=shapes.image_path(t["reference"]).read_bytes()), text=TextDoc(text=t["caption"]))
            for i, t in enumerate(triplets)
        )
        results = flow.post("/search", queries, parameters={"limit": 5}, return_type=DocList[SearchResult])

    # The Flow's answers are exactly the cosine top-5 of the encoder's own vectors.
    local = MLCLEncoder(checkpoint=ckpt, device="cpu", documents="docarray")
    try:
        g = local.encode_image_docs(DocList[ImageDoc](ImageDoc(id=n, bytes_=shapes.image_path(n).read_bytes()) for n in names))
        q = local.encode_query_docs(queries)
    finally:
        local.close()
    G = np.stack([np.asarray(d.embedding) for d in g])
    for res, query in zip(results, q):
        sims = G @ np.asarray(query.embedding)
        order = np.argsort(-sims, kind="stable")[:5]
        assert res.ids == [names[i] for i in order]
        np.testing.assert_allclose(res.scores, sims[order], atol=1e-4)
