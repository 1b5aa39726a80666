"""Talk to a running Flow: gRPC and HTTP clients, the curl a shell user would type, the files to send.

Used by `mlcl index`, `mlcl search`, `mlcl demo`, the tests and the benchmarks. Every request carries
the write token when `$MLCL_WRITE_TOKEN` is set (`auth_metadata`, `auth_headers`: what a Flow with a
token requires of writes, mlcl_executor/write_token.py); `refusal(exc)` is the Flow's one-line reason
when it refused a request (a client's mistake, a write without the token).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from mlcl.gallery_files import IMAGE_SUFFIXES, image_files  # noqa: F401  (one definition, shared with `mlcl encode`)

from .flows import DEFAULT_GRPC_PORT, quiet_jina


#: Where client commands read the write token (the same variable a Flow's gateway reads it from).
TOKEN_ENV = "MLCL_WRITE_TOKEN"


class NoFlowError(ConnectionError):
    """No Flow answers at the address a client command was given."""


def auth_metadata() -> tuple:
    """gRPC metadata with the write token from `$MLCL_WRITE_TOKEN` (empty when unset)."""
    token = (os.environ.get(TOKEN_ENV) or "").strip()
    return (("authorization", f"Bearer {token}"),) if token else ()


def auth_headers() -> Dict[str, str]:
    """HTTP headers with the write token from `$MLCL_WRITE_TOKEN` (empty when unset)."""
    return {key.title(): value for key, value in auth_metadata()}


def refusal(exc: BaseException) -> Optional[str]:
    """The Flow's reason when `exc` is a refusal (an Executor's client error, a missing token), else None."""
    import grpc
    from jina.excepts import BadServer

    if isinstance(exc, BadServer):
        header = exc.args[0] if exc.args else None
        status = getattr(header, "status", None)
        if status is not None and status.exception.args:
            return str(status.exception.args[0]).splitlines()[0]
        return str(exc).splitlines()[0] if str(exc) else "the Flow refused the request"
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            if code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                return str(exc.details()).splitlines()[0]  # type: ignore[attr-defined]
        except Exception:
            return None
    cause = exc.__cause__ or exc.__context__
    return refusal(cause) if cause is not None and cause is not exc else None


class FlowClient:
    """A jina gRPC client whose `post` sends the write token (when `$MLCL_WRITE_TOKEN` is set); jina's own
    exceptions pass through (`refusal(exc)` reads the Flow's reason from them)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def post(self, on: str, inputs: Any = None, **kwargs: Any) -> Any:
        metadata = auth_metadata()
        if metadata and "metadata" not in kwargs:
            kwargs["metadata"] = metadata
        return self._client.post(on, inputs, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def grpc_client(host: str = "localhost", port: int = DEFAULT_GRPC_PORT) -> FlowClient:
    quiet_jina()
    from jina import Client

    return FlowClient(Client(host=host, port=int(port), protocol="grpc"))


def file_digest(path: "str | os.PathLike") -> str:
    """The SHA-256 of a file's bytes (hex): `mlcl index` keeps it in `tags.sha256`, `mlcl search` finds the
    reference image by it (a server path is not shown in answers)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        url, data=json.dumps(payload).encode("utf-8"), headers={"Content-Type": "application/json", **auth_headers()},
        method="POST",
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
    "IMAGE_SUFFIXES", "TOKEN_ENV", "FlowClient", "NoFlowError", "auth_headers", "auth_metadata", "batched",
    "check_flow", "curl_command", "file_digest", "grpc_client", "http_error", "http_post", "image_files", "refusal",
]
