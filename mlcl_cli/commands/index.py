"""`mlcl index`: send a folder of gallery images to a running Flow (`/index`, gRPC).

    mlcl index ~/photos                       # every image under the folder, recursively
    mlcl index a.png b.jpg --host 10.0.0.5 --port 54321
    mlcl index --vectors gallery.vectors/    # a vector folder from `mlcl encode FOLDER --out DIR`, no model work
    mlcl index --vectors gallery.npy --ids gallery.txt   # vectors computed elsewhere, no model work
    mlcl index --reindex --workspace ws --checkpoint new.pt   # the gallery of ws, re-encoded with another model

Images are read here and sent as bytes, so the server needs no access to
the files. `--by-path` sends their absolute paths instead and the Flow reads
the files itself (the same machine or a shared disk; the encoder must allow
the folder: `mlcl serve --image-root DIR`): nothing is copied through the
gateway, which leaves that CPU to the model (docs/performance.md).

Ids: a document's id is its path relative to the folder given, with its
extension (`mlcl index gallery/` indexes `gallery/shirts/a.png` as
`shirts/a.png`); a file named on its own gets its file name (`a.png`). Its
tags hold the absolute path (`tags.path`: stored, not shown in answers unless
the indexer has `expose_paths`) and the SHA-256 of the file (`tags.sha256`),
by which `mlcl search` leaves the reference image itself out of the results.
`--id-prefix P` puts P before every id (`--id-prefix shop1/`: `shop1/shirts/a.png`),
so that two folders holding files of one name do not replace each other, and
`mlcl delete --prefix shop1/` removes one of them. Indexing an id again replaces
it: the closing line says how many ids were replaced (from the index's count
before and after; a concurrent writer makes it approximate). With
`$MLCL_WRITE_TOKEN` set, requests carry the write token (a Flow that has one
refuses writes without it).

`--reindex` re-encodes the gallery a workspace holds with another model, from
the paths stored at indexing, into a fresh index, and swaps it in
(`mlcl_cli/reindex.py`); it needs no Flow.

`--vectors DIR` sends the vector folder `mlcl encode` wrote (its ids are the
ids `mlcl index FOLDER` gives, its model id is in the folder, and each
vector's feature norm, so that its documents can be searched by gallery id);
`--vectors FILE.npy --ids FILE.txt` sends an (n, dim) float matrix and n ids,
one per line (`mlcl/vector_files.py`), tagged with the model id of
`--checkpoint` (default: the bundled model) or `--model-id`. Either goes to
`/index_vectors` in blocks of `--batch-size`; the encoder refuses vectors of
another model than its own.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REQUEST_BYTES = 32 * 2**20  # image bytes per request at most (fewer images per request when files are large)
REQUESTS_IN_FLIGHT = 4  # requests sent before the first answer: the Flow's stages overlap


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="image files or folders")
    parser.add_argument("--vectors", type=Path, metavar="DIR|FILE.npy",
                        help="precomputed gallery vectors: a folder from `mlcl encode`, or an (n, dim) .npy with --ids")
    parser.add_argument("--ids", type=Path, metavar="FILE.txt", help="with --vectors FILE.npy: n ids, one per line")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="with --vectors: the checkpoint that computed them; with --reindex: the model to "
                        "re-encode with (default: the bundled model)")
    parser.add_argument("--model-id", default=None, help="with --vectors: the model id instead of --checkpoint")
    parser.add_argument("--id-prefix", default="", metavar="PREFIX", help="put PREFIX before every id (e.g. shop1/)")
    parser.add_argument("--host", default="localhost", help="Flow host (default: localhost)")
    parser.add_argument("--port", type=int, default=54321, help="gRPC port (default: 54321)")
    parser.add_argument("--batch-size", type=int, default=None, help="images (default 64) or vectors (default 4096) per request")
    parser.add_argument("--no-recursive", action="store_true", help="only the top level of folders")
    parser.add_argument("--by-path", action="store_true",
                        help="send the files' paths, not their bytes: the Flow reads them (it must run where they are, "
                        "started with --image-root covering them)")
    parser.add_argument("--reindex", action="store_true",
                        help="re-encode the gallery of --workspace with --checkpoint into a fresh index and swap it in "
                        "(no Flow needed; a running one keeps answering from the old index until the swap)")
    parser.add_argument("--workspace", type=Path, default=Path("workspace"),
                        help="with --reindex: the workspace `mlcl serve` uses (default: ./workspace)")
    parser.add_argument("--drop-missing", action="store_true",
                        help="with --reindex: leave out documents whose image cannot be read again")
    parser.add_argument("--device", default="auto", help="with --reindex: auto, cpu, cuda, cuda:N (default: auto)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def collect(paths: list[Path], recursive: bool) -> list[tuple[str, Path]]:
    """(id, file) pairs: ids relative to the folder given, unique (`mlcl.gallery_files`, as `mlcl encode`)."""
    from mlcl.gallery_files import gallery_items

    return gallery_items(paths, recursive=recursive)


def index_count(client) -> int:  # noqa: ANN001 - a FlowClient
    """The number of documents in the Flow's index (`/count`)."""
    from docarray import DocList

    from mlcl_executor.schemas import GalleryDoc, StatsDoc

    return client.post("/count", DocList[GalleryDoc](), return_type=DocList[StatsDoc])[0].count


