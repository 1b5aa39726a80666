"""Start the Flow from its YAML with overrides, and talk to it (gRPC and HTTP).

Shared by `mlcl serve/index/search/demo` and the tests. The YAML files stay
the source of truth; this module only overrides ports, workspace and a few
`with:` parameters, the way `jina flow --uses` users would edit the file.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import yaml

from mlcl.gallery_files import image_files  # noqa: F401  (part of this module's interface; one definition)

from .resources import flow_names, flow_path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The checkout's flows/ when run from the repository, else the installed package's copy (resources.py).
DEFAULT_FLOW = flow_path("flow")
SHARDED_FLOW = flow_path("sharded")


def resolve_flow(value: "str | os.PathLike | None") -> Path:
    """`--flow`: a Flow YAML file, or the short name of one that ships with mlcl (`sharded`, `milvus`, ...)."""
    if value is None:
        return DEFAULT_FLOW
    path = Path(value).expanduser()
    if path.is_file():
        return path
    if path.parent == Path(".") or str(path.parent) == "flows":  # `sharded`, `flow.sharded.yml`, `flows/flow.sharded.yml`
        shipped = flow_path(path.name)
        if shipped.is_file():
            return shipped
    raise FileNotFoundError(f"Flow YAML {value} does not exist (shipped with mlcl: {', '.join(flow_names())})")
DEFAULT_GRPC_PORT = 54321
DEFAULT_HTTP_PORT = 54322


def quiet_jina() -> None:
    """No telemetry, no survey prompt (tests, CI, the demo)."""
    os.environ.setdefault("JINA_OPTOUT_TELEMETRY", "1")
    os.environ.setdefault("JINA_HIDE_SURVEY", "1")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flow_config(
    flow_file: str | os.PathLike = DEFAULT_FLOW,
    grpc_port: Optional[int] = None,
    http_port: Optional[int] = None,
    workspace: Optional[str | os.PathLike] = None,
    encoder_with: Optional[Dict[str, Any]] = None,
    indexer_with: Optional[Dict[str, Any]] = None,
    quiet_errors: bool = False,
) -> Dict[str, Any]:
    """The Flow YAML as a dict with overrides applied (and relative `uses` made absolute).

    `quiet_errors`: Executors log an error as one line, without its traceback.
    """
    path = Path(flow_file).resolve()
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict) or config.get("jtype") != "Flow":
        raise ValueError(f"{path} is not a Jina Flow YAML (no 'jtype: Flow')")
    with_ = config.setdefault("with", {}) or {}
    config["with"] = with_
    ports = list(with_.get("port") or [DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT])
    protocols = list(with_.get("protocol") or ["grpc", "http"])
    for proto, port in (("grpc", grpc_port), ("http", http_port)):
        if port is not None and proto in protocols:
            ports[protocols.index(proto)] = int(port)
    with_["port"] = ports
    gateway = config.get("gateway")
    if isinstance(gateway, dict) and gateway.get("py_modules"):
        # jina resolves py_modules against the YAML's folder only when it reads the file itself
        # (entries that are module names, such as mlcl_executor.flow_gateway, are imported by name)
        gateway["py_modules"] = [
            str((path.parent / m).resolve()) if m.endswith(".py") and not os.path.isabs(m) else m
            for m in gateway["py_modules"]
        ]
    for executor in config.get("executors", []):
        for key in ("uses", "uses_after", "uses_before"):
            value = executor.get(key)
            if isinstance(value, str) and value.endswith((".yml", ".yaml")) and not os.path.isabs(value):
                executor[key] = str((path.parent / value).resolve())
        uses = str(executor.get("uses", ""))
        extra = None
        if uses.endswith("config.yml") or executor.get("name") == "encoder":
            extra = encoder_with
        elif executor.get("name") == "indexer":
            extra = indexer_with
        if extra:
            executor["uses_with"] = {**(executor.get("uses_with") or {}), **extra}
        if quiet_errors:
            executor["quiet_error"] = True
        if workspace is not None and "workspace" in executor:
            executor["workspace"] = str(Path(workspace).resolve())
    return config


def build_flow(**kwargs: Any) -> "Flow":  # noqa: F821
    """A `jina.Flow` from `flow_config(**kwargs)` (not started)."""
    quiet_jina()
    from jina import Flow

    return Flow.load_config(flow_config(**kwargs))


def flow_ports(config: Dict[str, Any]) -> Dict[str, int]:
    with_ = config.get("with", {})
    return dict(zip(with_.get("protocol", ["grpc", "http"]), with_.get("port", [DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT])))


# ------------------------------------------------------------------ clients
class NoFlowError(ConnectionError):
    """No Flow answers at the address a client command was given."""


def grpc_client(host: str = "localhost", port: int = DEFAULT_GRPC_PORT) -> "Client":  # noqa: F821
    quiet_jina()
    from jina import Client

    return Client(host=host, port=int(port), protocol="grpc")


def check_flow(host: str = "localhost", port: int = DEFAULT_GRPC_PORT, timeout: float = 3.0) -> None:
    """Raise `NoFlowError` (one line, what to do) unless something listens at host:port."""
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except OSError:
        raise NoFlowError(f"no Flow at {host}:{port}: start one with `mlcl serve`") from None


def http_post(base_url: str, endpoint: str, payload: Dict[str, Any], timeout: float = 60.0) -> Dict[str, Any]:
    """POST JSON to the HTTP gateway; returns the decoded answer.

    A request the Executors reject comes back as HTTP 400 (a client's mistake, e.g. a
    bad parameter) or 500 (a server fault) with `{"detail": "<the reason>"}`: raised
    here as RuntimeError with that text.
    """
    url = base_url.rstrip("/") + "/" + endpoint.lstrip("/")
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode("utf-8"), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        raise RuntimeError(f"POST {url} failed with HTTP {exc.code}: {body[:2000]}") from None


def http_error(answer: Dict[str, Any]) -> Optional[str]:
    """The request-level error recorded in an HTTP answer's `header.status`, or None.

    (Executor exceptions usually arrive as HTTP 500, raised by `http_post`; this
    reads the status some gateway versions put in a 200 answer instead.)
    """
    status = (answer.get("header") or {}).get("status") or {}
    if status.get("code") in (None, 0, "SUCCESS"):
        return None
    args = (status.get("exception") or {}).get("args")
    return args[0] if isinstance(args, list) and args else str(status)


def curl_command(base_url: str, endpoint: str, payload: Dict[str, Any], max_len: int = 120) -> str:
    """A copy-pasteable curl for an HTTP request (long strings such as data URIs are shortened)."""

    def shorten(value: Any) -> Any:
        if isinstance(value, str) and len(value) > max_len:
            return value[: max_len - 20] + "...(truncated)"
        if isinstance(value, dict):
            return {k: shorten(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shorten(v) for v in value]
        return value

    body = json.dumps(shorten(payload))
    return (
        f"curl -s -X POST {base_url.rstrip('/')}/{endpoint.lstrip('/')} "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )


def batched(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = [
    "resolve_flow",
    "DEFAULT_FLOW", "DEFAULT_GRPC_PORT", "DEFAULT_HTTP_PORT", "NoFlowError", "SHARDED_FLOW", "batched", "build_flow", "check_flow",
    "curl_command", "flow_config", "flow_ports", "free_port", "grpc_client", "http_error", "http_post",
    "image_files", "quiet_jina",
]
