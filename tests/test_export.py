"""`jina export kubernetes|docker-compose flows/flow.docker.yml` produce manifests (no cluster, no docker)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import REPO_ROOT, subprocess_env

FLOW = REPO_ROOT / "flows" / "flow.docker.yml"
GATEWAY_IMAGE = "jinaai/jina:3.33.1-py311-standard"
JINA = [sys.executable, "-c", "import sys; from jina_cli import main; sys.argv[0] = 'jina'; main()"]

pytestmark = pytest.mark.slow  # `jina export` in a subprocess


def jina_export(*args: str) -> None:
    env = subprocess_env()
    env["JINA_GATEWAY_IMAGE"] = GATEWAY_IMAGE  # else the export asks a hub for the gateway image
    done = subprocess.run([*JINA, "export", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def args_of(container: dict) -> list[str]:
    return [str(a) for a in container.get("args", [])]


@pytest.mark.timeout(180)
def test_kubernetes_manifests(tmp_path):
    out = tmp_path / "k8s"
    jina_export("kubernetes", str(FLOW), str(out), "--k8s-namespace", "mlcl")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.yml"))
    assert files == ["encoder/encoder.yml", "gateway/gateway.yml", "indexer/indexer-0.yml",
                     "indexer/indexer-1.yml", "indexer/indexer-head.yml"]

    def deployment(name: str) -> dict:
        docs = load_all(out / name)
        assert {d["kind"] for d in docs} >= {"ConfigMap", "Service", "Deployment"}
        assert all(d["metadata"]["namespace"] == "mlcl" for d in docs)
        return next(d for d in docs if d["kind"] == "Deployment")

    encoder = deployment("encoder/encoder.yml")
    assert encoder["spec"]["replicas"] == 2
    (container,) = encoder["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "mlcl-encoder:0.1.0" and "config.yml" in args_of(container)

    for shard in (0, 1):
        spec = deployment(f"indexer/indexer-{shard}.yml")["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        args = args_of(container)
        assert container["image"] == "mlcl-indexer:0.1.0"
        shard_id = args[args.index("--shard-id") + 1] if "--shard-id" in args else "0"  # 0 is the default
        assert shard_id == str(shard) and args[args.index("--shards") + 1] == "2"
        assert "hnsw" in args[args.index("--uses-with") + 1]

    head = deployment("indexer/indexer-head.yml")["spec"]["template"]["spec"]["containers"]
    images = {c["image"] for c in head}
    assert images == {GATEWAY_IMAGE, "mlcl-merger:0.1.0"}  # the merger runs beside the head
    head_args = args_of(next(c for c in head if c["image"] == GATEWAY_IMAGE))
    polling = yaml.safe_load(head_args[head_args.index("--polling") + 1])
    assert polling["/index"] == polling["/search"] == polling["/count"] == "ALL"

    gateway = deployment("gateway/gateway.yml")["spec"]["template"]["spec"]["containers"][0]
    assert gateway["image"] == GATEWAY_IMAGE


@pytest.mark.timeout(180)
def test_docker_compose_manifest(tmp_path):
    out = tmp_path / "docker-compose.yml"
    jina_export("docker-compose", str(FLOW), str(out))
    services = yaml.safe_load(out.read_text())["services"]
    assert {"gateway", "encoder-rep-0", "encoder-rep-1", "indexer-head", "indexer-0", "indexer-1", "indexer-uses-after"} <= set(services)
    assert services["encoder-rep-0"]["image"] == "mlcl-encoder:0.1.0"
    assert services["indexer-1"]["image"] == "mlcl-indexer:0.1.0"
    assert services["indexer-uses-after"]["image"] == "mlcl-merger:0.1.0"
    assert services["gateway"]["image"] == GATEWAY_IMAGE
    published = " ".join(map(str, services["gateway"].get("ports", [])))
    assert "54321" in published and "54322" in published


def test_the_exported_flow_has_the_sharded_flows_topology():
    docker = yaml.safe_load(FLOW.read_text())
    local = yaml.safe_load((REPO_ROOT / "flows" / "flow.sharded.yml").read_text())
    pick = lambda flow, name: next(e for e in flow["executors"] if e["name"] == name)  # noqa: E731
    for key in ("shards", "polling"):
        assert pick(docker, "indexer")[key] == pick(local, "indexer")[key]
    assert pick(docker, "encoder")["replicas"] == pick(local, "encoder")["replicas"]
    assert docker["with"]["port"] == local["with"]["port"]
