"""mlcl_executor/jina_patches against the installed jina: each test fails when the jina behaviour its patch
corrects comes back (or when a patch stops checking what it relies on)."""

import asyncio
import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("jina")

import jina  # noqa: E402
from docarray import DocList  # noqa: E402
from jina.types.request.data import DataRequest  # noqa: E402

from mlcl_executor import jina_patches  # noqa: E402
from mlcl_executor.errors import RequestError  # noqa: E402
from mlcl_executor.jina_patches import check, executor, flow_start, gateway, head_log, keepalive, worker  # noqa: E402
from mlcl_executor.schemas import GalleryDoc, QueryDoc  # noqa: E402

ALL_NEEDS = [worker.NEEDS, keepalive.NEEDS, head_log.NEEDS, gateway.NEEDS, executor.NEEDS,
             flow_start.BANNER_NEEDS, flow_start.ABORT_NEEDS]


# ------------------------------------------------------------------ the checks
@pytest.mark.parametrize("needs", ALL_NEEDS)
def test_every_private_name_a_patch_uses_is_in_the_installed_jina(needs):
    assert check.mismatch(needs) is None


def test_the_abort_text_the_launcher_waits_for_is_in_jina():
    assert check.source_holds(flow_start.FLOW_MODULE, flow_start.ABORT_TEXT)
    assert not check.source_holds(flow_start.FLOW_MODULE, "no such text in jina's Flow")


def test_a_missing_name_or_another_version_is_a_mismatch(monkeypatch):
    module = "jina.serve.runtimes.worker.request_handling"
    assert "lacks" in check.mismatch((f"{module}:WorkerRequestHandler.no_such_method",))
    assert "lacks" in check.mismatch((f"{module}:WorkerRequestHandler.__init__ sets _no_such_attribute",))
    assert "lacks" in check.mismatch(("jina.no_such_module:x",))
    monkeypatch.setattr(jina, "__version__", "3.99.0")
    assert check.mismatch(worker.NEEDS) == f"jina 3.99.0 is not a verified release ({', '.join(check.VERIFIED)})"


def test_a_patch_steps_aside_with_one_warning_or_stops_with_one_line_naming_the_pin(caplog, monkeypatch):
    needs = ("jina.serve.helper:no_such_function",)
    monkeypatch.setattr(check, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="mlcl"):
        assert check.require("a fix", needs, stop=False, without="it does less") is False
        assert check.require("a fix", needs, stop=False) is False  # once per patch
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("mlcl: a fix not applied: jina ") and lines[0].endswith("; it does less")
    with pytest.raises(check.JinaMismatch) as info:
        check.require("a fix", needs, stop=True)
    assert "\n" not in str(info.value) and str(info.value).endswith(f"pin it: pip install 'jina=={check.VERIFIED[0]}'")


def test_the_worker_fix_stops_the_start_on_another_jina(monkeypatch):
    monkeypatch.setattr(jina, "__version__", "3.99.0")
    with pytest.raises(check.JinaMismatch, match="worker fix"):
        jina_patches.apply()


# ------------------------------------------------------------- worker (fixes 1-4)
@pytest.fixture(scope="module")
def worker_handler(make_worker):
    """jina's own worker around an MLCLIndexer whose /index is dynamically batched."""
    return make_worker("MLCLIndexer", dynamic_batching={"/index": {"preferred_batch_size": 32, "timeout": 10000}})


def request(endpoint, docs, cls=GalleryDoc, parameters=None):
    """A request as a worker receives it: bytes off the wire, documents not parsed yet."""
    req = DataRequest()
    req.header.exec_endpoint = endpoint
    req.document_array_cls = DocList[cls]
    req.data.docs = DocList[cls](docs)
    if parameters:
        req.parameters = parameters
    return DataRequest(request=req.proto.SerializeToString())


def test_an_empty_request_to_a_batched_endpoint_is_answered_at_once(worker_handler):
    assert "/index" in worker_handler._batchqueue_config
    # jina's batch queue never flushes a batch for no documents: without the fix this waits forever
    out = asyncio.run(asyncio.wait_for(worker_handler.handle([request("/index", [])]), timeout=10))
    assert len(out.docs) == 0 and out.status.code == out.status.SUCCESS


