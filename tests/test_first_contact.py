"""What a new user meets first (issue 9): `mlcl serve` as a process, as a user runs it.

A healthy start prints our lines only; empty requests and client mistakes are
answered at once (HTTP 400 for a mistake, the next request served); a start that
cannot succeed ends with one line and no process left; SIGTERM stops everything;
client commands without a Flow print one line. Plain and sharded Flows.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Dict, List

import psutil
import pytest

from helpers import png_bytes, server_error
from mlcl_cli.flows import free_port

REPO = Path(__file__).resolve().parent.parent
MLCL = [sys.executable, "-m", "mlcl_cli"]
START_TIMEOUT = 240  # s: a loaded 2-core CI box loads torch slowly; a healthy idle start is ~10 s

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JINA_LOG_LEVEL", "JINA_MP_START_METHOD"))}
    env.update(JINA_OPTOUT_TELEMETRY="1", JINA_HIDE_SURVEY="1", PYTHONPATH=str(REPO))
    return env


class Served:
    """`mlcl serve ...` in a subprocess, its output collected line by line."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.grpc, self.http = free_port(), free_port()
        self.log = tmp / f"serve-{self.grpc}.log"
        self.args = [*MLCL, "serve", "--grpc-port", str(self.grpc), "--http-port", str(self.http),
                     "--workspace", str(tmp / f"ws-{self.grpc}"), *extra]
        self.proc = subprocess.Popen(self.args, cwd=tmp, env=_env(), stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT, text=True)
        self.started = time.monotonic()

    def lines(self) -> List[str]:
        return self.log.read_text().splitlines()

    def wait_ready(self) -> float:
        while time.monotonic() - self.started < START_TIMEOUT:
            if any("ready in" in line for line in self.lines()):
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                raise AssertionError(f"mlcl serve ended ({self.proc.returncode}):\n" + "\n".join(self.lines()))
            time.sleep(0.3)
        raise AssertionError("mlcl serve not ready:\n" + "\n".join(self.lines()))

    def family(self) -> List[psutil.Process]:
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def url(self, endpoint: str) -> str:
        return f"http://127.0.0.1:{self.http}/{endpoint.lstrip('/')}"


