"""Index scale: build time, memory and query latency of exact and HNSW search at 10k / 100k / 1M vectors.

Backends (each (backend, size) runs in its own subprocess, so RSS growth is clean):
  numpy        exact: one contiguous float32 matrix, `Q @ X.T` + argpartition (the floor for exact search)
  torch        exact: the same with torch.mm + topk
  hnswlib      raw hnswlib (cosine, M=16, ef_construction=200 like the indexer's config), ef swept
  store-memory the indexer's `MemoryStore` (docarray InMemoryExactNNIndex), persisting to a workspace
               after every upsert as the Executor does
  store-hnsw   the indexer's `HnswStore` (docarray HnswDocumentIndex: hnswlib + SQLite), ef from the config

Vectors are unit vectors of the model's width (128 for mlcl-tiny). `--data structured` (default) draws them
from a 16-dimensional latent space plus isotropic noise, like learned embeddings (low intrinsic dimension);
`--data uniform` draws them uniformly on the sphere, the worst case for any graph index. Recall@10 of HNSW is
measured against the exact top-10 of the same queries.

The docarray stores write in chunks of `--chunk` documents (the indexer upserts one request at a time); a
store that passes `--budget-s` is stopped and its build time and memory are extrapolated linearly from the
part it indexed (marked `extrapolated`; query latency is then measured on the part indexed).

    .venv/bin/python bench/index_scale.py                 # 10k, 100k, 1M (long: about an hour on 2 cores)
    .venv/bin/python bench/index_scale.py --quick         # seconds
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

from bench.common import Timer, machine_info, machine_line, markdown_table, percentiles, progress, rss_bytes, write_results  # noqa: E402

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


# ---------------------------------------------------------------- worker
def backend_needs_store(backend: str) -> bool:
    return backend.startswith("store-")


def run_worker(args: argparse.Namespace) -> Dict[str, Any]:
    """One (backend, size): returns the measurements (run in its own process)."""
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    if backend_needs_store(args.backend):
        import mlcl_executor.backends  # noqa: F401  (imported before the RSS baseline: jina + docarray weigh ~250 MB)
    n, dim, backend = args.size, args.dim, args.backend
    x = unit_vectors(n, dim, args.data, seed=args.seed)
    q = unit_vectors(args.queries, dim, args.data, seed=args.seed + 1)
    truth = exact_topk(x, q)
    gc.collect()
    rss0 = rss_bytes()
    res: Dict[str, Any] = {"backend": backend, "size": n, "dim": dim, "data": args.data, "queries": len(q),
                           "indexed": n, "extrapolated": False}
    configs: List[Dict[str, Any]] = []  # one per search setting (ef); exact backends have one
    tmp = tempfile.TemporaryDirectory(prefix="mlcl-bench-index-")
    try:
        if backend == "numpy":
            with Timer() as t:
                mat = np.ascontiguousarray(x.copy())

            def search(b: np.ndarray) -> List[List[int]]:
                s = b @ mat.T
                part = np.argpartition(-s, K - 1, axis=1)[:, :K]
                order = np.argsort(-np.take_along_axis(s, part, 1), axis=1)
                return np.take_along_axis(part, order, 1).tolist()

            res["build_s"] = t.s
            configs.append({"setting": "exact", "search": search})
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
            threads = args.build_threads or os.cpu_count() or 1
            index.set_num_threads(threads)
            res["build_threads"] = threads
            with Timer() as t:
                for start in progress(range(0, n, args.chunk_hnswlib), desc=f"hnswlib {n}", unit="chunk"):
                    index.add_items(x[start : start + args.chunk_hnswlib], np.arange(start, min(n, start + args.chunk_hnswlib)))
            res["build_s"] = t.s
            for ef in args.ef:
                def search(b: np.ndarray, ef: int = ef) -> List[List[int]]:
                    index.set_ef(ef)
                    labels, _ = index.knn_query(b, k=K, num_threads=1)
                    return labels.tolist()

                configs.append({"setting": f"ef={ef}", "ef": ef, "search": search})
        elif backend in ("store-memory", "store-hnsw"):
            from mlcl_executor.backends import create_store

            workdir = Path(tmp.name) / "ws"
            hnsw_opts = {"ef": args.store_ef, "M": args.M, "ef_construction": args.ef_construction}
            store = create_store("memory" if backend == "store-memory" else "hnsw", dim, workdir, hnsw_opts)
            t_start = time.perf_counter()
            chunk_times: List[float] = []
            indexed = 0
            bar = progress(total=n, desc=f"{backend} {n}", unit="doc")
            for start in range(0, n, args.chunk):
                rows = [{"id": str(i), "embedding": x[i], "uri": None, "tags": {}} for i in range(start, min(n, start + args.chunk))]
                t0 = time.perf_counter()
                store.upsert(rows)
                chunk_times.append(time.perf_counter() - t0)
                indexed += len(rows)
                bar.update(len(rows))
                if time.perf_counter() - t_start > args.budget_s and indexed < n:
                    break
            bar.close()
            elapsed = time.perf_counter() - t_start
            res["indexed"] = indexed
            res["chunk"] = args.chunk
            res["first_upsert_ms"] = chunk_times[0] * 1e3
            res["last_upsert_ms"] = chunk_times[-1] * 1e3
            if indexed < n:
                res["extrapolated"] = True
                res["build_s_measured"] = elapsed
                # Each upsert costs O(indexed) (docarray re-stacks / re-saves everything): total grows ~ quadratically
                # in the number of chunks. Fit t_chunk = a + b*i and sum it over all chunks.
                i = np.arange(len(chunk_times), dtype=np.float64)
                b, a = np.polyfit(i, np.asarray(chunk_times), 1) if len(i) > 2 else (0.0, float(np.mean(chunk_times)))
                total_chunks = int(np.ceil(n / args.chunk))
                j = np.arange(total_chunks, dtype=np.float64)
                res["build_s"] = float(np.sum(np.maximum(a + b * j, min(chunk_times))))
                res["build_s_linear"] = elapsed * n / indexed
            else:
                res["build_s"] = elapsed
            truth = exact_topk(x[:indexed], q)
            ef_setting = f"ef={args.store_ef}" if backend == "store-hnsw" else "exact"

            def search(b: np.ndarray) -> List[List[int]]:
                hits = store.search(b, K)
                return [[int(doc.id) for doc, _ in row] for row in hits]

            configs.append({"setting": ef_setting, "search": search, **({"ef": args.store_ef} if backend == "store-hnsw" else {})})
        elif backend == "store-milvus":
            from bench.milvus_backend import build

            store, measured, configs = build(x, [str(i) for i in range(n)], Path(tmp.name) / "ws", args.chunk, args.budget_s, progress)
            res.update(measured)
            truth = exact_topk(x[: res["indexed"]], q)
        else:
            raise ValueError(f"unknown backend {backend!r}")

        gc.collect()
        rss1 = rss_bytes()
        res["rss_growth_mb"] = (rss1 - rss0) / 2**20
        if res["extrapolated"]:
            res["rss_growth_mb_measured"] = res["rss_growth_mb"]
            res["rss_growth_mb"] = res["rss_growth_mb"] * n / max(1, res["indexed"])
        res["settings"] = []
        for cfg in configs:
            search = cfg.pop("search")
            found = search(q)
            entry = dict(cfg)
            entry["recall_at_10"] = recall_at_k(found, truth)
            entry["batch1"] = time_queries(search, q[: args.latency_queries], 1, args.query_budget_s)
            entry["batch32"] = time_queries(search, q, 32, args.query_budget_s)
            res["settings"].append(entry)
        if backend.startswith("store-"):
            store.close()
    finally:
        tmp.cleanup()
    return res


# ------------------------------------------------------------------ main
def spawn(args: argparse.Namespace, backend: str, size: int, out_file: Path) -> Dict[str, Any]:
    if args.in_process:  # quick mode: no interpreter start per run (RSS numbers are then only indicative)
        sub = argparse.Namespace(**{**vars(args), "backend": backend, "size": size})
        t0 = time.perf_counter()
        res = run_worker(sub)
        res["wall_s"] = time.perf_counter() - t0
        return res
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--backend", backend, "--size", str(size),
           "--out", str(out_file)]
    for key in ("dim", "data", "queries", "latency_queries", "seed", "chunk", "chunk_hnswlib", "budget_s",
                "query_budget_s", "M", "ef_construction", "store_ef", "build_threads", "threads"):
        value = getattr(args, key)
        if value is not None:
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    cmd += ["--ef", *map(str, args.ef)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, timeout=args.worker_timeout_s)
    if proc.returncode != 0 or not out_file.is_file():
        return {"backend": backend, "size": size, "error": f"worker exited with {proc.returncode}: {proc.stdout[-2000:]}"}
    res = json.loads(out_file.read_text())
    res["wall_s"] = time.perf_counter() - t0
    return res


def table(results: List[Dict[str, Any]]) -> str:
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["size"], r["backend"], "error", None, None, None, None, None, None, None])
            continue
        for s in r["settings"]:
            indexed = r["indexed"] if not r["extrapolated"] else f"{r['indexed']:,} (extrapolated)"
            rows.append([
                r["size"], r["backend"], s["setting"], indexed, r["build_s"], r["rss_growth_mb"],
                s["batch1"]["p50"], s["batch32"]["p50"], s["batch32"]["per_query_ms"],
                s["recall_at_10"] if s["setting"] != "exact" else None,
            ])
    return markdown_table(
        ["N", "backend", "search", "indexed", "index time s", "RSS growth MB", "batch 1 p50 ms",
         "batch 32 p50 ms", "ms/query @32", "recall@10 vs exact"], rows)


def target_check(results: List[Dict[str, Any]], size: int) -> Optional[Dict[str, Any]]:
    """At `size`: the cheapest HNSW setting with recall@10 >= 0.98 vs the fastest exact backend (batch 1)."""
    exact = [r for r in results if r.get("size") == size and "error" not in r and not r.get("extrapolated")
             and r["backend"] in ("numpy", "torch", "store-memory")]
    hnsw = [(r, s) for r in results if r.get("size") == size and "error" not in r and not r.get("extrapolated")
            for s in r["settings"] if s["setting"].startswith("ef=")]
    if not exact or not hnsw:
        return None
    best_exact = min(exact, key=lambda r: r["settings"][0]["batch1"]["p50"])
    ok = [(r, s) for r, s in hnsw if s["recall_at_10"] >= 0.98]
    if not ok:
        r, s = max(hnsw, key=lambda p: p[1]["recall_at_10"])
        return {"size": size, "met": False, "best_recall": s["recall_at_10"], "backend": r["backend"], "setting": s["setting"]}
    r, s = min(ok, key=lambda p: p[1]["batch1"]["p50"])
    speedup = best_exact["settings"][0]["batch1"]["p50"] / s["batch1"]["p50"]
    return {"size": size, "hnsw_backend": r["backend"], "hnsw_setting": s["setting"], "recall_at_10": s["recall_at_10"],
            "hnsw_batch1_p50_ms": s["batch1"]["p50"], "exact_backend": best_exact["backend"],
            "exact_batch1_p50_ms": best_exact["settings"][0]["batch1"]["p50"], "speedup": speedup,
            "met": bool(s["recall_at_10"] >= 0.98 and speedup >= 10)}


def report(payload: Dict[str, Any], path: Any) -> None:
    cfg, results, info = payload["config"], payload["results"], payload["machine"]
    print(f"\n### Index scale ({cfg['data']} unit vectors, width {cfg['dim']}, k={K})\n")
    print(table(results))
    docarray = [r for r in results if r.get("backend", "").startswith("store-") and "error" not in r]
    if docarray:
        print("\nOne upsert of the indexer's stores grows with the index (chunks of %d documents):\n" % cfg["chunk"])
        print(markdown_table(["N", "store", "indexed", "first upsert ms", "last upsert ms"],
                             [[r["size"], r["backend"], r["indexed"], r["first_upsert_ms"], r["last_upsert_ms"]] for r in docarray]))
    for t in payload.get("targets", []):
        if "speedup" in t:
            print(f"\nN={t['size']:,}: {t['hnsw_backend']} {t['hnsw_setting']} recall@10 {t['recall_at_10']:.3f}, "
                  f"batch-1 p50 {t['hnsw_batch1_p50_ms']:.3f} ms vs exact ({t['exact_backend']}) "
                  f"{t['exact_batch1_p50_ms']:.3f} ms: {t['speedup']:.1f}x faster; target met: {t['met']}")
        else:
            print(f"\nN={t['size']:,}: no HNSW setting reached recall@10 0.98 (best {t['best_recall']:.3f})")
    print(f"\nMachine: {machine_line(info)}\nJSON: {path}")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--dim", type=int, default=None, help="vector width (default: the mlcl-tiny model's)")
    p.add_argument("--data", choices=("structured", "uniform"), default="structured")
    p.add_argument("--queries", type=int, default=320, help="queries for recall and batch-32 latency")
    p.add_argument("--latency-queries", type=int, default=200, help="single queries timed (after warm-up)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk", type=int, default=1000, help="documents per upsert into the docarray stores")
    p.add_argument("--chunk-hnswlib", type=int, default=50_000)
    p.add_argument("--budget-s", type=float, default=300.0, help="per docarray store build: stop and extrapolate after")
    p.add_argument("--query-budget-s", type=float, default=60.0, help="per latency measurement")
    p.add_argument("--M", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128], help="ef values for raw hnswlib")
    p.add_argument("--store-ef", type=int, default=64, help="ef of the indexer's HNSW store (config default)")
    p.add_argument("--build-threads", type=int, default=None, help="raw hnswlib build threads (default: all cores)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--worker-timeout-s", type=float, default=3600.0)
    p.add_argument("--name", default=None, help="results file name (default: index_scale[_uniform])")
    p.add_argument("--report", default=None, help="print the tables of an earlier results JSON (no measuring)")
    p.add_argument("--quick", action="store_true", help="small sizes, seconds (smoke test); implies --in-process")
    p.add_argument("--in-process", action="store_true", help="run every (backend, size) in this process (RSS less clean)")
    p.add_argument("--out-dir", default=None)
    # internal: one (backend, size) in a subprocess
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes = [s for s in args.sizes if s <= 5000] or [2000]
        args.queries, args.latency_queries = 64, 32
        args.chunk, args.budget_s, args.query_budget_s = 500, 10.0, 5.0
        args.ef_construction, args.ef = 64, [32]
        args.in_process = True
    if args.dim is None:
        from bench.common import model_width

        args.dim = model_width()
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.report:
        payload = json.loads(Path(args.report).read_text())
        payload["targets"] = [t for t in (target_check(payload["results"], s) for s in payload["config"]["sizes"]) if t]
        report(payload, args.report)
        return payload
    if args.worker:
        res = run_worker(args)
        Path(args.out).write_text(json.dumps(res))
        return res
    info = machine_info()
    results: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mlcl-bench-") as tmp:
        jobs = [(s, b) for s in args.sizes for b in args.backends]
        for i, (size, backend) in enumerate(progress(jobs, desc="index scale", unit="run", disable=False)):
            r = spawn(args, backend, size, Path(tmp) / f"{i}.json")
            r["load_average_after"] = list(os.getloadavg())
            results.append(r)
            print(f"[index_scale] {backend} N={size}: " + (r["error"] if "error" in r else
                  f"build {r['build_s']:.2f}s, RSS +{r['rss_growth_mb']:.0f} MB, load {r['load_average_after'][0]:.2f}"),
                  file=sys.stderr, flush=True)
    targets = [t for t in (target_check(results, s) for s in args.sizes) if t]
    name = args.name or ("index_scale" + ("" if args.data == "structured" else f"_{args.data}"))
    config = {k: v for k, v in vars(args).items() if k not in ("worker", "backend", "size", "out", "out_dir", "in_process")}
    payload = {"benchmark": name, "machine": info, "config": config, "results": results, "targets": targets}
    path = write_results(name, payload, Path(args.out_dir) if args.out_dir else None, quick=args.quick)
    report(payload, path)
    return payload


if __name__ == "__main__":
    main()
