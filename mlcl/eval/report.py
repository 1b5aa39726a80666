"""Metrics as a plain-text table or one JSON object."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlcl.eval.evaluate import EvalResult


def metrics_json(metrics: dict[str, float], digits: int = 4) -> str:
    """One JSON object keyed "R@1", "R@10", ..., "headline" (values in percent)."""
    return json.dumps({k: round(v, digits) for k, v in metrics.items()})


def format_table(result: "EvalResult", digits: int = 2) -> str:
    from mlcl.eval.protocols import PROTOCOLS

    spec = PROTOCOLS[result.dataset]
    lines = [f"{result.dataset} / {result.split}"]
    for t in result.tasks:
        excl = "reference excluded" if t["exclude_reference"] else "reference kept"
        lines.append(f"  {t['name']}: {t['queries']} queries, gallery {t['gallery']} images, {excl}")
    if not result.metrics:
        lines.append("  no targets in this split: no metrics")
    else:
        width = max(len(k) for k in result.metrics)
        lines.append("")
        lines.append(f"  {'metric':<{width}}  value (%)")
        for key, value in result.metrics.items():
            lines.append(f"  {key:<{width}}  {value:>{6 + digits}.{digits}f}")
        lines.append(f"  headline = {spec.headline}")
    if result.submission:
        lines.append("")
        lines.extend(f"  wrote {p}" for p in result.submission)
    return "\n".join(lines)
