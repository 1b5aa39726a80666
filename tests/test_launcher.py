"""mlcl_cli/launcher.py without a Flow: what the checks before a start find, and a start that raises."""

import logging
import socket
from types import SimpleNamespace

import pytest

from mlcl_cli.launcher import FlowStartError, service_problems, supervised


def test_docker_executors_without_a_docker_daemon_are_one_line(monkeypatch, tmp_path):
    config = {"executors": [{"name": "encoder", "uses": "docker://mlcl-encoder:0.1.0"}, {"name": "x", "uses": "x.yml"}]}
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'docker.sock'}")
    (problem,) = service_problems(config)
    assert "docker://mlcl-encoder:0.1.0" in problem and f"no {tmp_path / 'docker.sock'}" in problem
    (tmp_path / "docker.sock").touch()
    assert service_problems(config) == []


def test_a_milvus_server_that_does_not_answer_is_one_line(monkeypatch):
    monkeypatch.delenv("MLCL_MILVUS_URI", raising=False)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        config = {"executors": [{"name": "indexer", "uses_with": {"backend": "milvus", "milvus": {"uri": f"http://127.0.0.1:{port}"}}}]}
        assert service_problems(config) == []
    assert service_problems(config) == [f"no Milvus server answers at http://127.0.0.1:{port} (the indexer's milvus.uri; "
                                        "set $MLCL_MILVUS_URI to your server, or milvus.uri: null and mlcl serve starts "
                                        "Milvus Lite)"]
    lite = {"executors": [{"name": "indexer", "uses_with": {"backend": "milvus", "milvus": {"uri": "gallery.db"}}}]}
    assert service_problems(lite) == []  # Milvus Lite: a file, started by the indexer itself


def test_a_start_that_raises_ends_with_one_line():
    def start():
        raise RuntimeError("Error while fetching server API version\n(a long traceback's worth)")

    flow = SimpleNamespace(start=start, close=lambda: None, logger=SimpleNamespace(logger=logging.getLogger("test-flow")))
    with pytest.raises(FlowStartError, match=r"^the Flow could not start: RuntimeError: Error while fetching server API version$"):
        with supervised(flow, "mlcl test", show_jina_banner=True):
            pass
