"""`mlcl index --reindex`: re-encode the gallery a workspace holds with another model, then swap it in.

    mlcl index --reindex --workspace ws --checkpoint new.pt

What it does, shard by shard of the workspace (every folder with an `mlcl-index.json`, `memory` or `hnsw`):

1. reads the stored documents (id, uri, tags) from a copy of the shard's files, so a Flow that serves the
   workspace meanwhile is not disturbed and keeps answering searches from the old index;
2. re-encodes each document's image, read from where `mlcl index` found it (`tags.path`, or a `uri` that
   is a local file), with the new model, into a vector folder beside the workspace (`mlcl.bulk_encode`,
   a progress bar; a run that stopped resumes there);
3. builds a fresh index of the same backend beside the workspace, with the old uris and tags (thumbnails
   included) and the new vectors with their feature norms (a search by gallery id keeps working), and records
   the new model id in it (`workspace_model.py`);
4. swaps it in: once no indexer serves the workspace (a running Flow holds its lock,
   `workspace_model.hold_serving_lock`; the command waits for it to stop, and says so), and only if the
   index did not change since step 1, each shard's folder is replaced by the fresh one; entries of the old
   folder that the fresh index did not write (the lock, anything else kept beside the store) are moved
   into it. Until that moment the old index is whole.

A document whose image cannot be read (indexed from vectors, from bytes without a path, a file since
moved) cannot be re-encoded: the command stops before the swap and names them, unless `--drop-missing`
leaves them out. The work folder beside the workspace (`.<name>.reindex`) is removed after the swap.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

WRITE_ROWS = 4096  # rows per upsert into the fresh index


@dataclass
class Shard:
    """One indexer folder of the workspace, and what it holds."""

    folder: Path
    backend: str
    dim: int
    documents: List[Any] = field(default_factory=list)  # stores.Match (id, uri, tags)


@dataclass
class ReindexResult:
    model_id: str
    old_model: Optional[str]
    documents: int
    encoded: int
    dropped: List[Tuple[str, str]]  # (id, why)
    seconds: float  # encoding and building, without the wait for a Flow to stop
    swapped: bool


def work_folder(workspace: Path) -> Path:
    return workspace.parent / f".{workspace.name}.reindex"


def find_shards(workspace: Path) -> List[Shard]:
    """The indexer folders of `workspace` (their `mlcl-index.json`), or ValueError saying why there is nothing to do."""
    from mlcl_executor.indexer import META_FILE

    if not workspace.is_dir():
        raise ValueError(f"workspace {workspace} does not exist (give the --workspace that `mlcl serve` used)")
    shards = []
    for meta_path in sorted(workspace.glob(f"**/{META_FILE}")):
        meta = json.loads(meta_path.read_text())
        shards.append(Shard(meta_path.parent, str(meta["backend"]), int(meta["dim"])))
    if not shards:
        raise ValueError(f"workspace {workspace} holds no memory or hnsw index (a milvus collection is re-indexed by "
                         "indexing the images again into a new collection)")
    return shards


def read_documents(shard: Shard, scratch: Path) -> List[Any]:
    """The stored documents of a shard, read from a copy of its files (the original is not opened)."""
    from mlcl_executor.stores import create_store

    copy = Path(tempfile.mkdtemp(prefix="read-", dir=scratch))
    try:
        for entry in shard.folder.iterdir():
            if entry.is_file():
                shutil.copy2(entry, copy / entry.name)
            elif entry.is_dir():
                shutil.copytree(entry, copy / entry.name)
        store = create_store(shard.backend, shard.dim, copy, {"fsync": False})
        try:
            return store.documents()
        finally:
            store.close()
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def image_file(match: Any) -> Optional[Path]:
    """Where a stored document's image can be read again: `tags.path` (set by `mlcl index`), or a local `uri`."""
    from mlcl_executor.image_source import is_server_path

    for value in ((match.tags or {}).get("path"), match.uri if match.uri and is_server_path(match.uri) else None):
        if isinstance(value, str) and value and Path(value).is_file():
            return Path(value)
    return None


def build_index(shard: Shard, target: Path, vectors: Dict[str, Any], dim: int, model_id: str,
                norms: Optional[Dict[str, float]] = None) -> None:
    """A fresh index of the shard's backend in `target`: the old uris and tags, the new vectors, their feature norms
    (`norms`, by id: what a search by gallery id needs), the new model id."""
    import numpy as np

    from mlcl_executor.indexer import META_FILE
    from mlcl_executor.reference import NORM_TAG, norm_tags
    from mlcl_executor.stores import create_store
    from mlcl_executor.workspace_model import record_model

    target.mkdir(parents=True)
    (target / META_FILE).write_text(json.dumps({"backend": shard.backend, "dim": dim, "format": 1}))
    store = create_store(shard.backend, dim, target)
    try:
        # The old model's feature norm would fuse the new vector wrongly in a search by gallery id: the new
        # model's replaces it (`mlcl encode` writes it beside the vector).
        norms = norms or {}
        rows = [{"id": m.id, "embedding": np.asarray(vectors[m.id], dtype=np.float32), "uri": m.uri,
                 "tags": {**{k: v for k, v in (m.tags or {}).items() if k != NORM_TAG}, **norm_tags(norms.get(m.id))}}
                for m in shard.documents if m.id in vectors]
        for start in range(0, len(rows), WRITE_ROWS):
            store.upsert(rows[start : start + WRITE_ROWS])
    finally:
        store.close()
    record_model(target, model_id)


