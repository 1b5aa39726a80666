"""Re-index a gallery with another model: `mlcl index --reindex` on an N-image shapes gallery.

Builds a workspace that holds `--n` images of the shapes test split (their paths, as `mlcl index` stores
them) with vectors of an "old" model (random, 16 wide: what the re-index reads of them is the paths and
tags), then times `mlcl_cli.reindex.reindex` with `--checkpoint` (default: the bundled model) on the CPU:
reading the stored documents, re-encoding every image from its file (DataLoader workers, as `mlcl
encode`), building the fresh index and swapping it in. No Flow runs, so the swap does not wait.

    .venv/bin/python bench/reindex.py --n 6000
    .venv/bin/python bench/reindex.py --n 6000     # (a timing others must not disturb)

Needs the shapes test split: `mlcl data shapes --splits test` (7,500 images at the default sizes).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.common import bench_checkpoint, load_average, machine_info, machine_line, markdown_table, quiet_jina, write_results  # noqa: E402


def old_workspace(folder: Path, images: List[Path], backend: str) -> Path:
    """A workspace whose index holds `images` (path tags) with vectors of another model."""
    from docarray import DocList

    from mlcl_executor.indexer import MLCLIndexer
    from mlcl_executor.schemas import GalleryDoc
    from mlcl_executor.vectors import MODEL_TAG

    indexer = MLCLIndexer(backend=backend, metas={"name": "indexer", "workspace": str(folder)},
                          runtime_args={"shard_id": 0, "shards": 1, "name": "indexer"})
    rng = np.random.default_rng(0)
    for start in range(0, len(images), 1000):
        chunk = images[start : start + 1000]
        vectors = rng.standard_normal((len(chunk), 16), dtype=np.float32)
        indexer.index(DocList[GalleryDoc]([GalleryDoc(id=p.name, embedding=v, tags={"path": str(p), MODEL_TAG: "old-model-000000"})
                                           for p, v in zip(chunk, vectors)]))
    indexer.close()
    return folder


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=6000, help="gallery images (default: 6000)")
    p.add_argument("--images", type=Path, default=None,
                   help="a folder of images (default: the shapes test split of `mlcl data shapes`)")
    p.add_argument("--checkpoint", default=None, help="the new model (default: the bundled model)")
    p.add_argument("--backend", default="memory", choices=("memory", "hnsw"))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", default="auto", help="decode processes (default: auto)")
    p.add_argument("--quick", action="store_true", help="300 images, results in <name>.quick.json")
    p.add_argument("--name", default="reindex")
    p.add_argument("--out-dir", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.n = min(args.n, 300)
    quiet_jina()
    from mlcl_cli.launcher import quiet

    quiet()  # our lines only (the indexer's start-up log is jina's)
    from mlcl.bulk_encode import EncodeOptions
    from mlcl.data.shapes.generate import default_root
    from mlcl_cli.reindex import reindex

    folder = args.images or default_root() / "images" / "test"
    images = sorted(folder.glob("*.png"))[: args.n] if folder.is_dir() else []
    if len(images) < args.n:
        sys.exit(f"bench/reindex.py: {folder} holds {len(images)} images, {args.n} asked for "
                 "(generate them with: mlcl data shapes --splits test)")
    ckpt = bench_checkpoint(args.checkpoint)
    info = machine_info()
    scratch = Path(tempfile.mkdtemp(prefix="mlcl-bench-reindex-"))
    try:
        ws = old_workspace(scratch / "ws", images, args.backend)
        load_before = load_average()
        start = time.perf_counter()
        result = reindex(ws, ckpt, EncodeOptions(device="cpu", batch_size=args.batch_size, workers=args.workers),
                         say=lambda line: print(line, file=sys.stderr))
        total = time.perf_counter() - start
        load_after = load_average()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    row = {"images": args.n, "backend": args.backend, "checkpoint": ckpt.name, "model_id": result.model_id,
           "encoded": result.encoded, "encode_and_build_s": round(result.seconds, 2), "total_s": round(total, 2),
           "images_per_s": round(result.encoded / total, 1), "load_before": load_before, "load_after": load_after}
    print(markdown_table(["images", "backend", "model", "total s", "encode+build s", "images/s", "load avg before -> after"],
                         [[row["images"], row["backend"], row["checkpoint"], row["total_s"], row["encode_and_build_s"],
                           row["images_per_s"], f"{load_before[0] if load_before else '?'} -> {load_after[0] if load_after else '?'}"]]))
    print(machine_line(info))
    path = write_results(args.name, {"command": " ".join(["bench/reindex.py", *(argv or sys.argv[1:])]), "results": [row],
                                     "machine": info}, out_dir=args.out_dir, quick=args.quick)
    print(f"wrote {path}")
    return row


if __name__ == "__main__":
    main()
