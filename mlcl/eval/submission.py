"""CIRR test-server submission files (rc2).

Two JSON objects, keyed by pairid:
  recall:        {"version": "rc2", "metric": "recall", "<pairid>": [top-50 names]}
  recall_subset: {"version": "rc2", "metric": "recall_subset", "<pairid>": [top-3 names]}
The reference image is never listed; subset lists rank only the img_set
members other than the reference.  Written compactly: the server accepts at
most 5 MB per file and 4,148 x 50 names come close to it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Mapping, Sequence

VERSION = "rc2"
RECALL_K = 50
SUBSET_K = 3
MAX_BYTES = 5 * 1024 * 1024

log = logging.getLogger(__name__)


def submission_object(metric: str, lists: Mapping[int | str, Sequence[str]]) -> dict:
    if metric not in ("recall", "recall_subset"):
        raise ValueError(f"metric must be 'recall' or 'recall_subset', got {metric!r}")
    obj: dict = {"version": VERSION, "metric": metric}
    obj.update({str(pairid): list(names) for pairid, names in lists.items()})
    return obj


def write_cirr_submission(
    out_dir: str | Path,
    recall_lists: Mapping[int | str, Sequence[str]],
    subset_lists: Mapping[int | str, Sequence[str]],
    name: str = "mlcl",
) -> tuple[Path, Path]:
    """Write recall_submission_{name}.json and recall_subset_submission_{name}.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric, lists, k in (("recall", recall_lists, RECALL_K), ("recall_subset", subset_lists, SUBSET_K)):
        bad = [p for p, names in lists.items() if len(names) > k]
        if bad:
            raise ValueError(f"{metric}: lists longer than {k} for pairids {bad[:5]}")
        path = out_dir / f"{metric}_submission_{name}.json"
        path.write_text(json.dumps(submission_object(metric, lists), separators=(",", ":")), encoding="utf-8")
        if path.stat().st_size > MAX_BYTES:
            log.warning("%s is %d bytes, over the CIRR server's 5 MB limit", path, path.stat().st_size)
        paths.append(path)
    return paths[0], paths[1]
