"""`mlcl index`: send a folder of gallery images to a running Flow (`/index`, gRPC).

    mlcl index ~/photos                       # every image under the folder, recursively
    mlcl index a.png b.jpg --host 10.0.0.5 --port 54321
    mlcl index --vectors gallery.npy --ids gallery.txt   # vectors computed elsewhere, no model work

Images are read here and sent as bytes, so the server needs no access to
the files. Ids: a document's id is its path relative to the folder given,
with its extension (`mlcl index gallery/` indexes `gallery/shirts/a.png` as
`shirts/a.png`); a file named on its own gets its file name (`a.png`). Its
tags hold the absolute path (`tags.path`: stored, not shown in answers unless
the indexer has `expose_paths`) and the SHA-256 of the file (`tags.sha256`),
by which `mlcl search` leaves the reference image itself out of the results.
Indexing an id again replaces it. With `$MLCL_WRITE_TOKEN` set, requests carry
the write token (a Flow that has one refuses writes without it).

`--vectors FILE.npy --ids FILE.txt` sends precomputed gallery vectors (an
(n, dim) float matrix and n ids, one per line; see
`mlcl_executor/vectors.py`) to `/index_vectors`, in blocks of `--batch-size`.
They must come from the server's model: each block is tagged with the model
id of `--checkpoint` (default: the bundled model) or `--model-id`, and the
encoder refuses vectors of another model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="image files or folders")
    parser.add_argument("--vectors", type=Path, metavar="FILE.npy", help="precomputed gallery vectors (n, dim)")
    parser.add_argument("--ids", type=Path, metavar="FILE.txt", help="with --vectors: n ids, one per line")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="with --vectors: the checkpoint that computed them (default: the bundled model)")
    parser.add_argument("--model-id", default=None, help="with --vectors: the model id instead of --checkpoint")
    parser.add_argument("--host", default="localhost", help="Flow host (default: localhost)")
    parser.add_argument("--port", type=int, default=54321, help="gRPC port (default: 54321)")
    parser.add_argument("--batch-size", type=int, default=None, help="images (default 64) or vectors (default 4096) per request")
    parser.add_argument("--no-recursive", action="store_true", help="only the top level of folders")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def collect(paths: list[Path], recursive: bool) -> list[tuple[str, Path]]:
    """(id, file) pairs: ids relative to the folder given, unique."""
    from mlcl_cli.client import image_files

    pairs: dict[str, Path] = {}
    for p in paths:
        base = p.resolve() if p.is_dir() else p.resolve().parent
        for f in image_files([p], recursive=recursive):
            pairs.setdefault(f.relative_to(base).as_posix(), f)
    return sorted(pairs.items())


def run(args: argparse.Namespace) -> int:
    from mlcl_cli import launcher

    launcher.quiet()
    if args.vectors is not None or args.ids is not None:
        return run_vectors(args)
    if not args.paths:
        print("mlcl index: give image files or folders, or --vectors FILE.npy --ids FILE.txt", file=sys.stderr)
        return 2
    from docarray import DocList
    from tqdm import tqdm

    from mlcl_executor.schemas import GalleryDoc, StatsDoc
    from mlcl_cli.client import batched, file_digest, refusal

    try:
        items = collect(args.paths, recursive=not args.no_recursive)
    except FileNotFoundError as exc:
        print(f"mlcl index: {exc}", file=sys.stderr)
        return 2
    if not items:
        print("mlcl index: no images found", file=sys.stderr)
        return 2
    client = _connect(args)
    if client is None:
        return 1
    print(f"mlcl index: {len(items)} images; ids are paths relative to the folder given (e.g. {items[0][0]!r})")
    errors: list[str] = []
    try:
        with tqdm(total=len(items), unit="img", desc="indexing", disable=args.no_progress) as bar:
            for chunk in batched(items, max(1, args.batch_size or 64)):
                docs = DocList[GalleryDoc](
                    GalleryDoc(id=doc_id, image=path.read_bytes(), tags={"path": str(path), "sha256": file_digest(path)})
                    for doc_id, path in chunk
                )
                answer = client.post("/index", docs, return_type=DocList[GalleryDoc])
                errors += [d.error for d in answer if d.error]
                bar.update(len(chunk))
        count = client.post("/count", DocList[GalleryDoc](), return_type=DocList[StatsDoc])[0].count
    except Exception as exc:
        if refusal(exc) is None and not isinstance(exc, ConnectionError):
            raise
        print(f"mlcl index: {refused_or_lost(exc, args)}", file=sys.stderr)
        return 1
    for error in errors:
        print(f"mlcl index: {error}", file=sys.stderr)
    print(f"indexed {len(items) - len(errors)} of {len(items)} images; the index holds {count}")
    return 1 if errors else 0


def refused_or_lost(exc: BaseException, args: argparse.Namespace) -> str:
    """One line: the Flow's reason for refusing (e.g. no write token), or that the connection was lost."""
    from mlcl_cli.client import refusal

    reason = refusal(exc)
    if reason is not None:
        return f"the Flow refused the request: {reason}"
    return f"lost the Flow at {args.host}:{args.port} ({str(exc).splitlines()[0][:160]})"


