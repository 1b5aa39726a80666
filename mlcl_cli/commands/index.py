"""`mlcl index`: send a folder of gallery images to a running Flow (`/index`, gRPC).

    mlcl index ~/photos                       # every image under the folder, recursively
    mlcl index a.png b.jpg --host 10.0.0.5 --port 54321

Images are read here and sent as bytes, so the server needs no access to
the files. Ids: a document's id is its path relative to the folder given,
with its extension (`mlcl index gallery/` indexes `gallery/shirts/a.png` as
`shirts/a.png`); a file named on its own gets its file name (`a.png`). Its
tags hold the absolute path (`tags.path`), which `mlcl search` uses to leave
the reference image itself out of the results. Indexing an id again replaces it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders")
    parser.add_argument("--host", default="localhost", help="Flow host (default: localhost)")
    parser.add_argument("--port", type=int, default=54321, help="gRPC port (default: 54321)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per request (default: 64)")
    parser.add_argument("--no-recursive", action="store_true", help="only the top level of folders")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def collect(paths: list[Path], recursive: bool) -> list[tuple[str, Path]]:
    """(id, file) pairs: ids relative to the folder given, unique."""
    from mlcl_executor.serving import image_files

    pairs: dict[str, Path] = {}
    for p in paths:
        base = p.resolve() if p.is_dir() else p.resolve().parent
        for f in image_files([p], recursive=recursive):
            pairs.setdefault(f.relative_to(base).as_posix(), f)
    return sorted(pairs.items())


def run(args: argparse.Namespace) -> int:
    from mlcl_executor import launcher

    launcher.quiet()
    from docarray import DocList
    from tqdm import tqdm

    from mlcl_executor.schemas import GalleryDoc, StatsDoc
    from mlcl_executor.serving import NoFlowError, batched, check_flow, grpc_client

    try:
        items = collect(args.paths, recursive=not args.no_recursive)
    except FileNotFoundError as exc:
        print(f"mlcl index: {exc}", file=sys.stderr)
        return 2
    if not items:
        print("mlcl index: no images found", file=sys.stderr)
        return 2
    try:
        check_flow(args.host, args.port)
    except NoFlowError as exc:
        print(f"mlcl index: {exc}", file=sys.stderr)
        return 1
    client = grpc_client(args.host, args.port)
    print(f"mlcl index: {len(items)} images; ids are paths relative to the folder given (e.g. {items[0][0]!r})")
    errors: list[str] = []
    try:
        with tqdm(total=len(items), unit="img", desc="indexing", disable=args.no_progress) as bar:
            for chunk in batched(items, max(1, args.batch_size)):
                docs = DocList[GalleryDoc](
                    GalleryDoc(id=doc_id, image=path.read_bytes(), tags={"path": str(path)}) for doc_id, path in chunk
                )
                answer = client.post("/index", docs, return_type=DocList[GalleryDoc])
                errors += [d.error for d in answer if d.error]
                bar.update(len(chunk))
        count = client.post("/count", DocList[GalleryDoc](), return_type=DocList[StatsDoc])[0].count
    except ConnectionError as exc:
        print(f"mlcl index: lost the Flow at {args.host}:{args.port} ({str(exc).splitlines()[0][:160]})", file=sys.stderr)
        return 1
    for error in errors:
        print(f"mlcl index: {error}", file=sys.stderr)
    print(f"indexed {len(items) - len(errors)} of {len(items)} images; the index holds {count}")
    return 1 if errors else 0
