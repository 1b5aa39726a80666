"""flows/flow.milvus.yml end to end: indexer replicas in front of one Milvus server (real engine).

The test starts Milvus Lite as a server on a free TCP port (the way a Milvus
standalone or cluster is reached: `http://host:port`) and points the Flow's
indexer replicas at it; nothing is mocked.
"""

from __future__ import annotations

import os
import time

import pytest
from docarray import DocList

from helpers import REPO_ROOT, data_uri, default_checkpoint_or_tiny, running_flow, shapes_test_split

if not os.environ.get("CI"):
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install '.[milvus]'); CI installs it")

from mlcl_executor.schemas import GalleryDoc, QueryDoc, StatsDoc  # noqa: E402
from mlcl_cli.flows import free_port  # noqa: E402
from mlcl_cli.client import grpc_client, http_post

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # Flows / a Milvus Lite process
N_TRIPLETS = 6


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    """Milvus Lite serving gRPC on 127.0.0.1:<free port>, stopped at the end."""
    from milvus_lite.server import Server
    from pymilvus import MilvusClient

    port = free_port()
    server = Server(str(tmp_path_factory.mktemp("milvus") / "server.db"), f"127.0.0.1:{port}")
    assert server.init() and server.start(), "Milvus Lite did not start"
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            MilvusClient(uri=uri, timeout=5).close()
            break
        except Exception:
            if time.time() > deadline:
                server.stop()
                raise
            time.sleep(0.3)
    yield uri
    server.stop()


def test_replicas_share_one_collection(milvus_server, tmp_path):
    shapes = shapes_test_split(N_TRIPLETS)
    options = {"uri": milvus_server, "collection": "flow_test", "index_type": "AUTOINDEX", "index_params": {}, "search_params": {}}
    ws = tmp_path / "ws"
    with running_flow(REPO_ROOT / "flows" / "flow.milvus.yml", ws,
                      encoder_with={"checkpoint": str(default_checkpoint_or_tiny())},
                      indexer_with={"milvus": options}) as flow:
        client = grpc_client(port=flow["grpc"])
        names = list(shapes.gallery)
        half = len(names) // 2
        # Two requests: with two replicas polled ANY, they may land on either one.
        for part in (names[:half], names[half:]):
            answer = client.post("/index", DocList[GalleryDoc](
                GalleryDoc(id=n, image=shapes.image_path(n).read_bytes(), tags={"scene": shapes.scene_key(n)}) for n in part
            ), return_type=DocList[GalleryDoc])
            assert [d.error for d in answer] == [None] * len(part)
        # Every replica sees every write (one collection, Strong consistency): ask several times.
        counts = {client.post("/count", DocList[GalleryDoc](), return_type=DocList[StatsDoc])[0].count for _ in range(6)}
        assert counts == {len(names)}

        targets = [t["target"] for t in shapes.triplets[:4]]
        for _ in range(2):
            results = client.post("/search", DocList[QueryDoc](QueryDoc(image=shapes.image_path(t).read_bytes()) for t in targets),
                                  parameters={"limit": 5}, return_type=DocList[QueryDoc])
            for target, res in zip(targets, results):
                assert res.error is None and res.matches[0].id == target
                assert res.scores[0] == pytest.approx(1.0, abs=1e-4) and res.scores == sorted(res.scores, reverse=True)
                assert res.matches[0].tags["scene"] == shapes.scene_key(target)

        t = shapes.triplets[0]
        body = {"data": [{"image": data_uri(shapes.image_path(t["reference"]).read_bytes()), "text": t["caption"],
                          "reference_id": t["reference"]}], "parameters": {"limit": 3}}
        answer = http_post(flow["http_url"], "/search", body)["data"][0]
        assert len(answer["matches"]) == 3 and t["reference"] not in [m["id"] for m in answer["matches"]]

    # The database holds the index: nothing in the Flow's workspace, all of it in Milvus.
    assert not ws.exists() or not any(p.is_file() for p in ws.rglob("*"))
    from pymilvus import MilvusClient

    c = MilvusClient(uri=milvus_server)
    try:
        assert c.query("flow_test", filter="", output_fields=["count(*)"])[0]["count(*)"] == len(names)
    finally:
        c.close()