def test_a_client_mistake_is_an_error_status_logged_on_one_line(worker_handler, caplog):
    req = request("/search", [QueryDoc(id="q", embedding=np.ones(4, np.float32))], QueryDoc, {"limit": "ten"})
    with caplog.at_level(logging.WARNING):
        out = asyncio.run(worker_handler.handle([req]))  # jina would raise it (and log its traceback)
    assert out.status.code == out.status.ERROR and out.status.exception.name == "RequestError"
    assert out.status.exception.args[0] == "parameter 'limit' must be an integer, got 'ten'"
    lines = [r for r in caplog.records if "client error" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None and "\n" not in lines[0].getMessage()


def test_encode_passes_through_the_indexer_unparsed(worker_handler):
    assert worker.is_passthrough(worker_handler._executor, "/encode")
    assert not any(worker.is_passthrough(worker_handler._executor, e) for e in ("/index", "/search", "/count"))
    req = request("/encode", [QueryDoc(id=f"q{i}", text="x", embedding=np.full(4, i, np.float32)) for i in range(8)], QueryDoc)
    out = asyncio.run(worker_handler.handle([req]))
    assert out is req
    assert req.data._loaded_doc_array is None  # jina would have parsed the 8 documents and serialised them again
    back = DataRequest(request=out.proto.SerializeToString()).docs
    assert [d.id for d in DocList[QueryDoc].from_protobuf(back.to_protobuf())] == [f"q{i}" for i in range(8)]


# -------------------------------------------------------------------- keep-alive
def test_jinas_servers_get_the_keep_alive_options_under_their_grpc_names():
    jina_patches.apply()
    from jina.serve.helper import get_server_side_grpc_options

    options = dict(get_server_side_grpc_options(None))  # what jina's gRPC servers are built with
    for name, value in keepalive.GRPC_PING_OPTIONS:
        assert options[name] == value
    assert "grpc.http1.min_ping_interval_without_data_ms" in options  # jina's own (ignored) names are still there


# ---------------------------------------------------------------------- head log
def test_the_head_logs_an_unreachable_shard_as_a_warning_and_other_errors_as_jina_does():
    import grpc
    from jina.serve.runtimes.head.request_handling import HeaderRequestHandler

    jina_patches.apply()
    logged = []
    fake = SimpleNamespace(logger=SimpleNamespace(error=lambda m: logged.append(("error", m)),
                                                  warning=lambda m: logged.append(("warning", m))))
    context = SimpleNamespace(set_details=lambda d: None, set_code=lambda c: None)
    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        err = SimpleNamespace(code=lambda c=code: c, details=lambda: "down", dest_addr="0:1", request_id=None)
        HeaderRequestHandler._handle_internalnetworkerror(fake, err, context, SimpleNamespace())
    assert [level for level, _ in logged] == ["warning", "error"]


# ----------------------------------------------------------------------- gateway
def test_a_client_mistake_is_http_400_with_its_reason_and_a_server_fault_stays_500():
    from fastapi import FastAPI
    from starlette.exceptions import HTTPException

    app = FastAPI()
    gateway.install_client_errors(app)
    handler = app.exception_handlers[HTTPException]

    def answer(exc: Exception):
        req = DataRequest()
        req.add_exception(exc)  # jina writes the status as its HTTP gateway reads it
        response = asyncio.run(handler(None, HTTPException(status_code=500, detail=req.status.description)))
        return response.status_code, json.loads(response.body)

    assert answer(RequestError("parameter 'limit' must be between 1 and 1000, got 0")) == (
        400, {"detail": "parameter 'limit' must be between 1 and 1000, got 0"})
    assert answer(ValueError("a server fault"))[0] == 500


# --------------------------------------------------------------- flow start
def test_no_banner_silences_jinas_start_output_and_restores_it():
    from jina.orchestrate.flow import base

    printed, progress = base.print, base.Progress
    with flow_start.no_banner():
        assert base.print is not printed and base.print("hidden") is None
    assert base.print is printed and base.Progress is progress


def test_the_abort_watch_sees_jinas_abort_record():
    logger = logging.getLogger("test-flow-abort")
    watch = flow_start.AbortWatch(SimpleNamespace(logger=SimpleNamespace(logger=logger)))
    logger.error("something else")
    assert not watch.aborted.is_set()
    logger.error(f"{flow_start.ABORT_TEXT}['encoder'] can not be started.")
    assert watch.aborted.is_set() and watch.reason == "['encoder'] can not be started"
