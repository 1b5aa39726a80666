"""Single-input baselines: score a benchmark with the image alone or the text alone.

Wraps a model so that `compose` ignores one input; the rest of the evaluation
(protocol, gallery, metrics) is unchanged. Used by `mlcl eval --query image|text`
for the README's "image only" / "text only" rows.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

QUERY_MODES = ("composed", "image", "text")


class SingleInputQueries:
    """Delegates to `model`, but composes queries from one input only."""

    def __init__(self, model: Any, mode: str):
        if mode not in ("image", "text"):
            raise ValueError(f"single-input query mode must be 'image' or 'text', got {mode!r}")
        self._model, self.mode = model, mode

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def compose(self, f_ref: torch.Tensor, f_txt: torch.Tensor) -> torch.Tensor:
        # The same vectors encode_query gives for image-only / text-only queries.
        return F.normalize(f_ref if self.mode == "image" else f_txt, dim=-1)


def with_query_mode(model: Any, mode: str) -> Any:
    if mode not in QUERY_MODES:
        raise ValueError(f"query mode must be one of {QUERY_MODES}, got {mode!r}")
    return model if mode == "composed" else SingleInputQueries(model, mode)
