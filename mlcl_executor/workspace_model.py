"""Which model's vectors an index holds: a small JSON beside the store, and the lock of a serving indexer.

An indexer's workspace records the model id (`mlcl.model_id.checkpoint_id`) of
the vectors it holds in `mlcl-model.json`, written on the first write that
carries a model id into an empty index (the encoder tags what it encodes:
`tags["mlcl_model"]` of gallery documents, `model` of queries and vector
blocks; `vectors.py`). From then on the indexer refuses writes and searches of
another model, `mlcl serve` refuses to start an encoder of another model on it,
and `/clear` forgets the record (an empty index takes any model). A workspace
written before model ids were recorded has no record and is not checked until
it is re-indexed (`mlcl index --reindex`) or cleared. Local stores (`memory`,
`hnsw`): a `milvus` index keeps nothing in the workspace, and its record is kept
in the database by the store (`MilvusStore.record_model`).

A serving indexer holds a shared lock on `.mlcl-serving.lock` in its workspace
for as long as it runs: `mlcl index --reindex` swaps a fresh index in only
while nobody holds it (a running indexer writes its snapshot back by path).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO, Dict, Optional

MODEL_FILE = "mlcl-model.json"
LOCK_FILE = ".mlcl-serving.lock"


def recorded_model(workdir: Optional[Path]) -> Optional[str]:
    """The model id recorded in `workdir` (None: none recorded, or no workspace)."""
    if workdir is None or not (Path(workdir) / MODEL_FILE).is_file():
        return None
    try:
        return str(json.loads((Path(workdir) / MODEL_FILE).read_text())["model_id"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{Path(workdir) / MODEL_FILE} cannot be read ({exc}); delete it to stop the model check") from None


def record_model(workdir: Optional[Path], model_id: str) -> None:
    """Record `model_id` in `workdir` (written to a temporary file and renamed: never half a file)."""
    if workdir is None:
        return
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = workdir / f".{MODEL_FILE}.tmp"
    tmp.write_text(json.dumps({"model_id": model_id, "format": 1}))
    os.replace(tmp, workdir / MODEL_FILE)


def forget_model(workdir: Optional[Path]) -> None:
    if workdir is not None:
        (Path(workdir) / MODEL_FILE).unlink(missing_ok=True)


def workspace_models(workspace: Path) -> Dict[Path, str]:
    """Every indexer folder under `workspace` that records a model id -> that id (unreadable records: ValueError)."""
    if not Path(workspace).is_dir():
        return {}
    return {record.parent: recorded_model(record.parent) for record in sorted(Path(workspace).glob(f"**/{MODEL_FILE}"))}  # type: ignore[misc]


def mismatch(recorded: str, encoder: str) -> str:
    """The way out, said the same way by the indexer and by `mlcl serve`."""
    return (f"the index holds vectors of model {recorded} and the encoder's model is {encoder}: serve model {recorded} "
            "on it, or give this model a new workspace, or re-encode the gallery with `mlcl index --reindex`")


def hold_serving_lock(workdir: Path) -> IO[str]:
    """A shared lock on the workspace while an indexer serves it (released when the file closes or the process ends)."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    handle = open(Path(workdir) / LOCK_FILE, "a")
    fcntl.flock(handle, fcntl.LOCK_SH)
    return handle


def try_exclusive(workdir: Path) -> Optional[IO[str]]:
    """The workspace's lock, held exclusively, when no indexer serves it; None while one does."""
    handle = open(Path(workdir) / LOCK_FILE, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


__all__ = ["LOCK_FILE", "MODEL_FILE", "forget_model", "hold_serving_lock", "mismatch", "record_model", "recorded_model",
           "try_exclusive", "workspace_models"]
