"""Each benchmark's official protocol: which queries, which gallery, what counts
as a hit, what is excluded, and which numbers are reported.

A loaded data set becomes one or more `RetrievalTask`s (FashionIQ: one per
category, each with its own gallery); `summarize` turns the tasks' ranks into
the benchmark's metric set and headline.  The per-benchmark choices are data,
in `PROTOCOLS`.  See docs/evaluation.md for the sources of each rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from mlcl.eval.metrics import recall_from_ranks


@dataclass(frozen=True)
class ProtocolSpec:
    ks: tuple[int, ...]
    exclude_reference: bool
    default_split: str
    subset_ks: tuple[int, ...] = ()
    headline: str = ""  # how the headline number is formed, for tables and docs


PROTOCOLS: dict[str, ProtocolSpec] = {
    # Gallery: the whole split.{category}.val.json ("original split"); the
    # reference is NOT removed (CLIP4Cir / SPRC / MLCL evaluation code).
    "fashioniq": ProtocolSpec(
        ks=(10, 50), exclude_reference=False, default_split="val",
        headline="(mean R@10 + mean R@50) / 2 over dress, shirt, toptee",
    ),
    "cirr": ProtocolSpec(
        ks=(1, 5, 10, 50), subset_ks=(1, 2, 3), exclude_reference=True, default_split="val",
        headline="(R@5 + Rsubset@1) / 2",
    ),
    "shoes": ProtocolSpec(
        ks=(1, 10, 50), exclude_reference=True, default_split="eval",
        headline="mean of R@1, R@10, R@50",
    ),
    "shapes": ProtocolSpec(
        ks=(1, 5, 10, 50), exclude_reference=True, default_split="test",
        headline="R@1 (hit = retrieved scene equals the target scene)",
    ),
}
DATASETS: tuple[str, ...] = tuple(PROTOCOLS)


@dataclass
class RetrievalTask:
    """Queries against one gallery, with names instead of indices."""

    name: str
    gallery: list[str]
    image_path: Callable[[str], Path]
    query_ids: list[str]
    references: list[str]
    captions: list[str]
    positives: list[list[str]]  # hit names per query; empty lists on unlabeled splits
    exclude: list[list[str]]  # names removed from each query's ranking
    subsets: list[list[str]] | None = None  # CIRR: img_set members minus the reference
    labeled: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A split list may name an image twice (FashionIQ and Shoes lists are not de-duplicated):
        # one image is one gallery entry, so features and names stay in step.
        unique = list(dict.fromkeys(self.gallery))
        if len(unique) != len(self.gallery):
            self.extra["duplicate_gallery_names"] = len(self.gallery) - len(unique)
            self.gallery = unique

    def __len__(self) -> int:
        return len(self.query_ids)

    def image_names(self) -> list[str]:
        """Every image to encode once: the gallery, then references outside it."""
        return list(dict.fromkeys([*self.gallery, *self.references]))

    def gallery_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.gallery)}


def _limit(triplets: Sequence[dict], limit: int | None) -> list[dict]:
    return list(triplets if limit is None else triplets[:limit])


def _ref_exclusion(triplets: Sequence[dict], spec: ProtocolSpec) -> list[list[str]]:
    return [[t["reference"]] if spec.exclude_reference else [] for t in triplets]


def fashioniq_tasks(ds: Any, limit: int | None = None) -> list[RetrievalTask]:
    """One task per category; `limit` keeps the first N queries of EACH category."""
    spec = PROTOCOLS["fashioniq"]
    tasks = []
    for category in ds.categories:
        trips = _limit(ds.triplets_of(category), limit)
        labeled = all(t["target"] is not None for t in trips)
        tasks.append(
            RetrievalTask(
                name=category,
                gallery=list(ds.galleries[category]),
                image_path=ds.image_path,
                query_ids=[t["id"] for t in trips],
                references=[t["reference"] for t in trips],
                captions=[t["caption"] for t in trips],  # "C1 and c2"
                positives=[[t["target"]] if labeled else [] for t in trips],
                exclude=_ref_exclusion(trips, spec),
                labeled=labeled,
            )
        )
    return tasks


def cirr_tasks(ds: Any, limit: int | None = None) -> list[RetrievalTask]:
    spec = PROTOCOLS["cirr"]
    trips = _limit(ds.triplets, limit)
    return [
        RetrievalTask(
            name="cirr",
            gallery=list(ds.gallery),
            image_path=ds.image_path,
            query_ids=[t["id"] for t in trips],
            references=[t["reference"] for t in trips],
            captions=[t["caption"] for t in trips],
            positives=[[t["target"]] if ds.has_targets else [] for t in trips],
            exclude=_ref_exclusion(trips, spec),
            subsets=[[m for m in t["members"] if m != t["reference"]] for t in trips],
            labeled=ds.has_targets,
            extra={"pairids": [t["pairid"] for t in trips]},
        )
    ]


def shoes_tasks(ds: Any, limit: int | None = None) -> list[RetrievalTask]:
    spec = PROTOCOLS["shoes"]
    trips = _limit(ds.triplets, limit)
    return [
        RetrievalTask(
            name="shoes",
            gallery=list(ds.gallery),
            image_path=ds.image_path,
            query_ids=[t["id"] for t in trips],
            references=[t["reference"] for t in trips],
            captions=[t["caption"] for t in trips],
            positives=[[t["target"]] for t in trips],
            exclude=_ref_exclusion(trips, spec),
        )
    ]


def _shapes_kinds() -> list[str]:
    from mlcl.data.shapes.config import load_config

    return list(load_config().kinds)


def _shapes_breakdown(trips: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """Query groups for the error analysis: modification kind, objects in the reference; on the
    hard split also the form (one edit, two on one object, two on two) and how objects are named."""
    out = {
        "kind": [str(t.get("kind", "?")) for t in trips],
        "objects": [str(len(t["reference_scene"])) if "reference_scene" in t else "?" for t in trips],
    }
    if trips and "form" in trips[0]:
        out["form"] = [str(t["form"]) for t in trips]
        out["reference"] = ["relational" if t.get("relational") else "plain" for t in trips]
    return out


def shapes_tasks(ds: Any, limit: int | None = None) -> list[RetrievalTask]:
    """Hits are all gallery images whose scene equals the target's (several per query)."""
    spec = PROTOCOLS["shapes"]
    trips = _limit(ds.triplets, limit)
    gallery = list(ds.gallery)
    by_scene: dict[Any, list[str]] = {}
    for name in gallery:
        by_scene.setdefault(ds.scene_key(name), []).append(name)
    return [
        RetrievalTask(
            name="shapes",
            gallery=gallery,
            image_path=ds.image_path,
            query_ids=[str(t["id"]) for t in trips],
            references=[t["reference"] for t in trips],
            captions=[t["caption"] for t in trips],
            positives=[list(by_scene.get(ds.scene_key(t["target"]), [])) for t in trips],
            exclude=_ref_exclusion(trips, spec),
            # Error analysis: recall per modification kind and per number of objects in the reference.
            extra={"breakdown": _shapes_breakdown(trips), "breakdown_order": {"kind": _shapes_kinds()}},
        )
    ]