def http(url: str, payload: object, timeout: float = 30.0):
    """(status, decoded body) of a JSON POST; errors are answers too."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def stop_within(served: Served, seconds: float, signum: int = signal.SIGTERM) -> float:
    family = served.family()
    t0 = time.monotonic()
    served.proc.send_signal(signum)
    served.proc.wait(timeout=seconds + 30)
    gone, alive = psutil.wait_procs(family, timeout=max(0.1, seconds - (time.monotonic() - t0)))
    took = time.monotonic() - t0
    for p in alive:
        p.kill()
    assert not alive, f"left behind after SIGTERM: {[p.pid for p in alive]}"
    assert served.proc.returncode == 0
    return took


ENDPOINTS = ["/index", "/update", "/delete", "/search", "/encode", "/count", "/clear"]


def assert_empty_requests_answered(served: Served) -> None:
    from docarray import DocList

    from mlcl_executor.schemas import GalleryDoc, QueryDoc, StatsDoc
    from mlcl_cli.client import grpc_client

    for endpoint in ENDPOINTS:
        t0 = time.monotonic()
        status, body = http(served.url(endpoint), {"data": []}, timeout=20)
        assert status == 200 and time.monotonic() - t0 < 20, (endpoint, status, body)
    client = grpc_client(port=served.grpc)
    for endpoint in ENDPOINTS:
        schema = {"/search": QueryDoc, "/encode": QueryDoc, "/count": StatsDoc}.get(endpoint, GalleryDoc)
        t0 = time.monotonic()
        answer = client.post(endpoint, DocList[GalleryDoc](), return_type=DocList[schema], timeout=20)
        assert time.monotonic() - t0 < 20, endpoint
        assert len(answer) == (1 if endpoint == "/count" else 0), endpoint


def assert_quiet(lines: List[str]) -> None:
    ours = [line for line in lines if line.startswith("mlcl serve: ")]
    others = [line for line in lines if not line.startswith("mlcl serve: ")]
    assert not others, "a healthy start printed lines that are not ours:\n" + "\n".join(others)
    assert any("ready in" in line and "http://127.0.0.1" in line for line in ours)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    served = Served(tmp_path_factory.mktemp("plain"))
    served.ready_after = served.wait_ready()
    yield served
    if served.proc.poll() is None:
        served.proc.kill()
        for p in served.family()[1:]:
            p.kill()


def test_healthy_start_prints_our_lines_only(plain):
    assert_quiet(plain.lines())


def test_empty_requests_are_answered_at_once(plain):
    assert_empty_requests_answered(plain)


@pytest.mark.parametrize("parameters, reason", [
    ({"limit": -1}, "parameter 'limit' must be between 1 and 1000, got -1"),
    ({"limit": "ten"}, "parameter 'limit' must be an integer, got 'ten'"),
    ({"limit": 10**9}, "parameter 'limit' must be between 1 and 1000, got 1000000000"),
    ({"limit": 2.5}, "parameter 'limit' must be an integer, got 2.5"),
    ({"exclude_reference": "maybe"}, "parameter 'exclude_reference' must be true or false, got 'maybe'"),
])
def test_bad_parameters_are_client_errors_and_the_next_request_is_served(plain, parameters, reason):
    status, body = http(plain.url("/search"), {"data": [{"text": "a red square"}], "parameters": parameters})
    assert (status, body) == (400, {"detail": reason})
    status, body = http(plain.url("/search"), {"data": [{"text": "a red square"}], "parameters": {"limit": 3}})
    assert status == 200 and body["data"][0]["error"] is None
    assert not any("Traceback" in line for line in plain.lines())


def test_bad_encode_parameter_and_malformed_bodies_are_client_errors(plain):
    status, body = http(plain.url("/encode"), {"data": [{"text": "x"}], "parameters": {"as": "both"}})
    assert (status, body) == (400, {"detail": "parameter 'as' must be 'query' or 'gallery', got 'both'"})
    status, _ = http(plain.url("/search"), b'{"data": [{"text": 3')
    assert status == 422
    status, _ = http(plain.url("/search"), {"data": [{"text": ["a", "list"]}]})
    assert status == 422
    assert http(plain.url("/count"), {"data": []})[0] == 200


def test_bad_parameter_over_grpc_names_the_reason(plain):
    from docarray import DocList
    from jina.excepts import BadServer

    from mlcl_executor.schemas import QueryDoc
    from mlcl_cli.client import grpc_client

    client = grpc_client(port=plain.grpc)
    with pytest.raises(BadServer) as info:
        client.post("/search", DocList[QueryDoc]([QueryDoc(text="x")]), parameters={"limit": 0},
                    return_type=DocList[QueryDoc])
    assert server_error(info.value) == "parameter 'limit' must be between 1 and 1000, got 0"
    assert info.value.args[0].status.exception.name == "RequestError"
    answer = client.post("/search", DocList[QueryDoc]([QueryDoc(text="x")]), parameters={"limit": 2},
                         return_type=DocList[QueryDoc])
    assert answer[0].error is None


def test_search_leaves_the_reference_image_out_and_says_so(plain, tmp_path):
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    colours = [(255, 0, 0), (0, 0, 255), (0, 200, 0), (250, 250, 0)]
    for i, colour in enumerate(colours):
        (gallery / f"img{i}.png").write_bytes(png_bytes(colour))
    run = lambda *a: subprocess.run([*MLCL, *a, "--port", str(plain.grpc)], env=_env(), capture_output=True,  # noqa: E731
                                    text=True, timeout=120)
    indexed = run("index", str(gallery), "--no-progress")
    assert indexed.returncode == 0, indexed.stderr
    assert "ids are paths relative to the folder given (e.g. 'img0.png')" in indexed.stdout
    found = run("search", "--image", str(gallery / "img0.png"), "--text", "make it blue", "-k", "3", "--json")
    result = json.loads(found.stdout)
    assert result["left_out"] == ["img0.png"]
    assert "img0.png" not in [m["id"] for m in result["matches"]] and len(result["matches"]) == 3
    kept = json.loads(run("search", "--image", str(gallery / "img0.png"), "--keep-reference", "--json").stdout)
    assert kept["matches"][0]["id"] == "img0.png" and kept["left_out"] == []


def readme_serving_commands() -> List[str]:
    """The shell commands of the README's serving section (continuations joined, comments dropped)."""
    import re

    text = (REPO / "README.md").read_text()
    section = text[text.index("## Serving: the executors in your Flow"): text.index("Full reference (schemas")]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+# .*$", "", line).strip()
            if line:
                commands.append(line)
    return commands


