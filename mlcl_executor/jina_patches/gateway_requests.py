"""Where requests enter jina's gateway: each server's request handler wrapped (the gateway's batching, and
the lookup of a search by gallery id, `reference_lookup.py`).

Every request a gateway server takes, gRPC (`Call`, `process_single_data`) or
HTTP, goes through one function of its `GatewayStreamer`: the
`RequestStreamer`'s `_request_handler(request=..., return_type=...)`, which
returns the future of the Flow's answer. `wrap_request_handler(server, wrap)`
replaces it by `wrap(original)` (`request_batching.RequestBatcher`, then
`reference_lookup.ReferenceResolver` around it).

On a jina that differs this steps aside with one warning: every request then
goes through the Flow on its own, as in jina, which is correct, only slower
under many concurrent clients; and a query by gallery id without an image gets
the encoder's `error` saying its features were not looked up.
"""

from __future__ import annotations

from typing import Any, Callable

from .check import require

NEEDS = (
    "jina.serve.runtimes.gateway.request_handling:GatewayRequestHandler.__init__ sets streamer",
    "jina.serve.runtimes.gateway.streamer:GatewayStreamer.__init__ sets _streamer",
    "jina.serve.stream:RequestStreamer.__init__ sets _request_handler",
    "jina.serve.stream:RequestStreamer._stream_requests",
)


def wrap_request_handler(server: Any, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> bool:
    """Replace `server`'s request handler by `wrap(handler)`; False (after one warning) where jina differs."""
    if not require("the gateway's request batching", NEEDS, stop=False,
                   without="concurrent requests go through the Flow one by one"):
        return False
    streamer = getattr(getattr(server, "streamer", None), "_streamer", None)
    if streamer is None or not callable(getattr(streamer, "_request_handler", None)):
        return False
    streamer._request_handler = wrap(streamer._request_handler)
    return True


__all__ = ["NEEDS", "wrap_request_handler"]
