"""Talk to a running Flow: gRPC and HTTP clients, the curl a shell user would type, the files to send.

Used by `mlcl index`, `mlcl search`, `mlcl demo`, the tests and the benchmarks.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from mlcl.gallery_files import IMAGE_SUFFIXES, image_files  # noqa: F401  (one definition, shared with `mlcl encode`)

from .flows import DEFAULT_GRPC_PORT, quiet_jina


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


def curl_command(base_url: str, endpoint: str, payload: Dict[str, Any], body_file: Optional[str] = None) -> str:
    """A curl command that sends `payload` to the HTTP gateway.

    With `body_file` the command reads the body from that file (`-d @FILE`): the way to
    send a request whose image is a data URI of many kilobytes.
    """
    url = f"{base_url.rstrip('/')}/{endpoint.lstrip('/')}"
    body = f"@{body_file}" if body_file else "'" + json.dumps(payload).replace("'", "'\\''") + "'"
    return f"curl -s -X POST {url} -H 'Content-Type: application/json' -d {body}"


def batched(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = [
    "IMAGE_SUFFIXES", "NoFlowError", "batched", "check_flow", "curl_command", "grpc_client", "http_error", "http_post",
    "image_files",
]
