"""End-to-end latency of one hybrid query (reference image + text -> top-10) through the Flow, gRPC and HTTP.

The Flow (flows/flow.yml: encoder -> indexer, the indexer's default `memory` backend unless `--backend hnsw`)
first indexes a gallery of `--gallery` shapes images (the test gallery, cycled with fresh ids past its 7,500
images) over gRPC; then, one query at a time (no concurrency), after `--warmup` queries per protocol:
  gRPC   jina Client.post('/search', one QueryDoc with PNG bytes + text)
  HTTP   POST /search {"data": [{"image": "data:image/png;base64,...", "text": ...}], "parameters": {"limit": 10}}
p50 / p95 / p99 over `--queries` queries per protocol (default 300).

    .venv/bin/python bench/latency.py                # 10,000-image gallery, 300 queries per protocol
    .venv/bin/python bench/latency.py --quick
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    bench_checkpoint, machine_info, machine_line, markdown_table, percentiles, progress, quiet_jina, write_results,
)

quiet_jina()


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gallery", type=int, default=10_000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--backend", choices=("memory", "hnsw"), default="memory")
    p.add_argument("--index-request-size", type=int, default=64)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--max-s", type=float, default=300.0, help="per protocol: stop the query loop after this many seconds")
    p.add_argument("--name", default=None)
    p.add_argument("--quick", action="store_true", help="500 images, 30 queries")
    p.add_argument("--out-dir", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.gallery, args.queries, args.warmup = 500, 30, 5
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    from docarray import DocList

    from mlcl.data.shapes import ShapesDataset, ensure_shapes
    from mlcl_executor.schemas import GalleryDoc, QueryDoc, StatsDoc
    from mlcl_cli.flows import build_flow, free_port
    from mlcl_cli.client import grpc_client, http_error, http_post

    args = parse_args(argv)
    info = machine_info()
    ckpt = bench_checkpoint(args.checkpoint)
    ds = ShapesDataset(ensure_shapes(split="test"), "test")
    names = ds.gallery
    png = {n: ds.image_path(n).read_bytes() for n in names}
    triplets = ds.triplets
    res: Dict[str, Any] = {"checkpoint": str(ckpt), "gallery": args.gallery, "backend": args.backend}
    grpc_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="mlcl-bench-latency-") as ws:
        flow = build_flow(grpc_port=grpc_port, http_port=http_port, workspace=ws,
                          encoder_with={"checkpoint": str(ckpt)}, indexer_with={"backend": args.backend})
        t0 = time.perf_counter()
        with flow:
            res["flow_start_s"] = time.perf_counter() - t0
            client = grpc_client("127.0.0.1", grpc_port)
            # ---- index the gallery
            t0 = time.perf_counter()
            step = args.index_request_size * 8
            for s in progress(range(0, args.gallery, step), desc="index gallery", unit="chunk"):
                docs = DocList[GalleryDoc]([GalleryDoc(id=f"g{i:06d}", image=png[names[i % len(names)]])
                                            for i in range(s, min(args.gallery, s + step))])
                out = client.post("/index", inputs=docs, request_size=args.index_request_size, return_type=DocList[GalleryDoc])
                bad = [d.error for d in out if d.error]
                if bad:
                    raise RuntimeError(f"indexing failed: {bad[:3]}")
            res["index_s"] = time.perf_counter() - t0
            res["index_images_per_s"] = args.gallery / res["index_s"]
            count = client.post("/count", inputs=DocList[GalleryDoc]([GalleryDoc(id="c")]), return_type=DocList[StatsDoc])
            http_base = f"http://127.0.0.1:{http_port}"

            def query(i: int) -> Dict[str, Any]:
                t = triplets[i % len(triplets)]
                return {"image": png[t["reference"]], "text": t["caption"]}

            def grpc_once(i: int) -> int:
                q = query(i)
                r = client.post("/search", inputs=DocList[QueryDoc]([QueryDoc(id=f"q{i}", **q)]),
                                parameters={"limit": args.limit}, return_type=DocList[QueryDoc])
                if r[0].error:
                    raise RuntimeError(r[0].error)
                return len(r[0].matches)

            def http_once(i: int) -> int:
                q = query(i)
                uri = "data:image/png;base64," + base64.b64encode(q["image"]).decode("ascii")
                ans = http_post(http_base, "/search", {"data": [{"image": uri, "text": q["text"]}],
                                                       "parameters": {"limit": args.limit}})
                err = http_error(ans)
                if err:
                    raise RuntimeError(err)
                return len(ans["data"][0]["matches"])

            for proto, fn in (("grpc", grpc_once), ("http", http_once)):
                for i in range(args.warmup):
                    fn(10_000 + i)
                lat: List[float] = []
                hits = []
                deadline = time.perf_counter() + args.max_s
                for i in progress(range(args.queries), desc=f"{proto} queries", unit="q"):
                    tq = time.perf_counter()
                    hits.append(fn(i))
                    lat.append((time.perf_counter() - tq) * 1e3)
                    if time.perf_counter() > deadline:
                        break
                res[proto] = percentiles(lat)
                res[proto]["matches_per_query"] = min(hits)
                print(f"[latency] {proto}: p50 {res[proto]['p50']:.1f} ms over {len(lat)} queries", file=sys.stderr)
            res["indexed_count"] = getattr(count[0], "count", None) if len(count) else None
    name = args.name or ("latency" + ("" if args.backend == "memory" else f"_{args.backend}"))
    config = {k: v for k, v in vars(args).items() if k != "out_dir"}
    payload = {"benchmark": name, "machine": info, "config": config, "results": res}
    path = write_results(name, payload, Path(args.out_dir) if args.out_dir else None, quick=args.quick)
    print(f"\n### Query latency, one hybrid query end to end ({args.gallery:,}-image gallery, {args.backend} index, top-{args.limit})\n")
    rows = [[proto.upper(), res[proto]["n"], res[proto]["p50"], res[proto]["p95"], res[proto]["p99"], res[proto]["mean"]]
            for proto in ("grpc", "http")]
    print(markdown_table(["protocol", "queries", "p50 ms", "p95 ms", "p99 ms", "mean ms"], rows))
    print(f"\nGallery indexed through the Flow in {res['index_s']:.1f} s ({res['index_images_per_s']:.0f} images/s).")
    print(f"\nMachine: {machine_line(info)}\nJSON: {path}")
    return payload


if __name__ == "__main__":
    main()