def test_the_readme_serving_commands_run(plain, tmp_path):
    import base64
    import shlex

    commands = readme_serving_commands()
    assert [c.split()[:2] for c in commands] == [
        ["mlcl", "serve"], ["mlcl", "index"], ["mlcl", "search"], ["curl", "-s"],
        ["JINA_GATEWAY_IMAGE=jinaai/jina:3.33.1-py311-standard", "jina"],
        ["JINA_GATEWAY_IMAGE=jinaai/jina:3.33.1-py311-standard", "jina"],
    ]
    assert commands[0] == "mlcl serve" and plain.args[len(MLCL):len(MLCL) + 1] == ["serve"]  # the fixture runs it
    assert http(plain.url("/clear"), {"data": []})[0] == 200  # a gallery of the README's images only
    gallery = tmp_path / "path" / "to" / "gallery"
    gallery.mkdir(parents=True)
    for name, colour in (("shirt.png", (255, 0, 0)), ("blue.png", (0, 0, 255)), ("green.png", (0, 200, 0))):
        (gallery / name).write_bytes(png_bytes(colour))
    env = _env()
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "flow.docker.yml").write_text((REPO / "flows" / "flow.docker.yml").read_text())
    data_uri = "data:image/png;base64," + base64.b64encode(png_bytes((255, 0, 0))).decode()
    for command in commands[1:]:
        if command.startswith("mlcl "):
            command += f" --port {plain.grpc}"
        command = command.replace("localhost:54322", f"localhost:{plain.http}").replace("data:image/png;base64,...", data_uri)
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (command[:200], done.stdout[-1000:], done.stderr[-2000:])
        if command.startswith("curl"):
            answer = json.loads(done.stdout)
            assert len(answer["data"][0]["matches"]) == 3 and answer["data"][0]["error"] is None
        if command.startswith("mlcl search"):
            assert "left out 'shirt.png': it is the reference image itself" in done.stdout
            assert len([line for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]) == 2
        assert "Traceback" not in done.stderr, shlex.split(command)[:2]
    assert (tmp_path / "k8s" / "gateway" / "gateway.yml").is_file()
    assert (tmp_path / "docker-compose.yml").is_file()


def test_sigterm_stops_serve_and_all_its_processes(plain):
    took = stop_within(plain, 10)
    assert took < 10
    assert plain.lines()[-1] == "mlcl serve: stopped"


def test_sharded_flow_starts_quietly_answers_empty_requests_and_stops_on_one_ctrl_c(tmp_path):
    served = Served(tmp_path, "--flow", str(REPO / "flows" / "flow.sharded.yml"))
    try:
        served.wait_ready()
        assert_quiet(served.lines())
        assert_empty_requests_answered(served)
        status, body = http(served.url("/search"), {"data": [{"text": "x"}], "parameters": {"limit": 0}})
        assert status == 400 and "limit" in body["detail"]
        assert stop_within(served, 10, signal.SIGINT) < 10  # one Ctrl-C
    finally:
        if served.proc.poll() is None:
            served.proc.kill()


# ---------------------------------------------------------------- failing starts
def serve_fails(tmp: Path, *extra: str, within: float) -> List[str]:
    grpc, http_port = free_port(), free_port()
    t0 = time.monotonic()
    result = subprocess.run([*MLCL, "serve", "--grpc-port", str(grpc), "--http-port", str(http_port), *extra],
                            cwd=tmp, env=_env(), capture_output=True, text=True, timeout=within + 60)
    took = time.monotonic() - t0
    assert result.returncode != 0
    assert took < within, f"took {took:.1f} s"
    leftover = [p for p in psutil.process_iter(["cmdline"]) if f"--grpc-port {grpc} " in " ".join(p.info["cmdline"] or []) + " "]
    assert not leftover, "processes left behind"
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def test_missing_checkpoint_fails_at_once_with_one_line(tmp_path):
    lines = serve_fails(tmp_path, "--checkpoint", str(tmp_path / "nonexistent.pt"), within=15)
    assert lines == [f"mlcl serve: checkpoint {tmp_path / 'nonexistent.pt'} does not exist"]