def _connect(args: argparse.Namespace):  # noqa: ANN202 - a jina Client, or None
    """A gRPC client of the Flow at --host/--port; None (after one line on stderr) when none answers."""
    from mlcl_cli.client import NoFlowError, check_flow, grpc_client

    try:
        check_flow(args.host, args.port)
    except NoFlowError as exc:
        print(f"mlcl index: {exc}", file=sys.stderr)
        return None
    return grpc_client(args.host, args.port)


def run_vectors(args: argparse.Namespace) -> int:
    """`--vectors FILE.npy --ids FILE.txt`: precomputed gallery vectors, tagged with the model id."""
    import time

    import numpy as np
    from docarray import DocList
    from tqdm import tqdm

    from mlcl.paths import DEFAULT_CHECKPOINT
    from mlcl_cli.client import refusal
    from mlcl_executor.schemas import GalleryDoc, StatsDoc, VectorsDoc
    from mlcl_executor.vectors import checkpoint_id, load_vector_files

    if args.vectors is None or args.ids is None or args.paths:
        print("mlcl index: --vectors and --ids go together, without image paths", file=sys.stderr)
        return 2
    try:
        matrix, ids = load_vector_files(args.vectors, args.ids)
        model_id = args.model_id or checkpoint_id(args.checkpoint or DEFAULT_CHECKPOINT)
    except (OSError, ValueError) as exc:
        print(f"mlcl index: {exc}", file=sys.stderr)
        return 2
    client = _connect(args)
    if client is None:
        return 1
    size = max(1, args.batch_size or 4096)
    errors: list[str] = []
    sent = stored = 0
    start = time.perf_counter()
    try:
        with tqdm(total=len(ids), unit="vec", desc="indexing vectors", disable=args.no_progress) as bar:
            for lo in range(0, len(ids), size):
                # one document per block: ids + a matrix (per-vector documents cost ~0.1 ms each to (de)serialise)
                block = VectorsDoc(ids=ids[lo : lo + size], embeddings=np.asarray(matrix[lo : lo + size], dtype=np.float32),
                                   model=model_id)
                answer = client.post("/index_vectors", DocList[VectorsDoc]([block]), return_type=DocList[VectorsDoc])
                errors += [d.error for d in answer if d.error]
                stored += sum(d.count for d in answer)
                sent += len(block.ids)
                bar.update(len(block.ids))
                if errors:
                    break  # e.g. the wrong model: no point in sending the rest
        elapsed = time.perf_counter() - start
        count = client.post("/count", DocList[GalleryDoc](), return_type=DocList[StatsDoc])[0].count
    except Exception as exc:
        if refusal(exc) is None and not isinstance(exc, ConnectionError):
            raise
        print(f"mlcl index: {refused_or_lost(exc, args)}", file=sys.stderr)
        return 1
    for error in errors[:20]:
        print(f"mlcl index: {error}", file=sys.stderr)
    if len(errors) > 20:
        print(f"mlcl index: ... and {len(errors) - 20} more errors", file=sys.stderr)
    print(f"indexed {stored} of {len(ids)} vectors in {elapsed:.1f} s ({sent / max(elapsed, 1e-9):,.0f} vectors/s); "
          f"the index holds {count}")
    return 1 if errors else 0
