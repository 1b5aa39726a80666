"""`mlcl encode FOLDER --out DIR`: gallery vectors offline, for big galleries (no Flow needed).

    mlcl encode ~/photos --out ~/photos.vectors              # the bundled model; the GPU when there is one
    mlcl encode ~/photos --out vecs --checkpoint model.pt --precision bf16 --batch-size 256
    mlcl index --vectors ~/photos.vectors                     # then into a running Flow of the same model

Writes the folder's vectors, their ids (the ids `mlcl index FOLDER` gives the same
files), each image's feature norm (so that a search by gallery id works for them
once loaded) and the model id to DIR, part by part (`mlcl/vector_files.py`). Run it again
to resume: the ids already in DIR are skipped. Images are decoded in DataLoader
worker processes (`--workers`, default: the cores the model leaves free) as the
served encoder decodes them. The work is `mlcl.bulk_encode`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="FOLDER", help="image folders (or files)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="the vector folder to write or resume")
    parser.add_argument("--checkpoint", type=Path, default=None, help="model checkpoint (default: the bundled model)")
    parser.add_argument("--device", default="auto", help="auto (cuda when there is a GPU), cpu, cuda, cuda:N")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                        help="autocast precision of the backbone (default fp32; check parity before using another)")
    parser.add_argument("--memory-format", choices=("auto", "channels_last", "contiguous"), default="auto")
    parser.add_argument("--batch-size", type=int, default=64, help="images per model call (default 64)")
    parser.add_argument("--workers", default="auto", help="decode worker processes: auto or a count (0: in this process)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on the CPU (default: torch's)")
    parser.add_argument("--no-draft", action="store_true", help="decode JPEGs at full size (slower; default: draft)")
    parser.add_argument("--part-size", type=int, default=4096, help="vectors per part file (default 4096)")
    parser.add_argument("--no-recursive", action="store_true", help="only the top level of folders")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    workers = args.workers if str(args.workers).strip().lower() == "auto" else _count(args.workers)
    if workers is None:
        print(f"mlcl encode: --workers must be auto or a count >= 0, got {args.workers!r}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    from mlcl.bulk_encode import EncodeOptions, encode_folder
    from mlcl.model import CheckpointError

    options = EncodeOptions(
        checkpoint=args.checkpoint, device=args.device, precision=args.precision, memory_format=args.memory_format,
        batch_size=args.batch_size, workers=workers, threads=args.threads, draft=not args.no_draft,
        part_size=args.part_size, recursive=not args.no_recursive,
    )
    bar = None

    def started(r) -> None:  # noqa: ANN001
        nonlocal bar
        print(f"mlcl encode: {r.found} images, {r.skipped} already in {r.out}, {r.found - r.skipped} to encode "
              f"(model {r.model_id} on {r.device}, {r.workers} decode workers)")
        bar = tqdm(total=r.found - r.skipped, unit="img", desc="encoding", disable=args.no_progress)

    try:
        result = encode_folder(args.paths, args.out, options, progress=lambda n: bar.update(n), on_start=started)
    except (FileNotFoundError, CheckpointError, ValueError) as exc:
        print(f"mlcl encode: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    for doc_id, why in result.failed[:20]:
        print(f"mlcl encode: {doc_id}: {why}", file=sys.stderr)
    if len(result.failed) > 20:
        print(f"mlcl encode: ... and {len(result.failed) - 20} more files that could not be read", file=sys.stderr)
    if result.found == 0:
        print("mlcl encode: no images found", file=sys.stderr)
        return 2
    rate = f" in {result.seconds:.1f} s ({result.images_per_s:.1f} images/s)" if result.encoded else ""
    print(f"encoded {result.encoded} images{rate}; {result.out} holds {result.skipped + result.encoded} vectors of model "
          f"{result.model_id}; load them into a running Flow with: mlcl index --vectors {result.out}")
    return 1 if result.failed else 0


def _count(text: str) -> int | None:
    text = str(text).strip()
    return int(text) if text.isdigit() else None
