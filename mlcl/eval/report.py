"""Metrics as a plain-text table or one JSON object."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlcl.eval.evaluate import EvalResult


def metrics_json(metrics: dict[str, float], digits: int = 4, breakdown: dict | None = None) -> str:
    """One JSON object keyed "R@1", "R@10", ..., "headline" (values in percent);
    with `breakdown`, also "breakdown": {grouping: {group: {"queries": n, "R@k": %}}}."""
    out: dict = {k: round(v, digits) for k, v in metrics.items()}
    if breakdown:
        out["breakdown"] = {g: {v: {k: (round(x, digits) if isinstance(x, float) else x) for k, x in m.items()}
                                for v, m in groups.items()} for g, groups in breakdown.items()}
    return json.dumps(out)


def format_breakdown(breakdown: dict, digits: int = 1) -> list[str]:
    """Lines of a per-group recall table (error analysis)."""
    lines: list[str] = []
    for grouping, groups in breakdown.items():
        keys = [k for k in next(iter(groups.values())) if k != "queries"]
        title = {"kind": "modification kind", "objects": "objects in the reference"}.get(grouping, grouping)
        lines += ["", f"  by {title}:", f"  {'':<10} {'queries':>7}  " + "  ".join(f"{k:>6}" for k in keys)]
        for value, m in groups.items():
            lines.append(f"  {value:<10} {m['queries']:>7}  " + "  ".join(f"{m[k]:>6.{digits}f}" for k in keys))
    return lines


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
        lines.extend(format_breakdown(result.breakdown))
    if result.submission:
        lines.append("")
        lines.extend(f"  wrote {p}" for p in result.submission)
    return "\n".join(lines)
