"""`mlcl serve` in its own process: index with `mlcl index`, search with `mlcl search`,
stop the Flow (SIGTERM), start it again: the same search gives the same results (hnsw backend)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from docarray import DocList

from helpers import PYTHON, REPO_ROOT, png_bytes, subprocess_env, tiny_checkpoint
from mlcl_executor.schemas import GalleryDoc, QueryDoc, StatsDoc
from mlcl_cli.flows import free_port
from mlcl_cli.client import grpc_client

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
           (128, 0, 0), (0, 128, 0), (0, 0, 128), (128, 128, 0), (40, 40, 40), (220, 220, 220)]

pytestmark = pytest.mark.slow  # `mlcl serve` and the CLI in subprocesses


class Server:
    """`python -m mlcl_cli serve ...` as a child process, its output in a log file."""

    def __init__(self, args: list[str], log: Path):
        self.log = log
        self.proc = subprocess.Popen([PYTHON, "-m", "mlcl_cli", "serve", *args], cwd=REPO_ROOT, env=subprocess_env(),
                                     stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "mlcl serve: ready" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        self.kill()
        raise AssertionError(f"mlcl serve did not become ready:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"mlcl serve did not stop on SIGTERM:\n{self.log.read_text(errors='replace')[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group: the Flow's processes too (a killed `mlcl serve` cannot stop them)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "mlcl_cli", *args], cwd=REPO_ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=timeout)


def client_search(client, image: bytes, text: str):
    res = client.post("/search", DocList[QueryDoc]([QueryDoc(image=image, text=text)]), parameters={"limit": 6},
                      return_type=DocList[QueryDoc])[0]
    return [m.id for m in res.matches], res.scores


@pytest.mark.timeout(300)
def test_serve_index_search_restart(tmp_path):
    gallery = tmp_path / "gallery"
    (gallery / "more").mkdir(parents=True)
    for i, colour in enumerate(COLOURS):
        (gallery / ("more" if i % 2 else "") / f"c{i:02d}.png").write_bytes(png_bytes(colour, (40 + i, 36)))
    (gallery / "broken.png").write_bytes(b"not a png")
    grpc, http = free_port(), free_port()
    args = ["--grpc-port", str(grpc), "--http-port", str(http), "--workspace", str(tmp_path / "ws"),
            "--checkpoint", str(tiny_checkpoint()), "--backend", "hnsw", "--device", "cpu"]

    server = Server(args, tmp_path / "serve1.log")
    try:
        server.wait_ready()
        done = cli("index", str(gallery), "--port", str(grpc), "--no-progress")
        assert done.returncode == 1, done.stderr  # one broken image: reported, the others indexed
        assert re.search(r"indexed 12 of 13 images in [\d.]+ s \([\d.]+ images/s\); 0 of them replaced ids already in the index; "
                         r"the index holds 12", done.stdout)
        assert "document 'broken.png'" in done.stderr and "not a decodable image" in done.stderr

        found = cli("search", "--image", str(gallery / "more" / "c03.png"), "--text", "make it darker", "-k", "5",
                    "--json", "--port", str(grpc))
        assert found.returncode == 0, found.stderr
        answer = json.loads(found.stdout)
        assert answer["error"] is None and len(answer["matches"]) == 5
        assert {m["id"] for m in answer["matches"]} <= {f"c{i:02d}.png" if i % 2 == 0 else f"more/c{i:02d}.png" for i in range(12)}
        # answers carry no server path (expose_paths is off), but the file's digest that mlcl search matches on
        assert all("path" not in m["tags"] and len(m["tags"]["sha256"]) == 64 for m in answer["matches"])

        query = (gallery / "more" / "c05.png").read_bytes()
        before = client_search(grpc_client(port=grpc), query, "make it blue")
        assert server.stop() == 0
        assert "mlcl serve: stopped" in (tmp_path / "serve1.log").read_text()
    finally:
        server.kill()

    server = Server(args, tmp_path / "serve2.log")
    try:
        server.wait_ready()
        client = grpc_client(port=grpc)
        assert client.post("/count", DocList[GalleryDoc](), return_type=DocList[StatsDoc])[0].count == 12
        after = client_search(client, query, "make it blue")
        assert after[0] == before[0]
        assert after[1] == pytest.approx(before[1], abs=1e-6)
        assert server.stop() == 0
    finally:
        server.kill()


@pytest.mark.timeout(60)
def test_cli_reports_missing_inputs(tmp_path):
    done = cli("search", "--port", str(free_port()))
    assert done.returncode == 2 and "give --image, --text, or both" in done.stderr
    done = cli("index", str(tmp_path / "nowhere"), "--port", str(free_port()))
    assert done.returncode == 2 and "no such file or folder" in done.stderr


@pytest.mark.timeout(60)
def test_the_cli_modules_do_not_import_jina():
    code = ("import sys, mlcl, mlcl.model, mlcl_cli.cli, mlcl_cli.commands.serve, mlcl_cli.commands.index, "
            "mlcl_cli.commands.search, mlcl_cli.commands.demo; mlcl_cli.cli.build_parser(); "
            "assert 'jina' not in sys.modules and 'mlcl_executor.encoder' not in sys.modules, sorted(sys.modules)")
    done = subprocess.run([PYTHON, "-c", code], cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr[-2000:]
