"""A sharded Flow's head logs "a pod is unreachable" as a warning, not an error.

At every start the gateway asks each head for its endpoints before the
shards behind it are up; jina's head logs the refused connection as an
error ("Error while getting responses from Pods"), so a healthy start of
`flows/flow.sharded.yml` prints error lines. Only the log level changes: a
request that fails that way still returns the error to its client, and other
gRPC errors are logged as jina logs them.

On a jina that differs this steps aside with one warning: the start of a
sharded Flow then prints jina's error lines again, nothing else changes.
"""

from __future__ import annotations

from typing import Any

from .check import replace_once, require

NEEDS = ("jina.serve.runtimes.head.request_handling:HeaderRequestHandler._handle_internalnetworkerror",
         "jina.serve.runtimes.head.request_handling:HeaderRequestHandler.__init__ sets logger")


class _ErrorsAsWarnings:
    """A logger whose `error` is `warning` (everything else passes through)."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._logger.warning(msg, *args, **kwargs)


def apply() -> None:
    if not require("the head's start-up log fix", NEEDS, stop=False,
                   without="a sharded Flow's start logs jina's 'Error while getting responses from Pods' lines"):
        return
    import grpc
    from jina.serve.runtimes.head.request_handling import HeaderRequestHandler

    def wrap(original: Any) -> Any:
        def handle(self: Any, err: Any, context: Any, response: Any) -> Any:
            if err.code() != grpc.StatusCode.UNAVAILABLE:
                return original(self, err, context, response)
            logger = self.logger
            self.logger = _ErrorsAsWarnings(logger)  # a synchronous call: no other task runs meanwhile
            try:
                return original(self, err, context, response)
            finally:
                self.logger = logger

        return handle

    replace_once(HeaderRequestHandler, "_handle_internalnetworkerror", wrap)


__all__ = ["NEEDS", "apply"]
