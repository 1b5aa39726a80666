"""flows/flow.sharded.yml (encoder replicas, 2 indexer shards + merger) answers like one indexer."""

from __future__ import annotations

import numpy as np
import pytest
from docarray import DocList

from helpers import REPO_ROOT, data_uri, png_bytes, running_flow, tiny_checkpoint
from mlcl_executor.indexer import MLCLIndexer
from mlcl_executor.schemas import GalleryDoc, QueryDoc, StatsDoc
from mlcl_cli.client import grpc_client, http_post

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]  # Flows / a Milvus Lite process


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    with running_flow(REPO_ROOT / "flows" / "flow.sharded.yml", ws, encoder_with={"checkpoint": str(tiny_checkpoint())}) as flow:
        flow["client"] = grpc_client(port=flow["grpc"])
        yield flow


def count(client) -> StatsDoc:
    return client.post("/count", DocList[GalleryDoc](), return_type=DocList[StatsDoc])[0]


def test_sharded_flow_end_to_end_with_the_encoder(served):
    client = served["client"]
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (30, 30, 30), (200, 200, 200)]
    images = {f"img{i}": png_bytes(c, (32 + i, 32)) for i, c in enumerate(colours)}
    answer = client.post("/index", DocList[GalleryDoc](GalleryDoc(id=k, image=v) for k, v in images.items()), return_type=DocList[GalleryDoc])
    assert all(d.error is None for d in answer)
    assert count(served["client"]).count == len(images)
    res = client.post("/search", DocList[QueryDoc](QueryDoc(image=v) for v in images.values()), parameters={"limit": 3},
                      return_type=DocList[QueryDoc])
    assert [r.matches[0].id for r in res] == list(images)
    http = http_post(served["http_url"], "/search", {"data": [{"image": data_uri(images["img2"]), "text": "make it red"}], "parameters": {"limit": 4}})
    assert len(http["data"][0]["matches"]) == 4 and http["data"][0]["scores"] == sorted(http["data"][0]["scores"], reverse=True)
    # a search by gallery id: every id is looked up on the shard that owns it, and equals the search by image
    by_image = [QueryDoc(id=f"i-{k}", image=v, text="make it red", reference_id=k) for k, v in images.items()]
    by_id = [QueryDoc(id=f"d-{k}", text="make it red", reference_id=k) for k in images]
    res = client.post("/search", DocList[QueryDoc](by_image + by_id), parameters={"limit": 5}, return_type=DocList[QueryDoc])
    n = len(images)
    assert [[m.id for m in r.matches] for r in res[n:]] == [[m.id for m in r.matches] for r in res[:n]]
    assert all(r.error is None and len(r.matches) == 5 for r in res)
    with pytest.raises(RuntimeError, match=r"HTTP 400: .*reference_id 'ghost' is not in the gallery"):
        http_post(served["http_url"], "/search", {"data": [{"reference_id": "ghost", "text": "make it red"}]})
    # thumbnails come from the shard that owns the id (each keeps its own in its workspace)
    import urllib.request

    for name in images:
        with urllib.request.urlopen(f"{served['http_url']}/ui/thumbnail?id={name}", timeout=30) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/png"
    # ... and a page view's batch, one request polled to both shards, merges every shard's ids into one answer
    batch = http_post(served["http_url"], "/ui/thumbnails", {"ids": list(images) + ["ghost"]})
    assert sorted(batch) == sorted(images) and all(uri.startswith("data:image/png;base64,") for uri in batch.values())


def test_sharded_top_k_equals_one_indexer(served, tmp_path):
    client = served["client"]
    client.post("/clear", DocList[GalleryDoc]())
    dim = count(client).dim  # the model's width, learnt by the index in the test above
    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(80, dim)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = rng.normal(size=(6, dim)).astype(np.float32)
    docs = lambda: DocList[GalleryDoc](GalleryDoc(id=f"v{i}", embedding=v) for i, v in enumerate(gallery))  # noqa: E731
    # Own vectors straight to the indexer deployment (no encoder): same path the encoder's output takes.
    answer = client.post("/index", docs(), target_executor="indexer", return_type=DocList[GalleryDoc])
    assert [d.error for d in answer] == [None] * len(gallery)
    stats = count(client)
    assert stats.count == len(gallery) and len(stats.shards) == 2 and min(stats.shards.values()) > 0

    single = MLCLIndexer(metas={"name": "single", "workspace": str(tmp_path)})
    single.index(docs=docs())
    for limit in (1, 10, 25):
        q = lambda: DocList[QueryDoc](QueryDoc(id=f"q{i}", embedding=v) for i, v in enumerate(queries))  # noqa: E731
        sharded = client.post("/search", q(), parameters={"limit": limit}, target_executor="indexer", return_type=DocList[QueryDoc])
        expected = single.search(docs=q(), parameters={"limit": limit})
        assert [[m.id for m in d.matches] for d in sharded] == [[m.id for m in d.matches] for d in expected]
        np.testing.assert_allclose(np.concatenate([d.scores for d in sharded]), np.concatenate([d.scores for d in expected]), atol=1e-5)

    # upserts and deletes reach the shard that owns the id: no duplicates, exact counts
    client.post("/index", docs()[:10], target_executor="indexer")
    assert count(client).count == len(gallery)
    client.post("/delete", DocList[GalleryDoc](GalleryDoc(id=f"v{i}") for i in range(5)))
    assert count(client).count == len(gallery) - 5
    client.post("/clear", DocList[GalleryDoc]())
    assert count(client).count == 0


