"""In-batch contrastive losses of MLCL (the target of row i is column i)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_ce(queries: torch.Tensor, keys: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Cross-entropy over the B x B similarity matrix scale * queries @ keys^T, one direction."""
    logits = scale * queries @ keys.t()
    labels = torch.arange(queries.shape[0], device=queries.device)
    return F.cross_entropy(logits, labels)


def level_weights(levels: tuple[str, ...], mode: str, w: torch.Tensor, swap: bool = False) -> dict[str, torch.Tensor]:
    """Weights of each fusion level.

    "learned": hybrid 2*sigmoid(w), cat 2-2*sigmoid(w), sum 1 (mCCL). `swap`
    exchanges the hybrid and cat weights, as the authors' released inference code does.
    "equal": every level 1.
    """
    one = torch.ones((), dtype=w.dtype, device=w.device)
    weights = {level: one for level in levels}
    if mode == "learned":
        a, b = 2 * torch.sigmoid(w), 2 - 2 * torch.sigmoid(w)
        if swap:
            a, b = b, a
        weights["hybrid"], weights["cat"] = a, b
    return weights