def swap(shards: List[Shard], fresh: Path, workspace: Path, old: Path) -> None:
    """Each shard's folder becomes the fresh one; entries the fresh index does not have (the lock) stay."""
    for shard in shards:
        new = fresh / shard.folder.relative_to(workspace)
        kept = old / shard.folder.relative_to(workspace)
        kept.parent.mkdir(parents=True, exist_ok=True)
        shard.folder.rename(kept)
        new.rename(shard.folder)
        for entry in kept.iterdir():
            if not (shard.folder / entry.name).exists():
                entry.rename(shard.folder / entry.name)


def wait_for_serving(shards: List[Shard], say: Callable[[str], None], poll: float = 1.0) -> List[Any]:
    """The exclusive locks of every shard, once no indexer serves any of them (waits, saying so once)."""
    from mlcl_executor.workspace_model import try_exclusive

    said = False
    while True:
        held = [try_exclusive(s.folder) for s in shards]
        if all(h is not None for h in held):
            return held
        for h in held:
            if h is not None:
                h.close()
        if not said:
            say("the new index is ready; a Flow serves the workspace and keeps answering from the old index: stop it "
                "to swap the new one in (waiting; Ctrl-C here leaves the old index as it is)")
            said = True
        time.sleep(poll)


def reindex(workspace: Path, checkpoint: Optional[Path], options: Any, drop_missing: bool = False,
            progress: Optional[Callable[[int], None]] = None, on_total: Optional[Callable[[int], None]] = None,
            say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> ReindexResult:
    """Re-encode the gallery of `workspace` with `checkpoint` and swap it in (see the module docstring).

    `options`: `mlcl.bulk_encode.EncodeOptions` (its checkpoint is replaced by `checkpoint`). ValueError names
    what stops it (no index, documents that cannot be re-encoded without `drop_missing`).
    """
    import dataclasses

    from mlcl.bulk_encode import encode_items
    from mlcl.model_id import checkpoint_id
    from mlcl.paths import DEFAULT_CHECKPOINT
    from mlcl.vector_files import VectorDir
    from mlcl_executor.workspace_model import recorded_model

    workspace = Path(workspace).resolve()
    checkpoint = Path(checkpoint).expanduser().resolve() if checkpoint else DEFAULT_CHECKPOINT
    model_id = checkpoint_id(checkpoint)
    shards = find_shards(workspace)
    old_models = {recorded_model(s.folder) for s in shards} - {None}
    work = work_folder(workspace)
    work.mkdir(exist_ok=True)
    for shard in shards:
        shard.documents = read_documents(shard, work)
    items, dropped = [], []
    for match in (m for s in shards for m in s.documents):
        path = image_file(match)
        if path is None:
            dropped.append((match.id, "no image file to read (indexed as a vector or from bytes, or the file moved)"))
        else:
            items.append((match.id, path))
    if dropped and not drop_missing:
        shown = ", ".join(repr(i) for i, _ in dropped[:3]) + (f" and {len(dropped) - 3} more" if len(dropped) > 3 else "")
        raise ValueError(f"{len(dropped)} of {len(items) + len(dropped)} documents cannot be re-encoded ({shown}: "
                         f"{dropped[0][1]}); --drop-missing leaves them out of the new index")
    if on_total is not None:
        on_total(len(items))
    start = time.perf_counter()
    result = encode_items(items, work / f"vectors-{model_id}", dataclasses.replace(options, checkpoint=checkpoint), progress)
    if result.failed and not drop_missing:
        raise ValueError(f"{len(result.failed)} images could not be read ({result.failed[0][0]!r}: {result.failed[0][1]}); "
                         "--drop-missing leaves them out of the new index")
    dropped += result.failed
    folder = VectorDir.open(result.out)
    vectors: Dict[str, Any] = {}
    norms: Dict[str, float] = {}
    for part in folder.parts():
        vectors.update(zip(part.ids, part.matrix))
        if part.norms is not None:
            norms.update(zip(part.ids, part.norms.tolist()))
    fresh = work / "fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    for shard in shards:
        build_index(shard, fresh / shard.folder.relative_to(workspace), vectors, folder.dim, model_id, norms)
    seconds = time.perf_counter() - start
    locks = wait_for_serving(shards, say)
    try:
        for shard in shards:  # a write to a running Flow since step 1 would be lost by the swap
            if sorted(read_documents(shard, work)) != sorted(shard.documents):
                raise ValueError(f"the index in {shard.folder} changed while it was re-indexed; run `mlcl index "
                                 "--reindex` again (the vectors encoded so far are kept)")
        swap(shards, fresh, workspace, work / "old")
    finally:
        for lock in locks:
            lock.close()
    shutil.rmtree(work, ignore_errors=True)
    return ReindexResult(model_id, ", ".join(sorted(old_models)) or None, sum(len(s.documents) for s in shards),
                         len(vectors), dropped, seconds, True)


__all__ = ["ReindexResult", "find_shards", "reindex"]
