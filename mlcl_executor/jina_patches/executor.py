"""An Executor that serves only some of its endpoints, chosen when it is built (`documents: docarray`).

A Flow checks that every endpoint of an Executor exists on the next one with the
same schema, so an encoder serving docarray's standard documents must not leave
our own endpoints showing. jina binds `uses_requests` with `_add_requests` and
keeps a `__dry_run_endpoint__` on every Executor (its health check); `serve_only`
drops every other endpoint and binds the given ones the way `uses_requests`
would (schemas from the methods' annotations).

On a jina that differs the start stops with one line: the Executor would show
endpoints the Flow then refuses, or none.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .check import require

NEEDS = ("jina.serve.executors:__dry_run_endpoint__", "jina.serve.executors:BaseExecutor._add_requests")


def serve_only(executor: Any, endpoints: Mapping[str, str], keep: Iterable[str] = ()) -> None:
    """Bind `endpoints` (endpoint -> method name) and keep the endpoints in `keep` as bound; drop the others."""
    require("serving only some endpoints (documents: docarray)", NEEDS, stop=True)
    from jina.serve.executors import __dry_run_endpoint__

    kept = {__dry_run_endpoint__, *keep}
    for endpoint in list(executor.requests):
        if endpoint not in kept:
            del executor.requests[endpoint]
    executor._add_requests({e: fn for e, fn in endpoints.items() if e not in kept})


__all__ = ["NEEDS", "serve_only"]
