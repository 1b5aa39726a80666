"""jina's gateway gRPC server with the write token checked where requests enter it (`write_token.py`).

jina's `GRPCServer` builds its `grpc.aio.server` with the interceptors it keeps
in `grpc_tracing_server_interceptors` (set in its constructor, read in
`setup_server`); `GuardedGRPCServer` adds one that reads the `authorization`
metadata of every call. A caller with the token passes untouched. Without it,
each request's endpoint (`header.exec_endpoint`, read without parsing the
documents) decides: an open endpoint is served, any other ends the call with
UNAUTHENTICATED before the request reaches jina's streamer, so no Executor
sees it. A stream of requests (`Call`) is served up to its first refused one.

On a jina that differs the start stops with one line: without this check, a
Flow configured with a token would take writes from anyone.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import grpc

from ..write_token import AUTHORIZATION, WriteGuard
from .check import require

NEEDS = (
    "jina.serve.runtimes.servers.grpc:GRPCServer.__init__ sets grpc_tracing_server_interceptors",
    "jina.serve.runtimes.servers.grpc:GRPCServer.setup_server",
    "jina.types.request.data:DataRequest.proto_wo_data",
)
PATCH = "the gateway's write token over gRPC"


def request_endpoint(request: Any) -> Optional[str]:
    """The endpoint a jina request names (None for calls that carry none: health, info, dry run)."""
    body = getattr(request, "proto_wo_data", request)  # jina's lazy request: the header without the documents
    header = getattr(body, "header", None)
    return getattr(header, "exec_endpoint", None) if header is not None else None


class WriteGuardInterceptor(grpc.aio.ServerInterceptor):
    """Ends a call that names a guarded endpoint without the token with UNAUTHENTICATED."""

    def __init__(self, guard: WriteGuard) -> None:
        self.guard = guard

    async def intercept_service(self, continuation: Callable[..., Any], details: Any) -> Any:
        handler = await continuation(details)
        if handler is None or not self.guard.enabled:
            return handler
        metadata = {k.lower(): v for k, v in (details.invocation_metadata or ())}
        if self.guard.allows(metadata.get(AUTHORIZATION)):
            return handler
        return self._guarded(handler)

    def _refused(self, request: Any) -> Optional[str]:
        endpoint = request_endpoint(request)
        return endpoint if endpoint is not None and self.guard.needs_token(endpoint) else None

    def _guarded(self, handler: Any) -> Any:
        guard, refused = self.guard, self._refused
        kwargs = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request: Any, context: Any) -> Any:
                endpoint = refused(request)
                if endpoint is not None:
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, guard.refusal(endpoint))
                return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
        if handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: Any) -> Any:
                endpoint = refused(request)
                if endpoint is not None:
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, guard.refusal(endpoint))
                async for response in inner_us(request, context):
                    yield response

            return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
        if handler.stream_stream:
            inner_ss = handler.stream_stream

            async def stream_stream(request_iterator: Any, context: Any) -> Any:
                stopped: list = []

                async def checked() -> Any:
                    async for request in request_iterator:
                        endpoint = refused(request)
                        if endpoint is not None:
                            stopped.append(endpoint)
                            return  # this request and the rest never reach jina
                        yield request

                async for response in inner_ss(checked(), context):
                    yield response
                if stopped:
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, guard.refusal(stopped[0]))

            return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)
        return handler  # stream-unary: no jina service of the gateway takes one


def guarded_grpc_server(guard: WriteGuard, **server_kwargs: Any) -> Any:
    """jina's gateway gRPC server (what its composite gateway would build) with `WriteGuardInterceptor`."""
    require(PATCH, NEEDS, stop=True)
    from jina.serve.runtimes.gateway.grpc import GRPCGateway

    server = GRPCGateway(**server_kwargs)
    server.grpc_tracing_server_interceptors = [*(server.grpc_tracing_server_interceptors or []),
                                               WriteGuardInterceptor(guard)]
    return server


__all__ = ["NEEDS", "WriteGuardInterceptor", "guarded_grpc_server", "request_endpoint"]
