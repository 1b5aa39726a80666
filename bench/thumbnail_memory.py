"""Indexer memory per gallery document with photo thumbnails: kept in the store's tags (before) or as workspace files (after).

Each run is a fresh process (one per backend, width and mode) that starts an `MLCLIndexer` on an empty
workspace, measures its RSS, indexes `--size` gallery documents the way the encoder sends them (a unit
vector, the feature-norm tag, and a photo thumbnail: the data URI `thumbnails.make_thumbnail` makes of a
photo-like JPEG at the default 128 px, each document's bytes its own), and measures the RSS again. The
modes:

- `tags`: the thumbnail stays in the store's tags, in memory (what every workspace index did before
  thumbnail files: the same code with the files turned off);
- `files`: the thumbnail goes to a file in the workspace (`mlcl_executor/thumbnail_files.py`, the default);
- `none`: no thumbnail at all (the floor).

The table gives the RSS growth per document and its ratio to the vectors + ids (float32 vector bytes +
the id's UTF-8 bytes); the target of issue 19 is <= 1.3x with thumbnails on. The indexer's own rate
(documents/s through `MLCLIndexer.index`, in process) is there too: files cost a write each, and an
fsync each with `--fsync` (a served index's default).

    .venv/bin/python bench/thumbnail_memory.py                        # 100k docs, widths 640 (RN50x4) and 128, memory store
    .venv/bin/python bench/thumbnail_memory.py --size 20000 --backends memory hnsw --dims 640
    .venv/bin/python bench/thumbnail_memory.py --quick               # 3000 docs, width 640: seconds
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    machine_info, machine_line, markdown_table, progress, quiet_jina, rss_bytes, write_results,
)

MODES = ("tags", "files", "none")
TARGET = 1.3
BATCH = 1000  # documents per /index request, as `mlcl index` sends groups


def base_thumbnails(n: int = 8) -> List[bytes]:
    """JPEG thumbnails (bytes) as the encoder makes them of photo-like JPEGs (bench/photos.py, 1600x1200 scenes)."""
    from PIL import Image

    from bench.photos import make_photo
    from mlcl_executor.thumbnails import make_thumbnail

    out = []
    for seed in range(n):
        image = Image.open(io.BytesIO(make_photo(seed, (1600, 1200), kind="scene")))
        uri = make_thumbnail(image, 128, 32768)
        out.append(base64.b64decode(uri.split(",", 1)[1]))
    return out


def unique_thumbnail(base: bytes, i: int) -> str:
    """`base` with a JPEG comment segment naming `i` after its SOI marker: valid, and its own bytes."""
    comment = f"gallery document {i}".encode()
    data = base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:]
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def run_worker(args: argparse.Namespace) -> Dict[str, Any]:
    import numpy as np
    from docarray import DocList

    from mlcl_executor.indexer import MLCLIndexer
    from mlcl_executor.reference import NORM_TAG
    from mlcl_executor.schemas import GalleryDoc

    quiet_jina()
    bases = base_thumbnails() if args.mode != "none" else []
    with tempfile.TemporaryDirectory(prefix="thumbmem-") as ws:
        # the store's defaults, as a user gets them (hnsw: capacity doubles from max_elements as the index grows)
        indexer = MLCLIndexer(backend=args.backend, dim=args.dim, persistence={"fsync": args.fsync},
                              metas={"name": "indexer", "workspace": ws})
        if args.mode == "tags":
            indexer.thumbnails = None  # as before thumbnail files: the thumbnail stays in the store's tags
        rng = np.random.default_rng(0)
        ids = [f"photos/{i:07d}.jpg" for i in range(args.size + BATCH)]
        thumb_bytes = 0
        before = 0
        start = time.perf_counter()
        # The first request (not counted) loads what any index loads once: modules, buffers, the store.
        for lo in progress(range(0, args.size + BATCH, BATCH), desc=f"{args.backend} {args.dim} {args.mode}"):
            if lo == BATCH:
                before, start, thumb_bytes = rss_bytes(), time.perf_counter(), 0
            hi = min(lo + BATCH, args.size + BATCH)
            vecs = rng.standard_normal((hi - lo, args.dim), dtype=np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            docs = []
            for j, i in enumerate(range(lo, hi)):
                tags: Dict[str, Any] = {NORM_TAG: float(9.0 + rng.random())}
                if bases:
                    tags["thumbnail"] = unique_thumbnail(bases[i % len(bases)], i)
                    thumb_bytes += len(tags["thumbnail"])
                docs.append(GalleryDoc(id=ids[i], embedding=vecs[j], tags=tags))
            # as a Flow delivers them: through protobuf (each document with its own copy of each tag name)
            answer = indexer.index(DocList[GalleryDoc].from_protobuf(DocList[GalleryDoc](docs).to_protobuf()))
            assert all(d.error is None for d in answer)
            del docs, answer, vecs
        index_s = time.perf_counter() - start
        after = rss_bytes()
        on_disk = sum(f.stat().st_size for f in Path(ws).rglob("*") if f.is_file() and "thumbnails" in f.parts)
        count = indexer.store.count()
        indexer.close()
    vectors_ids = args.size * args.dim * 4 + sum(len(i.encode()) for i in ids[BATCH:])
    grown = after - before
    return {
        "backend": args.backend, "dim": args.dim, "mode": args.mode, "size": args.size, "count": count - BATCH,
        "rss_before_mb": before / 2**20, "rss_after_mb": after / 2**20, "rss_per_doc_bytes": grown / args.size,
        "vectors_ids_per_doc_bytes": vectors_ids / args.size, "ratio": grown / vectors_ids,
        "thumbnail_uri_bytes_mean": thumb_bytes / args.size if bases else 0, "thumbnail_files_mb": on_disk / 2**20,
        "index_s": index_s, "docs_per_s": args.size / index_s,
    }


def spawn(args: argparse.Namespace, backend: str, dim: int, mode: str) -> Dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, __file__, "--worker", "--backend", backend, "--dim", str(dim), "--mode", mode,
           "--size", str(args.size), "--out", str(out)] + (["--fsync"] if args.fsync else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        if proc.returncode != 0:
            return {"backend": backend, "dim": dim, "mode": mode, "size": args.size,
                    "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def table(results: Sequence[Dict[str, Any]]) -> str:
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["backend"], r["dim"], r["mode"], r["size"], "error: " + r["error"], "", "", "", "", ""])
            continue
        rows.append([r["backend"], r["dim"], r["mode"], r["size"], round(r["rss_per_doc_bytes"]),
                     round(r["vectors_ids_per_doc_bytes"]), f"{r['ratio']:.2f}x", round(r["thumbnail_uri_bytes_mean"]),
                     f"{r['thumbnail_files_mb']:.0f}", round(r["docs_per_s"])])
    return markdown_table(["backend", "dim", "thumbnails", "docs", "RSS / doc (B)", "vectors + ids / doc (B)", "ratio",
                           "thumbnail / doc (B)", "files on disk (MB)", "indexer docs/s"], rows)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=100_000, help="gallery documents (default 100000)")
    p.add_argument("--dims", type=int, nargs="+", default=[640, 128], help="vector widths (640: RN50x4; 128: the bundled model)")
    p.add_argument("--backends", nargs="+", default=["memory"], choices=["memory", "hnsw"])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--name", default="thumbnail_memory", help="results file name under bench/results/")
    p.add_argument("--out-dir", default=None, help="where the JSON goes (default bench/results/)")
    p.add_argument("--quick", action="store_true", help="3000 documents of width 640 (a smoke run)")
    p.add_argument("--fsync", action="store_true", help="the store's persistence.fsync on (the default of a served "
                   "index; off here by default: RSS does not depend on it, the indexing rate does)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker:
        Path(args.out).write_text(json.dumps(run_worker(args)))
        return 0
    if args.quick:
        args.size, args.dims = 3000, [640]
    info = machine_info()
    results = [spawn(args, backend, dim, mode) for backend in args.backends for dim in args.dims for mode in args.modes]
    path = write_results(args.name, {"config": {"size": args.size, "dims": args.dims, "backends": args.backends, "fsync": args.fsync,
                                                "modes": args.modes, "target_ratio": TARGET}, "results": results,
                                     "machine": info}, out_dir=args.out_dir, quick=args.quick)
    print(table(results))
    print(f"\n{machine_line(info)}\ntarget: RSS per document <= {TARGET}x the vectors + ids with thumbnails on; -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
