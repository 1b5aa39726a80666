"""Index scale: build time, memory and query latency of exact and HNSW search at 10k / 100k / 1M vectors.

Backends (each (backend, size, width) runs in its own subprocess, so RSS growth is clean):
  numpy        exact: one contiguous float32 matrix, `Q @ X.T` + argpartition + sort of the top k
               (the floor for exact search)
  torch        exact: the same with torch.mm + topk
  hnswlib      raw hnswlib (cosine, M=16, ef_construction=200 like the indexer's config), ef swept
  store-memory the indexer's exact store (`mlcl_executor/stores/memory.py`), written in chunks of
               `--chunk` documents with its write-ahead log and snapshots in a workspace, as the Executor does
  store-hnsw   the indexer's hnsw store (`mlcl_executor/stores/hnsw.py`, hnswlib), written the same way,
               with the same M, ef_construction and threads as raw hnswlib; ef swept per query

Vectors are unit vectors of width `--dims` (128: the default model, mlcl-rn-tiny; 640: a larger model). `--data structured`
(default) draws them from a 16-dimensional latent space plus isotropic noise, like learned embeddings (low
intrinsic dimension); `--data uniform` draws them uniformly on the sphere, the worst case for any graph
index. Recall@10 of HNSW is measured against the exact top-10 of the same queries.

RSS: growth of the process after building (`rss_growth_mb`), its peak while building (`rss_peak_mb`),
and `raw_mb`, the size of the raw vectors plus ids. A store that passes `--budget-s` is stopped and its
build time and memory are extrapolated linearly from the part it indexed (marked `extrapolated`). Every
row records the 1-minute load average before and after it. `--merge` adds the rows to an existing results
file (same `--name`), replacing rows of the same (backend, size, width): long runs can be done in pieces.

    .venv/bin/python bench/index_scale.py --quick         # seconds
    .venv/bin/python bench/index_scale.py --sizes 10000 100000 --dims 128 640
    nice -n 5 .venv/bin/python bench/index_scale.py --sizes 1000000 --dims 128 --backends hnswlib store-hnsw --merge
    .venv/bin/python bench/index_scale.py --sizes 100000 --backends hnswlib --data uniform
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.common import (  # noqa: E402
    RESULTS_DIR, Timer, build_time, machine_info, machine_line, markdown_table, percentiles, progress, rss_bytes,
    timed_upserts, write_results,
)

BACKENDS = ("numpy", "torch", "hnswlib", "store-memory", "store-hnsw", "store-milvus")  # store-milvus: bench/milvus_backend.py
LATENT_DIM = 16
NOISE = 0.3  # per-coordinate noise std; the latent part has unit variance per coordinate (~8% of the energy is noise)
K = 10


# ------------------------------------------------------------------ data
def unit_vectors(n: int, dim: int, kind: str, seed: int, basis_seed: int = 1234) -> np.ndarray:
    """n unit vectors of width dim (float32), deterministic in (kind, seed), built in chunks (low peak memory)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    basis = np.random.default_rng(basis_seed).standard_normal((LATENT_DIM, dim)).astype(np.float32) / np.sqrt(LATENT_DIM)
    for start in range(0, n, 65536):
        m = min(65536, n - start)
        if kind == "uniform":
            x = rng.standard_normal((m, dim), dtype=np.float32)
        elif kind == "structured":
            x = rng.standard_normal((m, LATENT_DIM), dtype=np.float32) @ basis
            x += NOISE * rng.standard_normal((m, dim), dtype=np.float32)
        else:
            raise ValueError(f"unknown data kind {kind!r}")
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start : start + m] = x
    return out


