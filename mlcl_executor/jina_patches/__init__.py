"""Everything of mlcl that touches jina's private API, and the one place that applies it.

jina is no longer maintained: each module here says which jina release it was
verified on (`check.VERIFIED`), names every private attribute it uses, and checks
them when it is applied or used (`check.require`); on a mismatch it either steps
aside with one warning line or stops the start with one line that says what to
pin, as each module explains.

- `worker.py`: jina's worker answers empty requests at once, logs a client's
  mistake without a traceback, passes `@passthrough` endpoints on unparsed and
  hands `@raw_documents` endpoints the request's protobuf;
- `keepalive.py`: jina's gRPC keep-alive options under the names gRPC reads;
- `head_log.py`: a sharded Flow's head logs an unreachable shard as a warning;
- `gateway.py`: our HTTP server inside jina's composite gateway, client mistakes as HTTP 400;
- `executor.py`: an Executor that serves only some of its endpoints (`documents: docarray`);
- `flow_start.py`: a terminal's Flow start without jina's banner, its abort seen at once.
- `gateway_requests.py`: each gateway server's request handler wrapped (the gateway's request batching);
- `grpc_guard.py`: the gateway's gRPC server checks the write token where calls enter it.

`apply()` installs the first three (process-wide) once; it is called where the
Executors and the gateway are registered (`jina_register.py`) and by `mlcl
serve`/`mlcl demo` before a Flow's processes are forked. The others are used
where they are needed. docs/serving.md ("Two jina bugs") reports the two bugs
upstream's way.
"""

from __future__ import annotations

from . import head_log, keepalive, worker
from .check import VERIFIED, JinaMismatch
from .worker import passthrough, raw_documents


def apply() -> None:
    """Install the process-wide fixes (idempotent). Raises `JinaMismatch` (one line) where one cannot step aside."""
    worker.apply()
    keepalive.apply()
    head_log.apply()


__all__ = ["JinaMismatch", "VERIFIED", "apply", "passthrough", "raw_documents"]
