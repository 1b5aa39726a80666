"""Which processes of a Flow may import torch: only the encoder's.

docarray imports torch whenever it is installed, so every process of a Flow (the
orchestrating one, the gateway, the indexer) would hold torch's memory (~700 MB
each with the CUDA build) without ever running the model. `keep_model_out()` makes
`import torch` fail in the calling process and the processes it forks; the encoder
opts back in with `model_process()` before it loads the model. Both are needed in the
Flow's own processes, so they live here rather than with the launcher (`mlcl_cli`).
"""

from __future__ import annotations

import sys


def keep_model_out() -> None:
    """Make `import torch` fail here and in the processes forked from here. Call before jina or docarray is imported."""
    if "torch" not in sys.modules:
        sys.modules["torch"] = None  # type: ignore[assignment]


def model_process() -> None:
    """Undo `keep_model_out()` in a process that runs the model (idempotent, harmless otherwise)."""
    if "torch" in sys.modules and sys.modules["torch"] is None:
        del sys.modules["torch"]


__all__ = ["keep_model_out", "model_process"]
