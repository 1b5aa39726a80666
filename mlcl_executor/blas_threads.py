"""numpy's BLAS threads in the indexer: one for a small search, all of them for a large one.

OpenBLAS's idle threads spin between calls. With one thread per core (its
default) an indexer answering small searches (a few thousand vectors: microseconds
of work) kept a whole core busy spinning, taken from the encoder and the gateway
beside it. A large search (a million vectors) is twice as fast on two threads.
So each search sets the thread count for its own size: products of fewer than
`min_work` multiply-adds run on one thread, larger ones on up to `threads`.
Setting the count is a function call into OpenBLAS (about a microsecond).
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Union


class BlasThreads:
    """`for_work(n)` before a matrix product of n multiply-adds (`threads`: "auto", a number, or None to leave)."""

    def __init__(self, threads: Union[str, int, None] = "auto", min_work: int = 20_000_000) -> None:
        if threads not in ("auto", None) and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"blas_threads must be 'auto', a number >= 1 or null, got {threads!r}")
        if int(min_work) < 0:
            raise ValueError(f"blas_min_work must be >= 0, got {min_work!r}")
        self.min_work = int(min_work)
        self._libs: List[Any] = []
        self.max = 1
        if threads is None:
            return
        from threadpoolctl import ThreadpoolController

        self._libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        self.max = len(os.sched_getaffinity(0)) if threads == "auto" else int(threads)  # the cores this process may use
        self._current: Optional[int] = None
        self._set(1)

    def _set(self, n: int) -> None:
        if n != self._current:
            for lib in self._libs:
                lib.set_num_threads(n)
            self._current = n

    def for_work(self, multiply_adds: int) -> None:
        """Set the thread count for a product of `multiply_adds` (the last count stays until the next call)."""
        if self._libs:
            self._set(self.max if multiply_adds >= self.min_work else 1)


__all__ = ["BlasThreads"]
