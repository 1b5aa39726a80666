"""jina's gRPC keep-alive options under the names gRPC reads (jina bug; docs/serving.md, "Two jina bugs").

jina's servers are meant to accept its clients' pings every ~10 s, but its
option list names the three settings `grpc.http1.*`, which gRPC ignores: every
server then answers its clients' pings with GOAWAY "too_many_pings", and gRPC
logs an error line for each. The same settings are added under their real
`grpc.http2.*` names. jina's servers build their options through
`jina.serve.helper.get_server_side_grpc_options`, which calls this function by
its module name, so replacing it there reaches them all.

On a jina that differs this steps aside with one warning: connections still
work, they are only dropped and re-opened (and logged) more often.
"""

from __future__ import annotations

from .check import replace_once, require

NEEDS = ("jina.serve.helper:get_default_grpc_options", "jina.serve.helper:get_server_side_grpc_options")

#: The keep-alive settings jina means (its own list names them grpc.http1.*).
GRPC_PING_OPTIONS = [
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_time_between_pings_ms", 10000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5000),
]


def apply() -> None:
    if not require("the gRPC keep-alive fix", NEEDS, stop=False,
                   without="servers may answer clients' keep-alive pings with GOAWAY (too_many_pings)"):
        return
    from jina.serve import helper

    replace_once(helper, "get_default_grpc_options", lambda original: lambda: original() + GRPC_PING_OPTIONS)


__all__ = ["GRPC_PING_OPTIONS", "NEEDS", "apply"]
