"""Build a Flow from its YAML with overrides: `mlcl serve`, `mlcl demo`, the tests and the benchmarks.

The YAML files stay the source of truth; this module only overrides ports,
workspace and a few `with:` parameters, the way `jina flow --uses` users would
edit the file. Where the YAMLs are (a checkout, or the installed package):
`resources.py`.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Dict, Optional

from .resources import flow_names, flow_path

DEFAULT_GRPC_PORT = 54321
DEFAULT_HTTP_PORT = 54322


def default_flow() -> Path:
    """flows/flow.yml: the checkout's when run from the repository, else the installed package's copy."""
    return flow_path("flow")


def resolve_flow(value: "str | os.PathLike | None") -> Path:
    """`--flow`: a Flow YAML file, or the short name of one that ships with mlcl (`sharded`, `milvus`, ...)."""
    if value is None:
        return default_flow()
    path = Path(value).expanduser()
    if path.is_file():
        return path
    if path.parent == Path(".") or str(path.parent) == "flows":  # `sharded`, `flow.sharded.yml`, `flows/flow.sharded.yml`
        shipped = flow_path(path.name)
        if shipped.is_file():
            return shipped
    raise FileNotFoundError(f"Flow YAML {value} does not exist (shipped with mlcl: {', '.join(flow_names())})")


def quiet_jina() -> None:
    """No telemetry, no survey prompt (tests, CI, the demo)."""
    os.environ.setdefault("JINA_OPTOUT_TELEMETRY", "1")
    os.environ.setdefault("JINA_HIDE_SURVEY", "1")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Where the Executors of a Flow on one machine listen: only the gateway is meant to be reached from elsewhere.
EXECUTOR_HOST = "127.0.0.1"


def flow_config(
    flow_file: "str | os.PathLike | None" = None,
    grpc_port: Optional[int] = None,
    http_port: Optional[int] = None,
    workspace: "str | os.PathLike | None" = None,
    encoder_with: Optional[Dict[str, Any]] = None,
    indexer_with: Optional[Dict[str, Any]] = None,
    quiet_errors: bool = False,
    host: Optional[str] = None,
    gateway_with: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """The Flow YAML (default: flows/flow.yml) as a dict with overrides applied (and relative `uses` made absolute).

    `quiet_errors`: Executors log an error as one line, without its traceback. `host`: the gateway's address
    (default: the YAML's); `gateway_with`: `uses_with` of an `MLCLGateway` (e.g. `write_token_file`). Executors that run here (not in a container, not external) listen on `EXECUTOR_HOST`
    unless the YAML names a host: a client that reached an Executor's port would bypass the gateway.
    """
    import yaml

    path = Path(flow_file or default_flow()).resolve()
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
    if host is not None:
        with_["host"] = host
    gateway = config.get("gateway")
    if gateway_with:
        if not isinstance(gateway, dict):
            raise ValueError(f"{path} has no gateway section to give {sorted(gateway_with)} to (its gateway is jina's own)")
        gateway["uses_with"] = {**(gateway.get("uses_with") or {}), **gateway_with}
    if isinstance(gateway, dict) and gateway.get("py_modules"):
        # jina resolves py_modules against the YAML's folder only when it reads the file itself
        # (entries that are module names, such as mlcl_executor.jina_register, are imported by name)
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
        if is_encoder(executor):
            extra = encoder_with
        elif executor.get("name") == "indexer":
            extra = indexer_with
        if extra:
            executor["uses_with"] = {**(executor.get("uses_with") or {}), **extra}
        if quiet_errors:
            executor["quiet_error"] = True
        if not uses.startswith(("docker://", "jinaai://", "jinahub")) and not executor.get("external"):
            executor.setdefault("host", EXECUTOR_HOST)
        if workspace is not None and "workspace" in executor:
            executor["workspace"] = str(Path(workspace).resolve())
    return config


def is_encoder(executor: Dict[str, Any]) -> bool:
    """Whether a Flow's executor entry is the MLCL encoder (the one `encoder_with` goes to)."""
    return str(executor.get("uses", "")).endswith("config.yml") or executor.get("name") == "encoder"


def encoder_checkpoint(config: Dict[str, Any]) -> Optional[Path]:
    """The checkpoint the Flow's encoder will load: its `uses_with`, else its config YAML's `with`, else the bundled
    model; None when the Flow has no encoder this process can read (a container, an external one)."""
    import yaml

    from mlcl.paths import DEFAULT_CHECKPOINT

    for executor in config.get("executors", []):
        if not is_encoder(executor):
            continue
        value = (executor.get("uses_with") or {}).get("checkpoint")
        uses = str(executor.get("uses", ""))
        if value is None and uses.endswith((".yml", ".yaml")):
            try:
                value = ((yaml.safe_load(Path(uses).read_text()) or {}).get("with") or {}).get("checkpoint")
            except OSError:
                return None
        elif value is None and not uses.startswith("MLCLEncoder"):
            return None
        # as the encoder resolves it (mlcl_executor/encoder.py), in the Flow's processes, which share this cwd
        return Path(os.path.expanduser(str(value))).resolve() if value else DEFAULT_CHECKPOINT
    return None


def build_flow(**kwargs: Any) -> "Flow":  # noqa: F821
    """A `jina.Flow` from `flow_config(**kwargs)` (not started)."""
    quiet_jina()
    from jina import Flow

    return Flow.load_config(flow_config(**kwargs))


def flow_ports(config: Dict[str, Any]) -> Dict[str, int]:
    with_ = config.get("with", {})
    return dict(zip(with_.get("protocol", ["grpc", "http"]), with_.get("port", [DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT])))


__all__ = [
    "DEFAULT_GRPC_PORT", "DEFAULT_HTTP_PORT", "EXECUTOR_HOST", "build_flow", "default_flow", "encoder_checkpoint", "flow_config",
    "flow_ports", "free_port", "is_encoder",
    "quiet_jina", "resolve_flow",
]
