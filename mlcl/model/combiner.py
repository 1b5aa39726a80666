"""The multi-level combiner of MLCL: three fusions of reference-image and text features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiLevelCombiner(nn.Module):
    """Fuses f_ref and f_txt at three levels (see shared/design/MLCL.md).

    low  (sum):    f_s = normalize(f_ref + f_txt)
    mid  (cat):    f_c = normalize(Linear(H,D)(ReLU(comb)))
    high (hybrid): f_h = normalize(Linear(H,D)(comb) + lam*f_txt + (1-lam)*f_ref)
    with tp/ip projections of width P, raw = [tp, ip], comb = Dropout(ReLU(Linear(2P,H)(raw))).
    """

    def __init__(self, embed_dim: int, proj_dim: int | None = None, hidden_dim: int | None = None, dropout: float = 0.5):
        super().__init__()
        proj_dim = proj_dim or 4 * embed_dim  # the authors' widths: P = 4D, H = 8D
        hidden_dim = hidden_dim or 8 * embed_dim
        self.embed_dim, self.proj_dim, self.hidden_dim = embed_dim, proj_dim, hidden_dim
        self.text_projection = nn.Linear(embed_dim, proj_dim)
        self.image_projection = nn.Linear(embed_dim, proj_dim)
        self.combiner_layer = nn.Linear(2 * proj_dim, hidden_dim)
        self.dynamic_scalar = nn.Sequential(
            nn.Linear(2 * proj_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, 1), nn.Sigmoid()
        )
        self.hybrid_output = nn.Linear(hidden_dim, embed_dim)  # high level
        self.cat_output = nn.Linear(hidden_dim, embed_dim)  # mid level: a separate layer
        self.dropout = nn.Dropout(dropout)

    def forward(self, f_ref: torch.Tensor, f_txt: torch.Tensor, levels: tuple[str, ...] = ("sum", "cat", "hybrid")) -> dict[str, torch.Tensor]:
        """Returns a dict with `sum`, `cat`, `hybrid` (unit vectors; only the levels asked for),
        `raw` (the concatenated projections, SSCL's first view) and `lam`."""
        out: dict[str, torch.Tensor] = {}
        if "sum" in levels:
            out["sum"] = F.normalize(f_ref + f_txt, dim=-1)
        if not {"cat", "hybrid"} & set(levels):
            return out
        tp = self.dropout(F.relu(self.text_projection(f_txt)))
        ip = self.dropout(F.relu(self.image_projection(f_ref)))
        raw = torch.cat([tp, ip], dim=-1)
        comb = self.dropout(F.relu(self.combiner_layer(raw)))
        out["raw"] = raw
        if "cat" in levels:
            out["cat"] = F.normalize(self.cat_output(F.relu(comb)), dim=-1)
        if "hybrid" in levels:
            lam = self.dynamic_scalar(raw)
            out["lam"] = lam
            out["hybrid"] = F.normalize(self.hybrid_output(comb) + lam * f_txt + (1 - lam) * f_ref, dim=-1)
        return out
