"""A search page view's thumbnails through `mlcl serve`: one request per card (before) vs one batched request (now).

A page view with the per-level view on shows up to ~50 cards (10 fused + 3 x 10 per level, some repeated,
more with "More results"). Each card's thumbnail is the gallery image's, kept by the index in its
workspace and served by the gateway through the Flow:

- `per-id`: one `GET /ui/thumbnail?id=` per card, at most 6 at a time per page view (a browser's
  connections to one host), each one Flow round trip to the index's `/thumbnails` (what the page did);
- `batched`: one `POST /ui/thumbnails` with all the view's ids, one Flow round trip (what it does now).

The Flow is started as a user starts it (`mlcl serve`, flows/flow.yml, the bundled model) on a gallery of
`--gallery` photo-like JPEGs (bench/photos.py scenes, so the thumbnails are photo-sized JPEGs) indexed
first. `--users` page views run at once (each a user with its own 6 connections), each user loading
`--views` views after `--warmup` unmeasured ones; each view's `--ids` ids are drawn from the gallery.
Per (mode, users): a view's wall time p50/p95, views/s, the Flow requests per view (each route asks the
Flow once per HTTP request, so it is the HTTP requests per view), the bytes a view receives, and the CPU
the Flow's processes spent per view (gateway + executors, from /proc). Every view is checked: all its
ids must come back with a thumbnail.

    .venv/bin/python bench/page_thumbnails.py                    # 200 photos, 50 ids per view, 1 and 16 users
    .venv/bin/python bench/page_thumbnails.py --users 1 4 16 64
    .venv/bin/python bench/page_thumbnails.py --quick            # a smaller run, a minute
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    load_average, machine_info, machine_line, markdown_table, percentiles, quiet_jina, write_results,
)
from bench.concurrent_clients import Served, cpu_seconds, index_gallery  # noqa: E402

quiet_jina()
MODES = ("per-id", "batched")
BROWSER_CONNECTIONS = 6  # what a browser opens to one host (HTTP/1.1)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, nargs="+", default=[1, 16], help="page views at once")
    p.add_argument("--views", type=int, default=24, help="measured views per user (1 user); --views-many with more")
    p.add_argument("--views-many", type=int, default=8, help="measured views per user when several users run")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured views per user first")
    p.add_argument("--ids", type=int, default=50, help="thumbnails per page view")
    p.add_argument("--gallery", type=int, default=200, help="photo-like JPEGs indexed first")
    p.add_argument("--photo-size", type=int, nargs=2, default=[1024, 768], metavar=("W", "H"))
    p.add_argument("--flow", default="flow", help="the Flow `mlcl serve --flow` starts")
    p.add_argument("--checkpoint", default=None, help="default: the bundled model")
    p.add_argument("--quick", action="store_true", help="60 photos, 8 / 3 views per user")
    p.add_argument("--name", default="page_thumbnails")
    p.add_argument("--out-dir", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.gallery, args.views, args.views_many = 60, 8, 3
    return args


def gallery_photos(n: int, size: Tuple[int, int]) -> List[Tuple[str, bytes]]:
    from bench.photos import photo_folder

    folder = photo_folder(n, size, kinds=("scene",))
    return [(f"photo{i:05d}", path.read_bytes()) for i, path in enumerate(sorted(folder.glob("photo_*.jpg")))]


async def view_per_id(session: Any, base: str, ids: List[str]) -> Tuple[int, int, int]:
    """One GET per card (the session's connector keeps 6 in flight): (requests, thumbnails shown, bytes)."""

    async def one(doc_id: str) -> Tuple[bool, int]:
        async with session.get(f"{base}/ui/thumbnail?id={urllib.parse.quote(doc_id, safe='')}") as r:
            body = await r.read()
            return r.status == 200 and r.headers.get("Content-Type", "").startswith("image/"), len(body)

    answers = await asyncio.gather(*(one(i) for i in ids))
    return len(ids), sum(ok for ok, _ in answers), sum(n for _, n in answers)


async def view_batched(session: Any, base: str, ids: List[str]) -> Tuple[int, int, int]:
    """One POST for all the view's ids: (requests, thumbnails shown, bytes)."""
    async with session.post(f"{base}/ui/thumbnails", data=json.dumps({"ids": ids}),
                            headers={"Content-Type": "application/json"}) as r:
        body = await r.read()
        found = json.loads(body) if r.status == 200 else {}
    return 1, sum(1 for i in ids if str(found.get(i, "")).startswith("data:image/")), len(body)


async def user(mode: str, base: str, views: List[List[str]], warmup: int,
               out: List[Dict[str, Any]]) -> None:
    """One user's page views, one after the other, over its own 6 connections (kept alive, as a browser does)."""
    import aiohttp

    load = view_per_id if mode == "per-id" else view_batched
    connector = aiohttp.TCPConnector(limit=BROWSER_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:
        for k, ids in enumerate(views):
            t0 = time.perf_counter()
            try:
                requests, shown, size = await load(session, base, ids)
            except Exception:  # noqa: BLE001 - a failed view is counted, not fatal
                requests, shown, size = 0, 0, 0
            if k >= warmup:
                out.append({"wall_ms": (time.perf_counter() - t0) * 1e3, "requests": requests,
                            "complete": shown == len(ids), "bytes": size})


def flow_cpu_s(procs: Dict[str, List[Any]]) -> float:
    return sum(v for k, v in cpu_seconds(procs).items() if k != "load generator")


async def measure(mode: str, served: Served, gallery_ids: List[str], users: int, views: int, warmup: int,
                  ids: int, seed: int) -> Dict[str, Any]:
    rng = random.Random(seed)
    plans = [[rng.sample(gallery_ids, ids) for _ in range(warmup + views)] for _ in range(users)]
    procs = served.processes()
    samples: List[Dict[str, Any]] = []
    cpu0, t0 = flow_cpu_s(procs), time.perf_counter()
    await asyncio.gather(*(user(mode, served.http, plan, warmup, samples) for plan in plans))
    cpu1, wall = flow_cpu_s(procs), time.perf_counter() - t0
    done = [s for s in samples if s["complete"]]
    lat = percentiles([s["wall_ms"] for s in done], (50, 95)) if done else {}
    n_views = users * (warmup + views)  # the CPU and the wall time cover the warm-up views too
    return {"mode": mode, "users": users, "views": len(samples), "incomplete_views": len(samples) - len(done),
            "p50_ms": lat.get("p50"), "p95_ms": lat.get("p95"), "views_per_s": n_views / wall,
            "flow_requests_per_view": (sum(s["requests"] for s in samples) / len(samples)) if samples else None,
            "kb_per_view": (sum(s["bytes"] for s in samples) / len(samples) / 1024) if samples else None,
            "flow_cpu_ms_per_view": 1e3 * (cpu1 - cpu0) / n_views, "load_average": load_average()}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `finally` stops the Flow on a timeout's SIGTERM too
    info = machine_info()
    photos = gallery_photos(args.gallery, tuple(args.photo_size))
    ckpt = args.checkpoint
    results: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mlcl-bench-page-thumbnails-") as ws:
        served = Served(args.flow, ws, ckpt, [])
        try:
            index_s = index_gallery(served, photos, batch=32, media="image/jpeg")
            print(f"[page-thumbnails] {args.flow}: ready in {served.start_s:.1f} s; {len(photos)} photos indexed in "
                  f"{index_s:.1f} s", file=sys.stderr)
            gallery_ids = [doc_id for doc_id, _ in photos]
            for users in args.users:
                for mode in MODES:
                    views = args.views if users == 1 else args.views_many
                    res = asyncio.run(measure(mode, served, gallery_ids, users, views, args.warmup, args.ids, seed=users))
                    results.append(res)
                    print(f"[page-thumbnails] {mode:>7} {users:>3} users: p50 {res['p50_ms'] or float('nan'):.0f} ms, "
                          f"p95 {res['p95_ms'] or float('nan'):.0f} ms, {res['views_per_s']:.1f} views/s, "
                          f"{res['incomplete_views']} incomplete; load {res['load_average'][0]}", file=sys.stderr)
        finally:
            served.stop()
    config = {k: v for k, v in vars(args).items() if k != "out_dir"}
    payload = {"benchmark": args.name, "machine": info, "config": config, "index_s": index_s, "results": results}
    path = write_results(args.name, payload, Path(args.out_dir) if args.out_dir else None, quick=args.quick)
    rows = [[r["mode"], r["users"], r["views"], r["p50_ms"], r["p95_ms"], r["views_per_s"], r["flow_requests_per_view"],
             r["flow_cpu_ms_per_view"], r["kb_per_view"], r["incomplete_views"], r["load_average"][0]] for r in results]
    print(f"\n### A page view's {args.ids} thumbnails through `mlcl serve` ({args.gallery} photo-like JPEGs, "
          f"{args.photo_size[0]}x{args.photo_size[1]}; per-id: {BROWSER_CONNECTIONS} requests at a time per view)\n")
    print(markdown_table(["mode", "page views at once", "views", "p50 ms / view", "p95 ms / view", "views/s",
                          "Flow requests / view", "Flow CPU ms / view", "KB / view", "incomplete", "load (1 min)"], rows))
    print(f"\nMachine: {machine_line(info)}\nJSON: {path}")
    return payload


if __name__ == "__main__":
    main()