def stored_line(stored: int, total: int, what: str, before: int, after: int, elapsed: float, rate: str) -> str:
    """The closing line of `mlcl index`: stored, replaced (ids already in the index), time, the index's count."""
    replaced = max(0, stored - (after - before))
    return (f"indexed {stored} of {total} {what} in {elapsed:.1f} s ({rate}); {replaced} of them replaced ids already "
            f"in the index; the index holds {after}")


def run(args: argparse.Namespace) -> int:
    from mlcl_cli import launcher

    launcher.quiet()
    if args.reindex:
        return run_reindex(args)
    if args.vectors is not None or args.ids is not None:
        return run_vectors(args)
    if not args.paths:
        print("mlcl index: give image files or folders, or --vectors DIR, or --vectors FILE.npy --ids FILE.txt", file=sys.stderr)
        return 2
    from tqdm import tqdm

    from mlcl_cli.client import refusal

    try:
        items = collect(args.paths, recursive=not args.no_recursive)
    except FileNotFoundError as exc:
        print(f"mlcl index: {exc}", file=sys.stderr)
        return 2
    if not items:
        print("mlcl index: no images found", file=sys.stderr)
        return 2
    items = [(args.id_prefix + doc_id, path) for doc_id, path in items]
    client = _connect(args)
    if client is None:
        return 1
    print(f"mlcl index: {len(items)} images; ids are paths relative to the folder given (e.g. {items[0][0]!r})")
    errors: list[str] = []
    # Requests of --batch-size images, fewer when the files are large (photos: a few MB each) and sent as bytes.
    mean_bytes = 0.0 if args.by_path else sum(path.stat().st_size for _, path in items[:256]) / min(len(items), 256)
    size = max(1, min(args.batch_size or 64, int(REQUEST_BYTES // max(mean_bytes, 1))))
    start = time.perf_counter()
    try:
        before = index_count(client)
        if args.by_path and (refused := path_refused(client, items[0])):
            print(f"mlcl index: the Flow does not read files by path here ({refused}); start it with --image-root "
                  f"covering {items[0][1].parent}, or index without --by-path", file=sys.stderr)
            return 2
        with tqdm(total=len(items), unit="img", desc="indexing", disable=args.no_progress) as bar:
            def answered(answer) -> None:  # noqa: ANN001
                errors.extend(d.error for d in answer if d.error)
                bar.update(len(answer))

            post_in_groups(client, items, size, answered, by_path=args.by_path)
        elapsed = time.perf_counter() - start
        count = index_count(client)
    except Exception as exc:
        if refusal(exc) is None and not isinstance(exc, ConnectionError):
            raise
        print(f"mlcl index: {refused_or_lost(exc, args)}", file=sys.stderr)
        return 1
    for error in errors:
        print(f"mlcl index: {error}", file=sys.stderr)
    print(stored_line(len(items) - len(errors), len(items), "images", before, count, elapsed,
                      f"{len(items) / elapsed:.1f} images/s"))
    return 1 if errors else 0


def gallery_doc(doc_id: str, path: Path, by_path: bool):  # noqa: ANN201 - a GalleryDoc
    """The document `mlcl index` sends for one file: its bytes (or its absolute path, `by_path`) and its tags."""
    from mlcl_cli.client import file_digest
    from mlcl_executor.schemas import GalleryDoc

    image = str(path.resolve()) if by_path else path.read_bytes()
    return GalleryDoc(id=doc_id, image=image, tags={"path": str(path), "sha256": file_digest(path)})


def path_refused(client, item: tuple[str, Path]) -> str | None:  # noqa: ANN001 - a FlowClient
    """Why the Flow refuses to read files by path, tried on `item` (None: it reads them; an image it cannot decode
    is not a refusal: it is reported with the others). `/encode` as a gallery image: nothing is stored."""
    from docarray import DocList

    from mlcl_executor.image_source import PATH_REFUSALS
    from mlcl_executor.schemas import GalleryDoc

    answer = client.post("/encode", DocList[GalleryDoc]([gallery_doc(*item, by_path=True)]), parameters={"as": "gallery"},
                         return_type=DocList[GalleryDoc])
    error = answer[0].error if len(answer) else None
    return next((why for why in PATH_REFUSALS if error and why in error), None)


def post_in_groups(client, items: list[tuple[str, Path]], size: int, on_answer, by_path: bool = False) -> None:  # noqa: ANN001
    """Post `items` to `/index` in requests of `size`, streamed REQUESTS_IN_FLIGHT requests per `Client.post`.

    Several requests in flight let the Flow decode one while it encodes another and this process reads
    the next. Never more than jina's `prefetch` in one post: jina 3.33 waits for a free prefetch slot by
    spinning (`await asyncio.sleep(0)` in a loop) in the gateway, which took half a core from a slow model
    (RN50x4, 40 photos: 9.6 s of gateway CPU, 2.1 images/s; in groups 0.5-0.7 s and 3.3 images/s).
    Files are read as jina asks for them: at most a group's requests are in memory.
    """
    from docarray import DocList

    from mlcl_executor.schemas import GalleryDoc

    def done(response) -> None:  # noqa: ANN001 - a jina Response; its answer is not kept (thumbnails)
        on_answer(response.docs)

    group = size * REQUESTS_IN_FLIGHT
    for lo in range(0, len(items), group):
        docs = (gallery_doc(doc_id, path, by_path) for doc_id, path in items[lo : lo + group])
        client.post("/index", docs, request_size=size, prefetch=REQUESTS_IN_FLIGHT, on_done=done,
                    return_type=DocList[GalleryDoc])


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


def _vector_blocks(args: argparse.Namespace, size: int):  # noqa: ANN202
    """(model id, number of vectors, iterator of (ids, matrix, norms or None) blocks of at most `size`) for --vectors."""
    from mlcl.paths import DEFAULT_CHECKPOINT
    from mlcl.model_id import checkpoint_id
    from mlcl.vector_files import VectorDir, load_vector_files

    if args.paths:
        raise ValueError("--vectors goes without image paths")
    if args.vectors is not None and args.vectors.is_dir():
        if args.ids is not None:
            raise ValueError(f"--ids goes with --vectors FILE.npy; {args.vectors} is a folder (it holds its ids)")
        folder = VectorDir.open(args.vectors)
        named = args.model_id or (checkpoint_id(args.checkpoint) if args.checkpoint else None)
        if named and named != folder.model_id:
            raise ValueError(f"{args.vectors} holds vectors of model {folder.model_id}, not {named}")
        ids = folder.ids()
        blocks = (([args.id_prefix + i for i in part_ids[lo : lo + size]], matrix[lo : lo + size],
                   None if norms is None else norms[lo : lo + size])
                  for part_ids, matrix, norms in folder.parts() for lo in range(0, len(part_ids), size))
        return folder.model_id, len(ids), blocks
    if args.vectors is None or args.ids is None:
        raise ValueError("--vectors FILE.npy needs --ids FILE.txt (or give --vectors a folder from mlcl encode)")
    matrix, ids = load_vector_files(args.vectors, args.ids)
    model_id = args.model_id or checkpoint_id(args.checkpoint or DEFAULT_CHECKPOINT)
    ids = [args.id_prefix + i for i in ids]
    return model_id, len(ids), ((ids[lo : lo + size], matrix[lo : lo + size], None) for lo in range(0, len(ids), size))


def vectors_doc(model_id: str, ids: list[str], matrix, norms=None):  # noqa: ANN001, ANN201 - arrays, a VectorsDoc
    """One `/index_vectors` block: ids, their vectors and, when known, their feature norms (a search by id needs them).

    One document per block: per-vector documents cost ~0.1 ms each to (de)serialise."""
    import numpy as np

    from mlcl_executor.schemas import VectorsDoc

    return VectorsDoc(ids=list(ids), embeddings=np.asarray(matrix, dtype=np.float32), model=model_id,
                      norms=None if norms is None else np.asarray(norms, dtype=np.float32))


def run_vectors(args: argparse.Namespace) -> int:
    """`--vectors DIR` or `--vectors FILE.npy --ids FILE.txt`: precomputed gallery vectors, tagged with the model id."""
    import time

    from docarray import DocList
    from tqdm import tqdm

    from mlcl_cli.client import refusal
    from mlcl_executor.schemas import VectorsDoc

    size = max(1, args.batch_size or 4096)
    try:
        model_id, total, blocks = _vector_blocks(args, size)
    except (OSError, ValueError) as exc:
        print(f"mlcl index: {exc}", file=sys.stderr)
        return 2
    client = _connect(args)
    if client is None:
        return 1
    errors: list[str] = []
    sent = stored = without_norms = 0
    start = time.perf_counter()
    try:
        before = index_count(client)
        with tqdm(total=total, unit="vec", desc="indexing vectors", disable=args.no_progress) as bar:
            for block_ids, block, norms in blocks:
                doc = vectors_doc(model_id, block_ids, block, norms)
                without_norms += len(block_ids) if norms is None else 0
                answer = client.post("/index_vectors", DocList[VectorsDoc]([doc]), return_type=DocList[VectorsDoc])
                errors += [d.error for d in answer if d.error]
                stored += sum(d.count for d in answer)
                sent += len(doc.ids)
                bar.update(len(doc.ids))
                if errors:
                    break  # e.g. the wrong model: no point in sending the rest
        elapsed = time.perf_counter() - start
        count = index_count(client)
    except ValueError as exc:  # a damaged part of a vector folder, found while reading it
        print(f"mlcl index: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if refusal(exc) is None and not isinstance(exc, ConnectionError):
            raise
        print(f"mlcl index: {refused_or_lost(exc, args)}", file=sys.stderr)
        return 1
    for error in errors[:20]:
        print(f"mlcl index: {error}", file=sys.stderr)
    if len(errors) > 20:
        print(f"mlcl index: ... and {len(errors) - 20} more errors", file=sys.stderr)
    if without_norms and args.vectors.is_dir():  # a .npy never has them: saying so each time would be noise
        print(f"mlcl index: {without_norms} vectors of {args.vectors} have no feature norm (an older mlcl encode "
              "wrote them): their documents cannot be searched by gallery id; `mlcl encode` into a new folder writes "
              "the norms", file=sys.stderr)
    print(stored_line(stored, total, "vectors", before, count, elapsed, f"{sent / max(elapsed, 1e-9):,.0f} vectors/s"))
    return 1 if errors else 0


def run_reindex(args: argparse.Namespace) -> int:
    """`--reindex`: re-encode the workspace's gallery with --checkpoint and swap it in (`mlcl_cli/reindex.py`)."""
    from tqdm import tqdm

    from mlcl.bulk_encode import EncodeOptions
    from mlcl_cli.cli import UserError
    from mlcl_cli.reindex import reindex

    if args.paths or args.vectors is not None or args.ids is not None or args.id_prefix:
        raise UserError("--reindex takes no images, --vectors or --id-prefix: it re-encodes what the workspace holds")
    bar = tqdm(total=0, unit="img", desc="re-encoding", disable=args.no_progress)

    def on_total(n: int) -> None:
        bar.total = n
        bar.refresh()

    options = EncodeOptions(device=args.device, batch_size=args.batch_size or 64)
    try:
        result = reindex(args.workspace, args.checkpoint, options, args.drop_missing, bar.update, on_total,
                         say=lambda line: (bar.clear(), print(f"mlcl index: {line}", file=sys.stderr, flush=True)))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    finally:
        bar.close()
    for doc_id, why in result.dropped[:20]:
        print(f"mlcl index: left out {doc_id!r}: {why}", file=sys.stderr)
    rate = result.encoded / result.seconds if result.seconds > 0 else 0.0
    print(f"re-indexed {result.encoded} of {result.documents} documents with model {result.model_id} in "
          f"{result.seconds:.1f} s ({rate:.1f} images/s; was model {result.old_model or 'not recorded'}); "
          f"serve it with: mlcl serve --workspace {args.workspace}"
          + (f" --checkpoint {args.checkpoint}" if args.checkpoint else ""))
    return 0