def exact_topk(x: np.ndarray, q: np.ndarray, k: int = K) -> np.ndarray:
    """Exact top-k ids by inner product (= cosine for unit vectors), chunked over the database."""
    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    for start in range(0, len(x), 262144):
        s = q @ x[start : start + 262144].T
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        best_i = np.concatenate([best_i, part + start], axis=1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def recall_at_k(found: List[List[int]], truth: np.ndarray, k: int = K) -> float:
    return float(np.mean([len(set(list(f)[:k]) & set(t[:k].tolist())) / k for f, t in zip(found, truth)]))


# --------------------------------------------------------------- queries
def time_queries(search, q: np.ndarray, batch: int, max_s: float, warmup: int = 3) -> Dict[str, Any]:
    """Latency of `search(batch_of_queries)` per call, in ms (bounded by count and by `max_s` seconds)."""
    batches = [q[i : i + batch] for i in range(0, len(q) - batch + 1, batch)] or [q[:batch]]
    for b in batches[:warmup]:
        search(b)
    times: List[float] = []
    t_end = time.perf_counter() + max_s
    for b in batches:
        t0 = time.perf_counter()
        search(b)
        times.append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() > t_end:
            break
    stats = percentiles(times)
    stats["batch"] = batch
    stats["per_query_ms"] = stats["p50"] / batch
    return stats


def time_pair(search, floor, q: np.ndarray, batch: int, max_s: float, warmup: int = 3):
    """`time_queries` of two searches, alternating call by call (the same load for both)."""
    batches = [q[i : i + batch] for i in range(0, len(q) - batch + 1, batch)] or [q[:batch]]
    for b in batches[:warmup]:
        search(b)
        floor(b)
    times: Dict[str, List[float]] = {"search": [], "floor": []}
    t_end = time.perf_counter() + max_s
    for b in batches:
        for name, fn in (("search", search), ("floor", floor)):
            t0 = time.perf_counter()
            fn(b)
            times[name].append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() > t_end:
            break
    out = []
    for name in ("search", "floor"):
        stats = percentiles(times[name])
        stats["batch"] = batch
        stats["per_query_ms"] = stats["p50"] / batch
        out.append(stats)
    return out[0], out[1]


# ---------------------------------------------------------------- worker
def backend_needs_store(backend: str) -> bool:
    return backend.startswith("store-")


def reset_peak_rss() -> None:
    """Restart the kernel's peak-RSS counter (VmHWM) of this process (Linux; ignored elsewhere)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_bytes() -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def exact_search(mat: np.ndarray, b: np.ndarray, k: int = K) -> List[List[int]]:
    """The floor: one matmul, argpartition of the scores (no negated copy), sort of the top k."""
    s = b @ mat.T
    n = s.shape[1]
    part = np.argpartition(s, n - k, axis=1)[:, n - k :]
    order = np.argsort(-np.take_along_axis(s, part, 1), axis=1)
    return np.take_along_axis(part, order, 1).tolist()


def run_worker(args: argparse.Namespace) -> Dict[str, Any]:
    """One (backend, size, width): returns the measurements (run in its own process)."""
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    if backend_needs_store(args.backend):
        import mlcl_executor.stores.hnsw  # noqa: F401  (imported before the RSS baseline)
        import mlcl_executor.stores.memory  # noqa: F401
    n, dim, backend = args.size, args.dim, args.backend
    threads = args.build_threads or os.cpu_count() or 1
    x = unit_vectors(n, dim, args.data, seed=args.seed)
    q = unit_vectors(args.queries, dim, args.data, seed=args.seed + 1)
    truth = exact_topk(x, q)
    ids = [str(i) for i in range(n)]
    gc.collect()
    rss0 = rss_bytes()
    reset_peak_rss()
    res: Dict[str, Any] = {"backend": backend, "size": n, "dim": dim, "data": args.data, "queries": len(q),
                           "indexed": n, "extrapolated": False, "load_average_before": list(os.getloadavg()),
                           "raw_mb": (x.nbytes + sum(len(i) for i in ids)) / 2**20}
    configs: List[Dict[str, Any]] = []  # one per search setting (ef); exact backends have one
    tmp = tempfile.TemporaryDirectory(prefix="mlcl-bench-index-")
    store = None
    try:
        if backend == "numpy":
            with Timer() as t:
                mat = np.ascontiguousarray(x.copy())
            res["build_s"] = t.s
            configs.append({"setting": "exact", "search": lambda b: exact_search(mat, b)})
        elif backend == "torch":
            with Timer() as t:
                mat_t = torch.from_numpy(x).clone().contiguous()

            def search(b: np.ndarray) -> List[List[int]]:
                with torch.inference_mode():
                    s = torch.from_numpy(b) @ mat_t.T
                    return torch.topk(s, K, dim=1).indices.tolist()

            res["build_s"] = t.s
            configs.append({"setting": "exact", "search": search})
        elif backend == "hnswlib":
            import hnswlib

            index = hnswlib.Index(space="cosine", dim=dim)
            index.init_index(max_elements=n, ef_construction=args.ef_construction, M=args.M)
            index.set_num_threads(threads)
            res["build_threads"] = threads
            with Timer() as t:
                for start in progress(range(0, n, args.chunk_hnswlib), desc=f"hnswlib {n}", unit="chunk"):
                    index.add_items(x[start : start + args.chunk_hnswlib], np.arange(start, min(n, start + args.chunk_hnswlib)))
            res["build_s"] = t.s
            for ef in args.ef:
                def search(b: np.ndarray, ef: int = ef) -> List[List[int]]:
                    index.set_ef(max(ef, K))
                    labels, _ = index.knn_query(b, k=K, num_threads=threads if len(b) > 1 else 1)
                    return labels.tolist()

                configs.append({"setting": f"ef={ef}", "ef": ef, "search": search})
        elif backend in ("store-memory", "store-hnsw"):
            from mlcl_executor.stores import create_store

            workdir = Path(tmp.name) / "ws"
            hnsw_opts = {"ef": args.store_ef, "M": args.M, "ef_construction": args.ef_construction, "num_threads": threads}
            store = create_store("memory" if backend == "store-memory" else "hnsw", dim, workdir, hnsw=hnsw_opts)
            if backend == "store-hnsw":
                res["build_threads"] = threads
            built, t_start = timed_upserts(store, ids, x, args.chunk, args.budget_s, f"{backend} {n}")
            res.update(built, compactions=store.compactions)
            build_time(res, time.perf_counter() - t_start, n)
            indexed = built["indexed"]
            if indexed < n:
                truth = exact_topk(x[:indexed], q)
            if backend == "store-memory":
                # the floor over the store's own matrix, timed in the same worker, alternating with the store
                res["floor_same_matrix"] = True
                configs.append({"setting": "exact", "search": lambda b: [[int(m.id) for m, _ in row] for row in store.search(b, K)]})
            else:
                for ef in args.ef:
                    def search(b: np.ndarray, ef: int = ef) -> List[List[int]]:
                        return [[int(m.id) for m, _ in row] for row in store.search(b, K, ef=ef)]

                    configs.append({"setting": f"ef={ef}", "ef": ef, "search": search})
        elif backend == "store-milvus":
            from bench.milvus_backend import build

            store, measured, configs = build(x, ids, Path(tmp.name) / "ws", args.chunk, args.budget_s)
            res.update(measured)
            truth = exact_topk(x[: res["indexed"]], q)
        else:
            raise ValueError(f"unknown backend {backend!r}")

        peak = peak_rss_bytes()
        gc.collect()
        rss1 = rss_bytes()
        res["rss_growth_mb"] = (rss1 - rss0) / 2**20
        res["rss_peak_mb"] = (peak - rss0) / 2**20 if peak else None
        res["rss_vs_raw"] = res["rss_growth_mb"] / res["raw_mb"]
        if res["extrapolated"]:
            res["rss_growth_mb_measured"] = res["rss_growth_mb"]
            res["rss_growth_mb"] = res["rss_growth_mb"] * n / max(1, res["indexed"])
        res["settings"] = []
        for cfg in configs:
            search = cfg.pop("search")
            found = search(q)
            entry = dict(cfg)
            entry["recall_at_10"] = recall_at_k(found, truth)
            if backend == "store-memory":
                # the yardstick: bare numpy over the same matrix, alternating call by call with the store
                floor = lambda b: exact_search(store.matrix[: store.n], b)  # noqa: E731
                for key, qq, size in (("batch1", q[: args.latency_queries], 1), ("batch32", q, 32)):
                    entry[key], entry[f"floor_{key}"] = time_pair(search, floor, qq, size, args.query_budget_s)
            else:
                entry["batch1"] = time_queries(search, q[: args.latency_queries], 1, args.query_budget_s)
                entry["batch32"] = time_queries(search, q, 32, args.query_budget_s)
            res["settings"].append(entry)
        res["load_average_after"] = list(os.getloadavg())
    finally:
        if store is not None:
            store.close()
        tmp.cleanup()
    return res


# ------------------------------------------------------------------ main
def spawn(args: argparse.Namespace, backend: str, size: int, dim: int, out_file: Path) -> Dict[str, Any]:
    if args.in_process:  # quick mode: no interpreter start per run (RSS numbers are then only indicative)
        sub = argparse.Namespace(**{**vars(args), "backend": backend, "size": size, "dim": dim})
        t0 = time.perf_counter()
        res = run_worker(sub)
        res["wall_s"] = time.perf_counter() - t0
        return res
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--backend", backend, "--size", str(size),
           "--dim", str(dim), "--out", str(out_file)]
    for key in ("data", "queries", "latency_queries", "seed", "chunk", "chunk_hnswlib", "budget_s",
                "query_budget_s", "M", "ef_construction", "store_ef", "build_threads", "threads"):
        value = getattr(args, key)
        if value is not None:
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    cmd += ["--ef", *map(str, args.ef)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, timeout=args.worker_timeout_s)
    except subprocess.TimeoutExpired:
        return {"backend": backend, "size": size, "dim": dim, "error": f"worker passed --worker-timeout-s {args.worker_timeout_s}"}
    if proc.returncode != 0 or not out_file.is_file():
        return {"backend": backend, "size": size, "dim": dim, "error": f"worker exited with {proc.returncode}: {proc.stdout[-2000:]}"}
    res = json.loads(out_file.read_text())
    res["wall_s"] = time.perf_counter() - t0
    return res


def _order(r: Dict[str, Any]) -> tuple:
    return (r.get("dim", 0), r.get("size", 0), BACKENDS.index(r["backend"]) if r.get("backend") in BACKENDS else 99)


def table(results: List[Dict[str, Any]]) -> str:
    rows = []
    for r in sorted(results, key=_order):
        if "error" in r:
            rows.append([r.get("dim"), r["size"], r["backend"], "error"] + [None] * 10)
            continue
        load = f"{r['load_average_before'][0]:.2f} / {r['load_average_after'][0]:.2f}" if "load_average_before" in r else None
        for s in r["settings"]:
            indexed = r["indexed"] if not r["extrapolated"] else f"{r['indexed']:,} (extrapolated)"
            rows.append([
                r.get("dim"), r["size"], r["backend"], s["setting"], indexed, r["build_s"], r["rss_growth_mb"],
                r.get("rss_peak_mb"), r.get("raw_mb"), s["batch1"]["p50"], s["batch32"]["p50"],
                (f"{s['floor_batch1']['p50']:.3g} / {s['floor_batch32']['p50']:.3g}" if "floor_batch1" in s else None),
                s["recall_at_10"] if s["setting"] != "exact" else None, load,
            ])
    return markdown_table(
        ["width", "N", "backend", "search", "indexed", "index time s", "RSS growth MB", "RSS peak MB", "raw MB",
         "batch 1 p50 ms", "batch 32 p50 ms", "numpy on the same matrix, batch 1 / 32 ms", "recall@10 vs exact",
         "load before / after"], rows)


def _ok(r: Dict[str, Any], size: int, dim: int) -> bool:
    return r.get("size") == size and r.get("dim") == dim and "error" not in r and not r.get("extrapolated")


def target_check(results: List[Dict[str, Any]], size: int, dim: Optional[int] = None) -> Optional[Dict[str, Any]]:
    """At (`size`, `dim`): the issue's targets. The exact store vs the numpy floor (within 1.5x at batch 1 and 32,
    RSS within 1.5x of raw); the hnsw store's build vs raw hnswlib (<= 1.3x); the cheapest store-hnsw setting with
    recall@10 >= 0.98 vs the exact store at batch 1 (>= 10x faster)."""
    if dim is None:
        dim = next((r.get("dim") for r in results if r.get("size") == size), None)
    by = {r["backend"]: r for r in results if _ok(r, size, dim)}
    out: Dict[str, Any] = {"size": size, "dim": dim}
    floor, mem = by.get("numpy"), by.get("store-memory")
    if mem and (floor or "floor_batch1" in mem["settings"][0]):
        m = mem["settings"][0]
        # the floor timed in the store's worker over its own matrix (same load), else the numpy row
        f = {"batch1": m["floor_batch1"], "batch32": m["floor_batch32"]} if "floor_batch1" in m else floor["settings"][0]
        out["memory_vs_numpy_batch1"] = m["batch1"]["p50"] / f["batch1"]["p50"]
        out["memory_vs_numpy_batch32"] = m["batch32"]["p50"] / f["batch32"]["p50"]
        out["memory_rss_vs_raw"] = mem["rss_vs_raw"]
        out["memory_met"] = bool(max(out["memory_vs_numpy_batch1"], out["memory_vs_numpy_batch32"], mem["rss_vs_raw"]) <= 1.5)
    raw, store = by.get("hnswlib"), by.get("store-hnsw")
    if raw and store:
        out["hnsw_build_vs_hnswlib"] = store["build_s"] / raw["build_s"]
        out["hnsw_build_met"] = bool(out["hnsw_build_vs_hnswlib"] <= 1.3)
    exact = mem or floor
    if store and exact:
        ok = [s for s in store["settings"] if s["recall_at_10"] >= 0.98]
        e = exact["settings"][0]["batch1"]["p50"]
        if ok:
            s = min(ok, key=lambda s: s["batch1"]["p50"])
            out.update(hnsw_setting=s["setting"], recall_at_10=s["recall_at_10"], hnsw_batch1_p50_ms=s["batch1"]["p50"],
                       exact_backend=exact["backend"], exact_batch1_p50_ms=e, speedup=e / s["batch1"]["p50"])
            out["hnsw_met"] = bool(out["speedup"] >= 10)
        else:
            out.update(hnsw_met=False, best_recall=max(s["recall_at_10"] for s in store["settings"]))
    return out if len(out) > 2 else None


def all_targets(results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    keys = sorted({(r.get("dim"), r.get("size")) for r in results if "error" not in r}, key=lambda k: (k[0] or 0, k[1] or 0))
    return [t for t in (target_check(results, size, dim) for dim, size in keys) if t]


def report(payload: Dict[str, Any], path: Any) -> None:
    cfg, results, info = payload["config"], payload["results"], payload["machine"]
    print(f"\n### Index scale ({cfg['data']} unit vectors, k={K})\n")
    print(table(results))
    stores = [r for r in sorted(results, key=_order) if r.get("backend", "").startswith("store-") and "error" not in r]
    if stores:
        print("\nOne upsert of the indexer's stores as the index grows (median of the first / last 10 upserts of "
              "%d documents):\n" % cfg["chunk"])
        print(markdown_table(["width", "N", "store", "indexed", "first 10 upserts ms", "last 10 upserts ms", "compactions"],
                             [[r.get("dim"), r["size"], r["backend"], r["indexed"], r.get("upsert_ms_first10"),
                               r.get("upsert_ms_last10"), r.get("compactions")] for r in stores]))
    for t in payload.get("targets", []):
        parts = [f"width {t['dim']}, N={t['size']:,}:"]
        if "memory_met" in t:
            parts.append(f"memory store / numpy floor {t['memory_vs_numpy_batch1']:.2f}x (batch 1), "
                         f"{t['memory_vs_numpy_batch32']:.2f}x (batch 32), RSS {t['memory_rss_vs_raw']:.2f}x raw "
                         f"(target <= 1.5: {t['memory_met']});")
        if "hnsw_build_met" in t:
            parts.append(f"hnsw store build / raw hnswlib {t['hnsw_build_vs_hnswlib']:.2f}x (target <= 1.3: {t['hnsw_build_met']});")
        if "speedup" in t:
            parts.append(f"store-hnsw {t['hnsw_setting']} recall@10 {t['recall_at_10']:.3f}, batch-1 p50 "
                         f"{t['hnsw_batch1_p50_ms']:.3f} ms vs {t['exact_backend']} {t['exact_batch1_p50_ms']:.3f} ms: "
                         f"{t['speedup']:.1f}x (target >= 10: {t['hnsw_met']})")
        elif "best_recall" in t:
            parts.append(f"no store-hnsw setting reached recall@10 0.98 (best {t['best_recall']:.3f})")
        print("\n" + " ".join(parts))
    print(f"\nMachine: {machine_line(info)}\nJSON: {path}")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--dims", type=int, nargs="+", default=[128, 640], help="vector widths")
    p.add_argument("--data", choices=("structured", "uniform"), default="structured")
    p.add_argument("--queries", type=int, default=320, help="queries for recall and batch-32 latency")
    p.add_argument("--latency-queries", type=int, default=200, help="single queries timed (after warm-up)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk", type=int, default=1000, help="documents per upsert into the indexer's stores")
    p.add_argument("--chunk-hnswlib", type=int, default=50_000)
    p.add_argument("--budget-s", type=float, default=1800.0, help="per store build: stop and extrapolate after")
    p.add_argument("--query-budget-s", type=float, default=30.0, help="per latency measurement")
    p.add_argument("--M", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128], help="ef values (raw hnswlib and the hnsw store)")
    p.add_argument("--store-ef", type=int, default=128, help="the hnsw store's configured ef (flows/indexer.yml)")
    p.add_argument("--build-threads", type=int, default=None, help="hnswlib threads, raw and in the store (default: all cores)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--worker-timeout-s", type=float, default=3600.0)
    p.add_argument("--name", default=None, help="results file name (default: index_scale[_uniform])")
    p.add_argument("--merge", action="store_true", help="add to the existing results file, replacing rows of the same runs")
    p.add_argument("--report", default=None, help="print the tables of an earlier results JSON (no measuring)")
    p.add_argument("--quick", action="store_true", help="small sizes, seconds (smoke test); implies --in-process")
    p.add_argument("--in-process", action="store_true", help="run every (backend, size) in this process (RSS less clean)")
    p.add_argument("--out-dir", default=None)
    # internal: one (backend, size, dim) in a subprocess
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes = [s for s in args.sizes if s <= 5000] or [2000]
        args.dims = args.dims[:1] if len(args.dims) == 1 else [32]
        args.queries, args.latency_queries = 64, 32
        args.chunk, args.budget_s, args.query_budget_s = 500, 10.0, 5.0
        args.ef_construction, args.ef = 64, [32]
        args.in_process = True
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.report:
        payload = json.loads(Path(args.report).read_text())
        payload["targets"] = all_targets(payload["results"])
        report(payload, args.report)
        return payload
    if args.worker:
        res = run_worker(args)
        Path(args.out).write_text(json.dumps(res))
        return res
    name = args.name or ("index_scale" + ("" if args.data == "structured" else f"_{args.data}"))
    out_dir = Path(args.out_dir) if args.out_dir else RESULTS_DIR
    info = machine_info()
    results: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mlcl-bench-") as tmp:
        jobs = [(d, s, b) for d in args.dims for s in args.sizes for b in args.backends]
        for i, (dim, size, backend) in enumerate(progress(jobs, desc="index scale", unit="run", disable=False)):
            r = spawn(args, backend, size, dim, Path(tmp) / f"{i}.json")
            r["command"] = "bench/index_scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
            r["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            results.append(r)
            print(f"[index_scale] {backend} N={size} width {dim}: " + (r["error"] if "error" in r else
                  f"build {r['build_s']:.2f}s, RSS +{r['rss_growth_mb']:.0f} MB, load {r['load_average_after'][0]:.2f}"),
                  file=sys.stderr, flush=True)
    previous: List[Dict[str, Any]] = []
    runs: List[Dict[str, Any]] = []
    if args.merge and (out_dir / f"{name}.json").is_file():  # read at the end: other runs may have merged meanwhile
        old = json.loads((out_dir / f"{name}.json").read_text())
        previous, runs = old["results"], old.get("runs", [])
    done = {(r["backend"], r["size"], r.get("dim")) for r in results}
    results = [r for r in previous if (r["backend"], r["size"], r.get("dim")) not in done] + results
    config = {k: v for k, v in vars(args).items() if k not in ("worker", "backend", "size", "dim", "out", "out_dir", "in_process", "merge")}
    runs = runs + [{"machine": info, "config": config}]
    payload = {"benchmark": name, "machine": info, "config": config, "runs": runs, "results": sorted(results, key=_order),
               "targets": all_targets(results)}
    path = write_results(name, payload, out_dir if args.out_dir else None, quick=args.quick)
    report(payload, path)
    return payload


if __name__ == "__main__":
    main()
