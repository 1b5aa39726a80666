"""The test session: jina's environment, set when pytest starts, and the fixtures several test files share.

Plain helpers (images, the small random model, a running Flow) are in helpers.py,
imported by name. Tests that start a Flow, a subprocess, a browser or a wheel
build are marked `slow`; `make test-fast` (`pytest -m "not slow"`) runs the rest.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

_SESSION_ENV = {
    "JINA_OPTOUT_TELEMETRY": "1",
    "JINA_HIDE_SURVEY": "1",
    "JINA_LOG_LEVEL": "WARNING",  # keep pytest output readable
    # Flows started from the test process must not fork it: this process runs torch (building the test
    # model, in-process encoder tests), and a forked child that uses torch's OpenMP pool after that can
    # hang at start-up. A fork server is a clean process (it never runs torch) that forks the Executors;
    # preloading the heavy imports there keeps Flow start-up fast. jina reads it when first imported.
    "JINA_MP_START_METHOD": "forkserver",
}
_saved: Dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Before any test module is imported (and with it jina): the session's environment."""
    for key, value in _SESSION_ENV.items():
        _saved[key] = os.environ.get(key)
        os.environ.setdefault(key, value)
    if os.environ["JINA_MP_START_METHOD"] == "forkserver":
        import multiprocessing

        multiprocessing.set_forkserver_preload(["mlcl_executor.jina_register"])


def pytest_unconfigure(config: pytest.Config) -> None:
    for key, value in _saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def make_encoder() -> Iterator[Callable[..., Any]]:
    """`make_encoder(**with_)`: an MLCLEncoder on the small random model (CPU), closed after the module's tests."""
    from helpers import tiny_checkpoint
    from mlcl_executor.encoder import MLCLEncoder

    made: List[Any] = []

    def make(**options: Any) -> Any:
        encoder = MLCLEncoder(checkpoint=str(tiny_checkpoint()), device="cpu", **options)
        made.append(encoder)
        return encoder

    yield make
    for encoder in made:
        encoder.close()


@pytest.fixture(scope="module")
def counting_encoder(make_encoder: Callable[..., Any]) -> Any:
    """An encoder (batch_size 4) whose model calls are recorded in `encoder.calls` (see `count_model_calls`)."""
    from helpers import count_model_calls

    encoder = make_encoder(batch_size=4)
    encoder.calls = count_model_calls(encoder)
    return encoder


@pytest.fixture(scope="module")
def make_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """`make_worker(uses, uses_with=None, dynamic_batching=None)`: jina's own worker request handler (what a
    Flow's Executor process runs requests through, the patches of jina_patches/ applied) around an Executor."""
    from jina.logging.logger import JinaLogger
    from jina.parsers import set_pod_parser
    from jina.serve.runtimes.worker.request_handling import WorkerRequestHandler

    import mlcl_executor.jina_register  # noqa: F401  (registers the Executors, applies the patches)

    made: List[Any] = []

    def make(uses: str, uses_with: Optional[Dict[str, Any]] = None, dynamic_batching: Optional[Dict[str, Any]] = None) -> Any:
        args = ["--uses", uses, "--workspace", str(tmp_path_factory.mktemp("worker"))]
        if uses_with:
            args += ["--uses-with", json.dumps(uses_with)]
        if dynamic_batching:
            args += ["--uses-dynamic-batching", json.dumps(dynamic_batching)]
        handler = WorkerRequestHandler(set_pod_parser().parse_args(args), JinaLogger(f"test-{uses}"), deployment_name=uses)
        made.append(handler)
        return handler

    yield make
    for handler in made:
        asyncio.run(handler.close())
