"""A Flow's start for a person at a terminal: without jina's console output, and its abort seen at once.

- jina's Flow prints a "Waiting ..." progress bar (a blank line where stdout is
  no terminal) and "Flow is ready to serve!" panels (rich's `print`) while it
  starts. `no_banner()` silences those two names in jina's Flow module only. Not
  a redirect of sys.stdout: the Flow's processes are forked meanwhile and would
  inherit it, and with it lose every line they log.
- When an Executor cannot start, jina logs "Flow is aborted due to ..." and then
  waits on a gateway that retries forever. `AbortWatch` is a logging handler on
  the Flow's own logger (jina's loggers do not propagate) that sees that record,
  so the launcher can stop everything at once.

Both step aside on a jina that differs, with one warning: the start then shows
jina's banner, or a failed start waits for jina's own abort (Ctrl-C or SIGTERM
still end it at once).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Iterator

from .check import require, source_holds

FLOW_MODULE = "jina.orchestrate.flow.base"
ABORT_TEXT = "Flow is aborted due to "
BANNER_NEEDS = (f"{FLOW_MODULE}:print", f"{FLOW_MODULE}:Progress")
ABORT_NEEDS = (f"{FLOW_MODULE}:Flow.__init__ sets logger", "jina.logging.logger:JinaLogger.__init__ sets logger")


@contextlib.contextmanager
def no_banner() -> Iterator[None]:
    """Inside: jina's Flow prints no start-up panels and shows no progress bar."""
    if not require("hiding jina's start-up banner", BANNER_NEEDS, stop=False, without="its panels are shown"):
        yield
        return
    from jina.orchestrate.flow import base

    saved = {name: getattr(base, name) for name in ("print", "Progress")}
    progress = saved["Progress"]
    base.print = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    base.Progress = lambda *args, **kwargs: progress(*args, **{**kwargs, "disable": True})  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(base, name, value)


class AbortWatch(logging.Handler):
    """Sees jina's 'Flow is aborted' record on a Flow's logger: `aborted` is set, `reason` says why."""

    def __init__(self, flow: Any) -> None:
        super().__init__(level=logging.ERROR)
        self.aborted = threading.Event()
        self.reason = ""
        if require("seeing a failed start at once", ABORT_NEEDS, stop=False,
                   without="a failed start waits for jina's own abort") and source_holds(FLOW_MODULE, ABORT_TEXT):
            flow.logger.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if ABORT_TEXT in message:
            self.reason = message.split(ABORT_TEXT, 1)[1].rstrip(".")
            self.aborted.set()


__all__ = ["ABORT_TEXT", "AbortWatch", "no_banner"]
