"""Encode a benchmark split in batches and score it with its protocol.

Per task: `image_features` once per unique image (gallery + references) through
a DataLoader over lazily opened files, keeping only feature vectors; then
`text_features` for the captions, `compose` for the queries, `gallery_vectors`
for the gallery, and ranks from query-chunked score matrices
(`mlcl.eval.metrics.chunked_ranks`).  The model only needs the methods of
`EncoderLike`; any `mlcl.model.MLCLModel` has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, MutableMapping, Protocol, Sequence

import torch
from torch.utils.data import DataLoader

from mlcl.data.images import ImageFiles
from mlcl.eval import metrics
from mlcl.eval.protocols import PROTOCOLS, RetrievalTask, breakdown, build_tasks, load_dataset, summarize


class EncoderLike(Protocol):
    preprocess: Any

    def image_features(self, images: torch.Tensor) -> torch.Tensor: ...
    def text_features(self, texts: list[str]) -> torch.Tensor: ...
    def compose(self, f_ref: torch.Tensor, f_txt: torch.Tensor) -> torch.Tensor: ...
    def gallery_vectors(self, f: torch.Tensor) -> torch.Tensor: ...


@dataclass
class TaskOutput:
    task: RetrievalTask
    queries: torch.Tensor  # [Q, D] unit-norm
    gallery: torch.Tensor  # [G, D] unit-norm
    ranks: torch.Tensor | None = None  # [Q]; None on unlabeled splits
    subset_ranks: torch.Tensor | None = None


@dataclass
class EvalResult:
    dataset: str
    split: str
    metrics: dict[str, float]
    tasks: list[dict[str, Any]] = field(default_factory=list)  # name, queries, gallery, exclude_reference
    outputs: list[TaskOutput] = field(default_factory=list)
    submission: tuple[Path, Path] | None = None
    # Error analysis: {grouping: {group: {"queries": n, "R@k": %}}} (shapes: "kind", "objects")
    breakdown: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def model_device(model: Any) -> torch.device:
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _progress(iterable: Any, desc: str, total: int | None, enabled: bool) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="batch", leave=False)


@torch.no_grad()
def encode_image_features(
    model: EncoderLike,
    paths: Sequence[str | Path],
    batch_size: int = 64,
    num_workers: int = 2,
    progress: bool = True,
    desc: str = "images",
) -> torch.Tensor:
    """image_features of every file, in order: FloatTensor[N, D] on the model's device."""
    device = model_device(model)
    loader = DataLoader(
        ImageFiles(paths, model.preprocess),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    feats = [
        model.image_features(batch.to(device)).float()
        for batch in _progress(loader, desc, len(loader), progress)
    ]
    if not feats:
        raise ValueError("no images to encode")
    return torch.cat(feats)


@torch.no_grad()
def encode_text_features(
    model: EncoderLike, texts: Sequence[str], batch_size: int = 64, progress: bool = True
) -> torch.Tensor:
    chunks = [list(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    feats = [model.text_features(c).float() for c in _progress(chunks, "captions", len(chunks), progress)]
    return torch.cat(feats)


def _indices(names_per_query: Sequence[Sequence[str]], index: dict[str, int]) -> torch.Tensor:
    # Names outside the gallery cannot be hits nor be excluded: they are dropped.
    return metrics.pad_indices([[index[n] for n in names if n in index] for names in names_per_query])


@torch.no_grad()
def run_task(
    model: EncoderLike,
    task: RetrievalTask,
    batch_size: int = 64,
    num_workers: int = 2,
    chunk_size: int = 1024,
    progress: bool = True,
    feature_cache: MutableMapping[Any, torch.Tensor] | None = None,
) -> TaskOutput:
    """Encode one task and (if labeled) rank its queries.

    feature_cache: image and text features by input, reused when present (for
    several models that share one frozen backbone: the caller keys the cache by it).
    """
    if len(task) == 0:
        raise ValueError(f"{task.name}: no queries")
    names = task.image_names()
    paths = [task.image_path(n) for n in names]

    def cached(key: Any, encode: Callable[[], torch.Tensor]) -> torch.Tensor:
        if feature_cache is None:
            return encode()
        if key not in feature_cache:
            feature_cache[key] = encode()
        return feature_cache[key]

    feats = cached(("images", tuple(map(str, paths))), lambda: encode_image_features(
        model, paths, batch_size, num_workers, progress, desc=f"{task.name} images"))
    row = {n: i for i, n in enumerate(names)}
    # Rows by name, not position: image_names() de-duplicates, so positions need not match the gallery list.
    gallery_rows = torch.tensor([row[n] for n in task.gallery], device=feats.device)
    gallery = model.gallery_vectors(feats[gallery_rows]).float()
    f_txt = cached(("texts", tuple(task.captions)),
                   lambda: encode_text_features(model, task.captions, batch_size, progress))
    ref_rows = torch.tensor([row[r] for r in task.references], device=feats.device)
    queries = torch.cat(
        [
            model.compose(feats[ref_rows[i : i + batch_size]], f_txt[i : i + batch_size]).float()
            for i in range(0, len(task), batch_size)
        ]
    )
    out = TaskOutput(task=task, queries=queries, gallery=gallery)
    if task.labeled:
        index = task.gallery_index()
        subset = _indices(task.subsets, index) if task.subsets is not None else None
        out.ranks, out.subset_ranks = metrics.chunked_ranks(
            queries, gallery, _indices(task.positives, index), _indices(task.exclude, index), subset, chunk_size
        )
    return out


def ranked_names(
    output: TaskOutput, k: int, within_subset: bool = False, chunk_size: int = 1024
) -> list[list[str]]:
    """Each query's top-k gallery names (its exclusions removed; optionally only its subset)."""
    task = output.task
    index = task.gallery_index()
    restrict = _indices(task.subsets, index) if within_subset and task.subsets is not None else None
    top = metrics.chunked_top_k(
        output.queries, output.gallery, k, _indices(task.exclude, index), restrict, chunk_size
    )
    return [[task.gallery[j] for j in row if j >= 0] for row in top.tolist()]


def evaluate(
    model: EncoderLike,
    dataset: str,
    root: str | Path | None = None,
    split: str | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
    chunk_size: int = 1024,
    progress: bool = True,
    submission_dir: str | Path | None = None,
    ds: Any = None,
    seed: int = 0,
    feature_cache: MutableMapping[Any, torch.Tensor] | None = None,
) -> EvalResult:
    """Evaluate `model` on a benchmark split by its official protocol.

    `ds` may pass an already loaded data set (else it is loaded from `root`;
    shapes: the split of generation seed `seed`, generated if missing).
    `feature_cache`: see run_task.
    `limit` keeps the first N queries (per category on FashionIQ); the gallery
    stays whole.  `submission_dir` (CIRR only) writes the test-server files.
    Metrics are empty on splits without targets (CIRR test1).
    """
    if dataset not in PROTOCOLS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {tuple(PROTOCOLS)}")
    spec = PROTOCOLS[dataset]
    split = split or spec.default_split
    if submission_dir is not None and dataset != "cirr":
        raise ValueError("submission files exist only for CIRR")
    if ds is None:
        ds = load_dataset(dataset, root, split, progress=progress, seed=seed)
    tasks = build_tasks(dataset, ds, limit)
    if hasattr(model, "eval"):
        model.eval()
    outputs = [run_task(model, t, batch_size, num_workers, chunk_size, progress, feature_cache) for t in tasks]
    labeled = all(o.ranks is not None for o in outputs)
    result = EvalResult(
        dataset=dataset,
        split=split,
        metrics=summarize(
            dataset,
            {o.task.name: o.ranks for o in outputs},
            {o.task.name: o.subset_ranks for o in outputs} if spec.subset_ks else None,
        )
        if labeled
        else {},
        tasks=[
            {"name": o.task.name, "queries": len(o.task), "gallery": len(o.task.gallery),
             "exclude_reference": spec.exclude_reference}
            for o in outputs
        ],
        outputs=outputs,
        breakdown=breakdown(tasks, {o.task.name: o.ranks for o in outputs}, spec.ks) if labeled else {},
    )
    if submission_dir is not None:
        from mlcl.eval.submission import RECALL_K, SUBSET_K, write_cirr_submission

        (out,) = outputs
        pairids = out.task.extra["pairids"]
        recall = dict(zip(pairids, ranked_names(out, RECALL_K, chunk_size=chunk_size)))
        subset = dict(zip(pairids, ranked_names(out, SUBSET_K, within_subset=True, chunk_size=chunk_size)))
        result.submission = write_cirr_submission(submission_dir, recall, subset, name=f"mlcl_{split}")
    return result
