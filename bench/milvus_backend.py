"""The `store-milvus` backend of bench/index_scale.py: the indexer's Milvus store on Milvus Lite.

Kept apart from index_scale.py so that its entry there stays one small branch.
The store is written in chunks of `--chunk` documents, like the other stores;
then the collection is flushed and searched once (Milvus builds the vector
index on sealed segments, and Milvus Lite reports no index progress, so the
flush and the first search are part of `build_s`, and reported apart as
`flush_first_search_s`). The index: FLAT (exact; the store's default on
Milvus Lite), or with `MLCL_BENCH_MILVUS_INDEX=IVF_FLAT` an IVF_FLAT index of
`NLIST` lists with `nprobe` swept over `NPROBE` (Milvus Lite builds FLAT,
IVF_FLAT and AUTOINDEX only; HNSW needs a Milvus server).

Milvus Lite runs in a child process: its memory is not in the worker's RSS,
so `server_rss_mb` reports that process's resident memory after the build.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from bench.common import build_time, timed_upserts

NLIST = 1024
NPROBE = (8, 32, 128)
K = 10
#: FLAT (exact, the store's default on Milvus Lite) or IVF_FLAT (Milvus Lite ignores its nprobe: see docs/performance.md)
INDEX = os.environ.get("MLCL_BENCH_MILVUS_INDEX", "FLAT").upper()


def _server_rss_mb(uri: str) -> Optional[float]:
    try:
        from milvus_lite.server_manager import server_manager_instance

        server = server_manager_instance._servers.get(str(Path(uri).absolute().resolve()))  # private: bench only
        pid = server._p.pid
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except Exception:
        return None
    return None


def build(x: np.ndarray, ids: List[str], workdir: Path, chunk: int,
          budget_s: float) -> Tuple[Any, Dict[str, Any], List[Dict[str, Any]]]:
    """Index `x` into a fresh collection; returns (store, measurements, search settings)."""
    from mlcl_executor.stores.milvus import MilvusStore

    n, dim = x.shape
    params = {"nlist": NLIST} if INDEX == "IVF_FLAT" else {}
    store = MilvusStore(dim, workdir, index_type=INDEX, index_params=params)
    res: Dict[str, Any] = {"index_type": INDEX, **params}
    built, t_start = timed_upserts(store, ids, x, chunk, budget_s, f"store-milvus {n}")
    res.update(built)
    res["upsert_s"] = time.perf_counter() - t_start
    t0 = time.perf_counter()
    store.client.flush(store.collection)  # seal the segments: Milvus builds the vector index on sealed ones
    # Milvus Lite reports no index progress (describe_index says 0 rows): the first search after the
    # flush waits for what it needs, so it is counted in the build.
    store.search(x[:1], K)
    res["flush_first_search_s"] = time.perf_counter() - t0
    res.update(compactions=0, server_rss_mb=_server_rss_mb(store.uri))
    build_time(res, time.perf_counter() - t_start, n)

    configs = []
    if INDEX != "IVF_FLAT":
        configs.append({"setting": INDEX, "search": lambda b: [[int(m.id) for m, _ in row] for row in store.search(b, K)]})
        return store, res, configs
    for nprobe in NPROBE:
        def search(b: np.ndarray, nprobe: int = nprobe) -> List[List[int]]:
            store.search_params = {"nprobe": nprobe}
            return [[int(m.id) for m, _ in row] for row in store.search(b, K)]

        configs.append({"setting": f"nprobe={nprobe}", "nprobe": nprobe, "search": search})
    return store, res, configs


__all__ = ["NLIST", "NPROBE", "build"]
