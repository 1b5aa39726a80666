"""Plain helpers the tests import by name (`from helpers import png_bytes`): images, a small model, a Flow.

The test session's environment (jina quiet, Flows started from a fork server) is
set by conftest.py when pytest starts, not here: importing this module changes nothing.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import io
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
BACKBONE = "mlcl-micro"  # 32 px, D = 32: fast on 2 cores

_lock = threading.Lock()
_checkpoint: Optional[Path] = None


def tiny_checkpoint() -> Path:
    """A small random MLCL checkpoint, built once per test session (process)."""
    global _checkpoint
    with _lock:
        if _checkpoint is None or not _checkpoint.is_file():
            import torch

            from mlcl.model import build_model, save_checkpoint

            torch.manual_seed(0)
            folder = Path(tempfile.mkdtemp(prefix="mlcl-serving-tests-"))
            atexit.register(shutil.rmtree, folder, True)
            _checkpoint = save_checkpoint(build_model(BACKBONE).eval(), folder / "micro.pt")
        return _checkpoint


def count_model_calls(encoder: Any) -> Dict[str, list]:
    """Wrap the encoder's model so that each call records its batch: {"image": [n, ...], "query": [(images, texts), ...]}."""
    calls: Dict[str, list] = {"image": [], "query": []}
    image_fn, query_fn = encoder.model.encode_gallery, encoder.model.encode_query

    def spy_image(images: Any) -> Any:
        calls["image"].append(images.shape[0])
        return image_fn(images)

    def spy_query(images: Any = None, texts: Any = None) -> Any:
        calls["query"].append((None if images is None else images.shape[0], None if texts is None else len(texts)))
        return query_fn(images=images, texts=texts)

    encoder.model.encode_gallery, encoder.model.encode_query = spy_image, spy_query
    return calls


def default_checkpoint_or_tiny() -> Path:
    from mlcl.paths import DEFAULT_CHECKPOINT

    return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else tiny_checkpoint()


def run_endpoint(result: Any) -> Any:
    """The answer of an Executor endpoint called directly: the encoder's endpoints are coroutines."""
    import asyncio
    import inspect

    return asyncio.run(result) if inspect.isawaitable(result) else result


def png_bytes(colour: Any = (200, 30, 30), size: tuple = (40, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def data_uri(data: bytes, mediatype: str = "image/png") -> str:
    return f"data:{mediatype};base64,{base64.b64encode(data).decode('ascii')}"


def shapes_test_split(n: int = 50):
    """A small generated shapes test split (cached under the pytest temp root)."""
    from mlcl.data.shapes import ShapesDataset, ensure_shapes

    root = Path(tempfile.gettempdir()) / "mlcl-serving-tests-shapes"
    ensure_shapes(root, split="test", n=n, workers=1)
    return ShapesDataset(root, "test")


@contextlib.contextmanager
def running_flow(
    flow_file: str | os.PathLike,
    workspace: str | os.PathLike,
    encoder_with: Optional[Dict[str, Any]] = None,
    indexer_with: Optional[Dict[str, Any]] = None,
    gateway_with: Optional[Dict[str, Any]] = None,
) -> Iterator[Dict[str, Any]]:
    """Start a Flow from a YAML (real executor processes) on free ports; yields its ports."""
    from mlcl_cli.flows import build_flow, free_port

    grpc, http = free_port(), free_port()
    flow = build_flow(
        flow_file=flow_file, grpc_port=grpc, http_port=http, workspace=workspace,
        encoder_with={"device": "cpu", "torch_threads": 1, **(encoder_with or {})}, indexer_with=indexer_with,
        gateway_with=gateway_with,
    )
    with flow:
        yield {"grpc": grpc, "http": http, "http_url": f"http://127.0.0.1:{http}", "flow": flow}


def server_error(exc: BaseException) -> str:
    """The message of an Executor's exception as a gRPC client receives it (jina's BadServer)."""
    header = exc.args[0] if exc.args else None
    status = getattr(header, "status", None)
    if status is not None and status.exception.args:
        return status.exception.args[0]
    return str(exc)


def subprocess_env() -> Dict[str, str]:
    """Environment for `python -m mlcl_cli ...` children: repo importable, Jina quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    # A fresh `mlcl serve` runs no torch before starting its Flow: Jina's default (fork) is
    # safe there and starts faster; that is also what users run.
    env.pop("JINA_MP_START_METHOD", None)
    return env


PYTHON = sys.executable


def asgi_request(app: Any, method: str, path: str, headers: Optional[Dict[str, str]] = None, body: bytes = b"",
                 query: bytes = b"") -> tuple:
    """(status, headers with lower-case names, body) of one request through an ASGI app, in process (no server)."""
    import asyncio

    messages = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        messages.append(message)

    scope = {"type": "http", "http_version": "1.1", "method": method, "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": query, "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
             "server": ("test", 80), "client": ("test", 1)}
    asyncio.run(app(scope, receive, send))
    start = messages[0]
    return (start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]},
            b"".join(m.get("body", b"") for m in messages[1:]))
