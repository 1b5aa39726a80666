"""Encode a folder of gallery images offline into a vector folder (`mlcl encode FOLDER --out DIR`).

The bulk path for big galleries: no Flow, no gateway, no per-document messages.
Files are decoded in DataLoader worker processes (as the served encoder decodes
them: `mlcl.image_decode`, the same ids as `mlcl index FOLDER`:
`mlcl.gallery_files`), batched, encoded on the GPU when there is one, and written
to `DIR` part by part (`mlcl.vector_files.VectorDir`), each vector with the norm
of its image's features (what a search by gallery id needs besides the vector).
A second run into the same `DIR` skips the ids already there, so a run that
stopped resumes; a file that could not be read is reported, not written, and
tried again next time.
`mlcl index --vectors DIR` then loads the folder into a running Flow, whose
encoder checks that the model id is its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader

from .data.images import PixelFiles, collate_pixels
from .gallery_files import gallery_items
from .image_decode import auto_decode_workers
from .model import load_checkpoint
from .device import resolve_device
from .model.inference import prepare_for_inference
from .paths import DEFAULT_CHECKPOINT
from .model_id import checkpoint_id
from .vector_files import VectorDir


@dataclass
class EncodeOptions:
    """How to encode: the model, the device and its speed options, the loader, the parts written."""

    checkpoint: Optional[Path] = None  # None: the bundled model
    device: str = "auto"
    precision: str = "fp32"
    memory_format: str = "auto"
    batch_size: int = 64
    workers: Union[int, str] = "auto"  # DataLoader worker processes that decode: a count, or the cores the model leaves free
    threads: Optional[int] = None  # torch threads (CPU); None: torch's default
    draft: bool = True  # JPEG draft decoding (as the served encoder)
    part_size: int = 4096  # vectors per part at most
    part_seconds: float = 120.0  # and a part at least this often (what a stopped run loses at most)
    recursive: bool = True


@dataclass
class EncodeResult:
    out: Path
    model_id: str
    device: str
    workers: int
    found: int  # images under the folders given
    skipped: int  # already in the folder
    encoded: int  # written by this run
    seconds: float  # from the first batch asked for to the last part written
    failed: List[Tuple[str, str]] = field(default_factory=list)  # (id, why)

    @property
    def images_per_s(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0


def _workers(setting: Union[int, str], device: str) -> int:
    if str(setting).strip().lower() == "auto":
        return auto_decode_workers(device, torch.get_num_threads())
    count = int(setting)
    if count < 0:
        raise ValueError(f"workers must be 'auto' or a count >= 0, got {setting!r}")
    return count


def encode_folder(
    paths: Sequence[Union[str, Path]],
    out: Union[str, Path],
    options: EncodeOptions = EncodeOptions(),
    progress: Optional[Callable[[int], None]] = None,
    on_start: Optional[Callable[["EncodeResult"], None]] = None,
) -> EncodeResult:
    """Encode the images under `paths` into the vector folder `out` (see the module docstring).

    `progress(n)` is called after each batch with the number of images it settled; `on_start(result)`
    once the work is known (before the first batch). ValueError / FileNotFoundError name a bad argument
    (no such folder, a checkpoint that is not one, a folder of another model's vectors).
    """
    if options.batch_size < 1 or options.part_size < 1:
        raise ValueError("batch_size and part_size must be >= 1")
    return encode_items(gallery_items(paths, recursive=options.recursive), out, options, progress, on_start)


def encode_items(
    items: Sequence[Tuple[str, Path]],
    out: Union[str, Path],
    options: EncodeOptions = EncodeOptions(),
    progress: Optional[Callable[[int], None]] = None,
    on_start: Optional[Callable[["EncodeResult"], None]] = None,
) -> EncodeResult:
    """`encode_folder` for given (id, file) pairs (`mlcl index --reindex`: the paths an index stored)."""
    if options.threads:
        torch.set_num_threads(int(options.threads))
    device = resolve_device(options.device)
    checkpoint = Path(options.checkpoint).expanduser() if options.checkpoint else DEFAULT_CHECKPOINT
    model_id = checkpoint_id(checkpoint)  # FileNotFoundError for a missing file
    model = prepare_for_inference(load_checkpoint(checkpoint), device, options.precision, options.memory_format)
    vectors_dir = VectorDir.create_or_resume(
        out, model_id, model.embed_dim, checkpoint=str(checkpoint.resolve()),
        backbone=model.config["backbone"]["model_name"], image_size=model.image_size, draft=options.draft,
        precision=options.precision,
    )
    done = set(vectors_dir.ids())
    todo = [(doc_id, path) for doc_id, path in items if doc_id not in done]
    workers = _workers(options.workers, device)
    result = EncodeResult(Path(out), model_id, device, workers, len(items), len(items) - len(todo), 0, 0.0)
    if on_start is not None:
        on_start(result)
    if not todo:
        return result
    loader = DataLoader(
        PixelFiles([p for _, p in todo], model.pixels, draft=options.draft),
        batch_size=options.batch_size, shuffle=False, num_workers=workers, collate_fn=collate_pixels,
        pin_memory=device.startswith("cuda"), prefetch_factor=4 if workers else None,
    )
    ids: List[str] = []
    rows: List[np.ndarray] = []
    norms: List[np.ndarray] = []  # row for row with `rows`
    start = last_part = time.perf_counter()

    def write_part() -> None:
        nonlocal ids, rows, norms, last_part
        if ids:
            vectors_dir.write_part(ids, np.concatenate(rows), np.concatenate(norms))
            result.encoded += len(ids)
            ids, rows, norms = [], [], []
        last_part = time.perf_counter()

    try:
        with torch.inference_mode():
            for positions, batch, errors in loader:
                result.failed += [(todo[i][0], why) for i, why in errors]
                if batch is not None:
                    vectors, feature_norms = model.encode_gallery(model.images_from_pixels(batch, device))
                    rows.append(vectors.float().cpu().numpy())
                    norms.append(feature_norms.float().cpu().numpy())
                    ids += [todo[i][0] for i in positions]
                if len(ids) >= options.part_size or time.perf_counter() - last_part >= options.part_seconds:
                    write_part()
                if progress is not None:
                    progress(len(positions) + len(errors))
    finally:  # also on Ctrl-C: what was encoded is kept, the next run resumes after it
        write_part()
        result.seconds = time.perf_counter() - start
    return result


__all__ = ["EncodeOptions", "EncodeResult", "encode_folder", "encode_items"]