def test_workspace_of_another_backend_fails_at_once(tmp_path):
    shard = tmp_path / "ws" / "MLCLIndexer" / "0"
    shard.mkdir(parents=True)
    (shard / "mlcl-index.json").write_text(json.dumps({"backend": "memory", "dim": 128, "format": 1}))
    lines = serve_fails(tmp_path, "--backend", "hnsw", "--workspace", str(tmp_path / "ws"), within=15)
    assert len(lines) == 1 and "holds a 'memory' index but --backend hnsw was asked for" in lines[0]


def test_port_in_use_fails_at_once(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([*MLCL, "serve", "--grpc-port", str(port), "--http-port", str(free_port())],
                                cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"mlcl serve: grpc port {port} is in use (another `mlcl serve`? choose one with --grpc-port)"


def test_a_file_that_is_no_mlcl_checkpoint_fails_at_once_with_one_line(tmp_path):
    import torch

    fake = tmp_path / "fake.pt"
    with zipfile.ZipFile(fake, "w") as archive:  # a zip that is not torch.save's archive
        archive.writestr("fake/data.pkl", b"not a pickle")
    lines = serve_fails(tmp_path, "--checkpoint", str(fake), within=15)
    assert lines == [f"mlcl serve: checkpoint {fake} is not a PyTorch checkpoint (a zip file without torch's data.pkl and version)"]
    foreign = tmp_path / "open_clip.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)  # a real torch checkpoint, not ours
    lines = serve_fails(tmp_path, "--checkpoint", str(foreign), within=15)
    assert len(lines) == 1 and lines[0].startswith(f"mlcl serve: checkpoint {foreign} is not an mlcl checkpoint")


def test_a_checkpoint_that_does_not_fit_its_model_ends_the_start_with_its_reason(tmp_path):
    import torch

    from helpers import tiny_checkpoint

    payload = torch.load(tiny_checkpoint(), map_location="cpu", weights_only=True)
    payload["state_dict"] = dict(list(payload["state_dict"].items())[:3])  # weights of another, smaller model
    broken = tmp_path / "broken.pt"
    torch.save(payload, broken)
    lines = serve_fails(tmp_path, "--checkpoint", str(broken), within=90)  # idle machine: ~17 s (the encoder loads torch)
    assert lines[-1].startswith("mlcl serve: the Flow could not start: ")
    assert any("MLCLEncoder cannot start" in line for line in lines)


def test_a_start_that_cannot_use_its_device_ends_with_its_reason(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda starts")
    lines = serve_fails(tmp_path, "--device", "cuda", within=90)
    assert lines[-1].startswith("mlcl serve: the Flow could not start: ")
    # jina's log wraps long lines (its time stamps in the middle) where its output is no terminal
    logged = " ".join(re.sub(r"\[\d\d/\d\d/\d\d \d\d:\d\d:\d\d\]", " ", " ".join(lines)).split())
    assert "MLCLEncoder cannot start: device 'cuda' requested but CUDA is not available" in logged


def test_a_signal_before_the_flow_is_ready_ends_everything_at_once(tmp_path):
    """A start is stopped by the first SIGTERM, whether it would succeed or fail (jina's start does not return for it)."""
    served = Served(tmp_path, "--device", "cpu")
    while not any(line.startswith("mlcl serve: starting") for line in served.lines()):
        assert served.proc.poll() is None and time.monotonic() - served.started < START_TIMEOUT, served.lines()
        time.sleep(0.1)
    time.sleep(1.0)  # the Flow's processes are being started
    assert not any("ready in" in line for line in served.lines())
    family = served.family()
    t0 = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    served.proc.wait(timeout=30)
    took = time.monotonic() - t0
    _, alive = psutil.wait_procs(family, timeout=5)
    for p in alive:
        p.kill()
    assert took < 10 and not alive, (took, [p.pid for p in alive])
    assert served.proc.returncode == 143
    assert served.lines()[-1] == "mlcl serve: stopped before the Flow was ready"


def test_client_commands_without_a_flow_print_one_line(tmp_path):
    port = free_port()
    (tmp_path / "a.png").write_bytes(png_bytes((255, 0, 0)))
    for args in (["search", "--text", "a red square"], ["index", str(tmp_path)]):
        result = subprocess.run([*MLCL, *args, "--port", str(port)], env=_env(), capture_output=True, text=True, timeout=120)
        assert result.returncode == 1
        assert result.stderr.strip() == f"mlcl {args[0]}: no Flow at localhost:{port}: start one with `mlcl serve`"