def load_dataset(dataset: str, root: str | Path | None, split: str, progress: bool = False, seed: int = 0) -> Any:
    """Load a benchmark split with its plain loader (shapes: of generation seed `seed`, generated if missing)."""
    if dataset == "shapes":
        from mlcl.data.shapes import ShapesDataset, ensure_shapes

        return ShapesDataset(ensure_shapes(root=root, split=split, seed=seed, progress=progress), split)
    if root is None:
        raise ValueError(f"--data-root is required for {dataset} (its data cannot be downloaded here)")
    if dataset == "fashioniq":
        from mlcl.data.fashioniq import FashionIQ

        return FashionIQ(root, split)
    if dataset == "cirr":
        from mlcl.data.cirr import CIRR

        return CIRR(root, split)
    if dataset == "shoes":
        from mlcl.data.shoes import Shoes

        return Shoes(root, split)
    raise ValueError(f"unknown dataset {dataset!r}; choose from {DATASETS}")


TASK_BUILDERS: dict[str, Callable[[Any, int | None], list[RetrievalTask]]] = {
    "fashioniq": fashioniq_tasks,
    "cirr": cirr_tasks,
    "shoes": shoes_tasks,
    "shapes": shapes_tasks,
}


def build_tasks(dataset: str, ds: Any, limit: int | None = None) -> list[RetrievalTask]:
    if dataset not in TASK_BUILDERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {DATASETS}")
    return TASK_BUILDERS[dataset](ds, limit)


