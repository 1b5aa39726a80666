"""Filtered search: latency and recall@10 of `/search` with a metadata filter that keeps 1 %, 10 % or 50 % of the gallery.

The indexer's stores (`mlcl_executor/stores/`) with 100k unit vectors of width 128 (`--size`, `--dim`; the
structured vectors of `index_scale.py`), each document tagged `bucket` = its position mod 100, so the filter
`{"bucket": {"$lt": p}}` keeps p % of it, scattered over the vector space (not clustered: the hard case for
a graph). Per backend and filter: batch-1 query latency (p50 / p99 over `--queries` queries, after warm-up),
the first query after a write (the filter's tag columns are built then, `filters.TagColumns`), and
recall@10 against the exact filtered top 10 (numpy over the kept vectors).

Backends:
  store-memory      exact: the filter's mask picks the rows the matmul reads
  store-hnsw        hnswlib graph: exact over the kept documents when at most `exact_below` (1,500) are
                    kept, else hnswlib's filter callback (the graph walk skips the others)
  store-hnsw-graph  the same graph, always through the filter callback (`exact_below: 1`): what the
                    callback alone gives at each selectivity
  store-milvus      Milvus Lite (FLAT), the filter as a boolean expression over the JSON field `tags`

    .venv/bin/python bench/filtered_search.py --quick          # 10k vectors, seconds
    .venv/bin/python bench/filtered_search.py  # 100k: build ~2 min (hnsw), queries ~1 min
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.common import machine_info, machine_line, markdown_table, percentiles, write_results  # noqa: E402
from bench.index_scale import K, unit_vectors  # noqa: E402

BACKENDS = ("store-memory", "store-hnsw", "store-hnsw-graph", "store-milvus")
KEEPS = (1, 10, 50)  # percent of the gallery a filter keeps
CHUNK = 2000  # documents per upsert (as the Executor receives them)


def make_store(backend: str, dim: int, workdir: Path) -> Any:
    from mlcl_executor.stores import create_store

    if backend == "store-memory":
        return create_store("memory", dim, workdir, persistence={"fsync": False})
    if backend in ("store-hnsw", "store-hnsw-graph"):
        options = {"num_threads": 2, "max_elements": 1024}
        if backend == "store-hnsw-graph":
            options["exact_below"] = 1
        return create_store("hnsw", dim, workdir, hnsw=options, persistence={"fsync": False})
    if backend == "store-milvus":
        return create_store("milvus", dim, workdir, milvus={"uri": str(workdir / "milvus.db"), "timeout": 120.0})
    raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")


def exact_filtered(x: np.ndarray, kept: np.ndarray, q: np.ndarray, k: int = K) -> List[List[int]]:
    """The exact top-k positions among the kept rows (the reference)."""
    rows = np.flatnonzero(kept)
    s = q @ x[rows].T
    top = np.argsort(-s, axis=1)[:, :k]
    return rows[top].tolist()


def run_backend(backend: str, x: np.ndarray, q: np.ndarray, buckets: np.ndarray, args: argparse.Namespace) -> List[Dict[str, Any]]:
    from mlcl_executor.filters import parse_filter

    rows_out = []
    with tempfile.TemporaryDirectory(prefix="mlcl-filtered-") as tmp:
        store = make_store(backend, x.shape[1], Path(tmp))
        t0 = time.perf_counter()
        for start in range(0, len(x), CHUNK):
            store.upsert([{"id": str(i), "embedding": x[i], "uri": None, "tags": {"bucket": int(buckets[i])}}
                          for i in range(start, min(start + CHUNK, len(x)))])
        build_s = time.perf_counter() - t0
        try:
            for keep in (None, *KEEPS):
                where = parse_filter({"bucket": {"$lt": keep}}) if keep is not None else None
                kept = buckets < keep if keep is not None else np.ones(len(x), bool)
                truth = exact_filtered(x, kept, q)
                if hasattr(store, "_tag_columns"):
                    store._tag_columns.invalidate()  # as after a write: the first filtered query builds the columns
                t_first = time.perf_counter()
                store.search(q[:1], K, where=where)
                first_ms = (time.perf_counter() - t_first) * 1e3
                for i in range(min(3, len(q))):  # warm-up
                    store.search(q[i : i + 1], K, where=where)
                times, found = [], []
                for i in range(len(q)):
                    t = time.perf_counter()
                    hits = store.search(q[i : i + 1], K, where=where)
                    times.append((time.perf_counter() - t) * 1e3)
                    found.append([int(m.id) for m, _ in hits[0]])
                recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))
                stats = percentiles(times, (50, 99))
                rows_out.append({
                    "backend": backend, "size": len(x), "dim": x.shape[1], "keeps_pct": keep,
                    "kept": int(kept.sum()), "p50_ms": stats["p50"], "p99_ms": stats["p99"], "first_query_ms": first_ms,
                    "recall_at_10": recall, "build_s": build_s, "queries": len(q),
                })
                print(f"  {backend:17s} keeps {str(keep) + ' %' if keep else 'all':>6}: p50 {stats['p50']:.2f} ms, "
                      f"p99 {stats['p99']:.2f} ms, first {first_ms:.1f} ms, recall@10 {recall:.3f}", flush=True)
        finally:
            store.close()
    return rows_out


def table(rows: List[Dict[str, Any]]) -> str:
    return markdown_table(
        ["backend", "filter keeps", "p50 ms", "p99 ms", "first query after a write, ms", "recall@10", "build s"],
        [[r["backend"], f"{r['keeps_pct']} % ({r['kept']:,})" if r["keeps_pct"] else f"no filter ({r['kept']:,})",
          r["p50_ms"], r["p99_ms"], r["first_query_ms"], r["recall_at_10"], r["build_s"]] for r in rows],
    )


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--data", default="structured", choices=("structured", "uniform"))
    p.add_argument("--quick", action="store_true", help="10k vectors, 50 queries")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.quick:
        args.size, args.queries = min(args.size, 10_000), min(args.queries, 50)
    info = machine_info()
    x = unit_vectors(args.size, args.dim, args.data, seed=0)
    q = unit_vectors(args.queries, args.dim, args.data, seed=1)
    buckets = np.arange(args.size) % 100
    print(f"filtered search: {args.size:,} x {args.dim} ({args.data}), {args.queries} queries; {machine_line(info)}", flush=True)
    rows: List[Dict[str, Any]] = []
    for backend in args.backends:
        if backend == "store-milvus":
            try:
                import pymilvus  # noqa: F401
            except ImportError:
                print("  store-milvus skipped: pip install 'mlcl[milvus]'")
                continue
        rows += run_backend(backend, x, q, buckets, args)
    payload = {"config": vars(args), "machine": info, "results": rows}
    path = write_results("filtered_search", payload, quick=args.quick)
    print()
    print(table(rows))
    print(f"\n{path}")
    return payload


if __name__ == "__main__":
    main()
