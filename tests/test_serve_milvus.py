"""`mlcl serve --flow milvus` on a fresh machine (issue 20, item 4): with no Milvus named it serves Milvus Lite
itself for the replicas, which then agree on /count; a server that does not answer, or an index the target cannot
build, is refused before anything is ready, in one line."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from helpers import png_bytes
from test_first_contact import MLCL, REPO, Served, _env, http, stop_within

if not os.environ.get("CI"):
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install '.[milvus]'); CI installs it")

from mlcl_cli.flows import free_port  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_a_fresh_machine_gets_milvus_lite_for_the_replicas_and_one_count(tmp_path):
    env_before = os.environ.pop("MLCL_MILVUS_URI", None)
    try:
        served = Served(tmp_path, "--flow", "milvus")
        served.wait_ready()
    finally:
        if env_before is not None:
            os.environ["MLCL_MILVUS_URI"] = env_before
    try:
        lines = served.lines()
        assert any(line.startswith("mlcl serve: Milvus Lite serves ") for line in lines), lines
        assert all(line.startswith("mlcl serve: ") for line in lines), lines  # our lines only
        gallery = tmp_path / "gallery"
        gallery.mkdir()
        for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]):
            (gallery / f"img{i}.png").write_bytes(png_bytes(colour))
        done = subprocess.run([*MLCL, "index", str(gallery), "--port", str(served.grpc), "--no-progress"],
                              cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        # two indexer replicas answer /count in turn: both see the one collection, width included
        answers = {(body["data"][0]["count"], body["data"][0]["dim"])
                   for body in (http(served.url("/count"), {"data": []})[1] for _ in range(8))}
        assert len(answers) == 1 and next(iter(answers))[0] == 4 and next(iter(answers))[1], answers
        assert (tmp_path / f"ws-{served.grpc}" / "milvus" / "milvus.db").exists()
    finally:
        stop_within(served, 15)


def refused(tmp_path: Path, flow: Path, env_extra: dict = None) -> subprocess.CompletedProcess:
    env = {**_env(), **(env_extra or {})}
    if not env_extra or "MLCL_MILVUS_URI" not in env_extra:
        env.pop("MLCL_MILVUS_URI", None)
    return subprocess.run([*MLCL, "serve", "--flow", str(flow), "--grpc-port", str(free_port()), "--http-port",
                           str(free_port()), "--workspace", str(tmp_path / "ws")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def flow_variant(tmp_path: Path, **milvus) -> Path:
    config = yaml.safe_load((REPO / "flows" / "flow.milvus.yml").read_text())
    indexer = next(e for e in config["executors"] if e["name"] == "indexer")
    indexer["uses_with"]["milvus"].update(milvus)
    for executor in config["executors"]:
        executor["uses"] = str((REPO / "flows" / executor["uses"]).resolve())
    path = tmp_path / "flow.milvus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_a_server_that_does_not_answer_is_refused_in_one_line_within_seconds(tmp_path):
    t0 = time.monotonic()
    done = refused(tmp_path, flow_variant(tmp_path, uri=f"http://127.0.0.1:{free_port()}"))
    took = time.monotonic() - t0
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, lines
    assert "no Milvus server answers at http://127.0.0.1:" in lines[0] and "MLCL_MILVUS_URI" in lines[0]
    assert took < 5 + 3, took  # the check itself: under 5 s (the rest is the interpreter's start)


def test_an_index_milvus_lite_cannot_build_is_refused_before_anything_starts(tmp_path):
    done = refused(tmp_path, flow_variant(tmp_path, index_type="HNSW", index_params={"M": 16}))
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, lines
    assert "index_type 'HNSW' needs a Milvus server" in lines[0] and "MLCL_MILVUS_URI" in lines[0]


def test_an_index_the_target_cannot_build_stops_the_indexer_at_its_start(tmp_path):
    """A target named by URI (here Milvus Lite serving on a port, as a server is reached) is asked before the
    Flow is ready: the indexer's start fails with the reason, not the first /index."""
    from mlcl_cli.milvus_server import LiteServer
    from mlcl_executor.indexer import MLCLIndexer
    from mlcl_executor.stores.milvus import connect, inspect_target, probe_index

    lite = LiteServer(tmp_path / "lite" / "server.db")
    uri = lite.start()
    try:
        with pytest.raises(ValueError, match="index_type 'HNSW' needs a Milvus server"):
            MLCLIndexer(backend="milvus", milvus={"uri": uri, "index_type": "HNSW"},
                        metas={"name": "indexer", "workspace": str(tmp_path / "ws")},
                        runtime_args={"shard_id": 0, "shards": 1, "name": "indexer"})
        assert inspect_target(tmp_path, {"uri": uri}) is None  # FLAT, the default on Lite: fine
        client = connect(uri)
        try:  # what a server is asked: a throw-away collection with the index, dropped afterwards
            assert probe_index(client, "FLAT", {}, 10.0) is None
            assert "BOGUS" in probe_index(client, "BOGUS", {}, 10.0)
            assert not [c for c in client.list_collections() if c.startswith("mlcl_probe_")]
        finally:
            client.close()
    finally:
        lite.stop()
