"""Does a reduced precision (fp16, bf16 autocast) give the vectors and rankings of fp32? A check to run before serving it.

    from mlcl.eval.precision_parity import precision_parity
    report = precision_parity(model, gallery_images, query_images, texts, "bf16")
    report["ok"]   # min cosine to fp32 >= 0.999 and mean top-10 overlap >= 0.95

The same model encodes a gallery (image vectors) and composed queries (reference
image + text) once in fp32 and once in `precision` (`mlcl.model.inference`); the
check compares the vectors (cosine of each to its fp32 twin) and the rankings
(each query's top-k over the gallery, fp32 vs `precision`, as a fraction of k
in common). Images are preprocessed batches (`model.preprocess` /
`images_from_pixels`); the model's own precision is restored afterwards.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, Sequence

import torch

MIN_COSINE = 0.999
MIN_TOPK_OVERLAP = 0.95


@torch.inference_mode()
def _vectors(model: Any, gallery: torch.Tensor, queries: torch.Tensor, texts: Sequence[str], batch_size: int):
    g = torch.cat([model.encode_image(gallery[s : s + batch_size]) for s in range(0, len(gallery), batch_size)])
    q = torch.cat([model.encode_query(queries[s : s + batch_size], list(texts[s : s + batch_size]))
                   for s in range(0, len(queries), batch_size)])
    return g.float().cpu(), q.float().cpu()


def precision_parity(
    model: Any,
    gallery: torch.Tensor,
    queries: torch.Tensor,
    texts: Sequence[str],
    precision: str,
    k: int = 10,
    batch_size: int = 32,
    min_cosine: float = MIN_COSINE,
    min_overlap: float = MIN_TOPK_OVERLAP,
) -> Dict[str, Any]:
    """Compare `precision` with fp32 on this gallery and these composed queries (see the module docstring).

    Returns the minimum and mean cosine of gallery and query vectors to fp32, the mean and minimum
    top-`k` overlap, the thresholds, and `ok`.
    """
    if len(queries) != len(texts):
        raise ValueError(f"{len(queries)} query images but {len(texts)} texts")
    k = min(k, len(gallery))
    before = model.inference
    try:
        model.inference = replace(before, precision="fp32")
        g32, q32 = _vectors(model, gallery, queries, texts, batch_size)
        model.inference = replace(before, precision=precision)
        g, q = _vectors(model, gallery, queries, texts, batch_size)
    finally:
        model.inference = before
    cos_g, cos_q = (g * g32).sum(-1), (q * q32).sum(-1)
    top32 = (q32 @ g32.T).topk(k, dim=-1).indices
    top = (q @ g.T).topk(k, dim=-1).indices
    overlap = torch.tensor([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(top32, top)])
    report = {
        "precision": precision, "device": str(gallery.device), "gallery": len(gallery), "queries": len(queries), "k": k,
        "gallery_cosine_min": float(cos_g.min()), "gallery_cosine_mean": float(cos_g.mean()),
        "query_cosine_min": float(cos_q.min()), "query_cosine_mean": float(cos_q.mean()),
        "topk_overlap_mean": float(overlap.mean()), "topk_overlap_min": float(overlap.min()),
        "min_cosine": min_cosine, "min_overlap": min_overlap,
    }
    report["ok"] = (min(report["gallery_cosine_min"], report["query_cosine_min"]) >= min_cosine
                    and report["topk_overlap_mean"] >= min_overlap)
    return report


__all__ = ["MIN_COSINE", "MIN_TOPK_OVERLAP", "precision_parity"]