def breakdown(tasks: Sequence[RetrievalTask], ranks: Mapping[str, torch.Tensor],
              ks: Sequence[int]) -> dict[str, dict[str, dict[str, float]]]:
    """Recall per query group (shapes: per modification kind, per number of objects).

    Returns {grouping: {group: {"queries": n, "R@k": percent, ...}}}, groups in a
    stable order; empty when no task carries `extra["breakdown"]`.
    """
    labels: dict[str, list[str]] = {}
    all_ranks = []
    for task in tasks:
        groups = task.extra.get("breakdown")
        if not groups or task.name not in ranks:
            return {}
        for name, values in groups.items():
            labels.setdefault(name, []).extend(values)
        all_ranks.append(ranks[task.name])
    if not labels:
        return {}
    r = torch.cat(all_ranks)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, values in labels.items():
        preferred = tasks[0].extra.get("breakdown_order", {}).get(name, [])
        rank = {v: i for i, v in enumerate(preferred)}
        order = sorted(set(values), key=lambda v: (rank.get(v, len(rank)), not v.isdigit(),
                                                   int(v) if v.isdigit() else 0, v))
        out[name] = {}
        for value in order:
            sel = torch.tensor([v == value for v in values])
            out[name][value] = {"queries": int(sel.sum()), **recall_from_ranks(r[sel], ks)}
    return out


def summarize(
    dataset: str,
    ranks: Mapping[str, torch.Tensor],
    subset_ranks: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """The benchmark's metric set (percent) from each task's ranks.

    ranks / subset_ranks: task name -> LongTensor[Q] of `first_positive_ranks`.
    Keys: "R@k", "Rsubset@k" (CIRR), "{category}/R@k" (FashionIQ, whose "R@k"
    are the category means) and "headline".
    """
    spec = PROTOCOLS[dataset]
    if dataset == "fashioniq":
        out: dict[str, float] = {}
        per_cat = {name: recall_from_ranks(r, spec.ks) for name, r in ranks.items()}
        for name, rec in per_cat.items():
            out.update({f"{name}/{k}": v for k, v in rec.items()})
        for k in spec.ks:
            out[f"R@{k}"] = sum(rec[f"R@{k}"] for rec in per_cat.values()) / len(per_cat)
        out["headline"] = (out["R@10"] + out["R@50"]) / 2
        return out
    (only,) = ranks.values()
    out = recall_from_ranks(only, spec.ks)
    if dataset == "cirr":
        if subset_ranks is None:
            raise ValueError("CIRR needs subset ranks")
        (sub,) = subset_ranks.values()
        out.update(recall_from_ranks(sub, spec.subset_ks, prefix="Rsubset@"))
        out["headline"] = (out["R@5"] + out["Rsubset@1"]) / 2
    elif dataset == "shoes":
        out["headline"] = sum(out[f"R@{k}"] for k in spec.ks) / len(spec.ks)
    else:
        out["headline"] = out["R@1"]
    return out
