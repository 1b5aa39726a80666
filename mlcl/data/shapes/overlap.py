"""Scenes that training streams share with evaluation galleries (the benchmark's leakage check).

The scene space is small (42 object types on a 3x3 grid: 378 one-object
scenes), so two streams kept apart only by their seeds re-draw each other's
scenes.  These functions regenerate scene keys without rendering a pixel:

    gallery = gallery_scenes(seed=0, split="test")            # every image's scene key (exclusion.py)
    stream = StreamSpec(seed=1, groups=64000)                 # a procedural training stream
    report = overlap_report({"test": (0, "test")}, [stream])  # what they share

`scripts/shapes_overlap.py` prints the report for the shipped recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .config import load_config
from .exclusion import gallery_scenes
from .generate import make_group, queries_per_group


@dataclass(frozen=True)
class StreamSpec:
    """Groups [start, start + groups) of the procedural training stream of `seed`.

    exclude=False draws it as the generator did before training excluded the
    evaluation scenes (to measure what that exclusion removes).
    """

    seed: int
    groups: int
    queries_per_group: int = 4
    target_siblings: int = 1
    start: int = 0
    name: str = ""
    exclude: bool = True


def streams_from_configs(configs: Iterable[Any]) -> list[StreamSpec]:
    """The procedural streams training configs draw (YAML paths or parsed dicts), one per distinct
    (seed, groups): stage 1 draws `procedural.groups` x `run.max_epoch` groups (new ones every epoch),
    a stage-2 run (`run.cache_features`) caches `procedural.groups` groups once."""
    import yaml

    streams: dict[tuple[int, int], StreamSpec] = {}
    for item in configs:
        name = getattr(item, "stem", "")
        cfg = item if isinstance(item, Mapping) else yaml.safe_load(open(item, encoding="utf-8")) or {}
        proc = ((cfg.get("datasets") or {}).get("shapes") or {}).get("procedural")
        if not proc:
            continue
        run = cfg.get("run") or {}
        epochs = 1 if run.get("cache_features") else int(run.get("max_epoch", 1))
        spec = StreamSpec(seed=int(proc.get("seed", 1)), groups=int(proc["groups"]) * epochs,
                          queries_per_group=int(proc.get("queries_per_group", 4)),
                          target_siblings=int(proc.get("target_siblings", 1)), name=name)
        key = (spec.seed, spec.groups)
        if key in streams:
            spec = StreamSpec(**{**streams[key].__dict__, "name": f"{streams[key].name},{name}".strip(",")})
        streams[key] = spec
    return list(streams.values())


def split_groups(seed: int, split: str, n: int | None = None) -> Iterator[Any]:
    """The GroupRecords of a generated split of n queries (default size), as the files hold them."""
    n = load_config().default_sizes[split] if n is None else int(n)
    k = queries_per_group(split)
    for g in range(-(-n // k)):
        yield make_group(seed, split, g, keep=min(k, n - g * k))


def stream_groups(spec: StreamSpec) -> Iterator[Any]:
    from .procedural import training_group

    excluded = None if spec.exclude else frozenset()
    for g in range(spec.start, spec.start + spec.groups):
        yield training_group(spec.seed, g, spec.queries_per_group, spec.target_siblings, excluded=excluded)


@dataclass
class _Seen:
    scenes: set[str]
    pairs: set[tuple[str, str]]
    captioned: set[tuple[str, str, str]]
    triplets: int = 0
    repeated_pairs: int = 0
    per_stream: list[dict[str, Any]] | None = None


def _scan(streams: Iterable[StreamSpec], progress: bool) -> _Seen:
    seen = _Seen(set(), set(), set())
    specs = list(streams)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(s.groups for s in specs), unit="group", desc="training streams")
    seen.per_stream = []
    for spec in specs:
        earlier = set(seen.pairs)
        own: set[tuple[str, str]] = set()
        stats = {"name": spec.name, "seed": spec.seed, "triplets": 0, "repeat_own": 0, "in_earlier_streams": 0}
        for grp in stream_groups(spec):
            ref = grp.reference.key
            seen.scenes.add(ref)
            for t, c, negs in zip(grp.targets, grp.captions, grp.negatives):
                pair = (ref, t.key)
                seen.triplets += 1
                seen.repeated_pairs += pair in seen.pairs
                stats["triplets"] += 1
                stats["repeat_own"] += pair in own
                stats["in_earlier_streams"] += pair in earlier
                own.add(pair)
                seen.pairs.add(pair)
                seen.captioned.add((ref, t.key, c))
                seen.scenes.add(t.key)
                seen.scenes.update(n.key for n in negs)
            if bar is not None:
                bar.update()
        n = max(1, stats["triplets"])
        seen.per_stream.append({**stats, "repeat_own": 100.0 * stats["repeat_own"] / n,
                                "in_earlier_streams": 100.0 * stats["in_earlier_streams"] / n})
    if bar is not None:
        bar.close()
    return seen


def overlap_report(eval_splits: Mapping[str, tuple[int, str]], streams: Sequence[StreamSpec],
                   progress: bool = False) -> dict[str, Any]:
    """What the training `streams` share with each evaluation split (name -> (seed, split)).

    Per split, in % of its queries: pair_in_training (the (reference, target)
    scene pair is a training triplet's), same_caption (and with the identical
    caption), reference_in_training / target_in_training (the scene is any
    training image: reference, target or hard negative); in % of its gallery's
    images, gallery_images_in_training, and of its distinct scenes,
    gallery_scenes_in_training; shared_scenes counts those scenes.  Per stream set:
    triplets, and repeated_pairs (% of triplets whose pair an earlier one had); per_stream, the % of a
    stream's triplets whose pair it drew before (repeat_own) or an earlier stream drew (in_earlier_streams).
    """
    seen = _scan(streams, progress)
    out: dict[str, Any] = {
        "streams": [s.__dict__ for s in streams],
        "training": {"triplets": seen.triplets, "distinct_scenes": len(seen.scenes),
                     "repeated_pairs": 100.0 * seen.repeated_pairs / max(1, seen.triplets),
                     "per_stream": seen.per_stream},
        "splits": {},
    }
    for name, (seed, split) in eval_splits.items():
        recs = list(split_groups(seed, split))
        trips = [t for rec in recs for t in rec.triplets]
        images = [key for rec in recs for key in rec.images.values()]
        gallery = gallery_scenes(seed, split)
        n = len(trips)

        def pct(flags: Iterable[bool], total: int = n) -> float:
            return 100.0 * sum(flags) / max(1, total)

        out["splits"][name] = {
            "seed": seed, "split": split, "queries": n, "gallery_scenes": len(gallery),
            "pair_in_training": pct((t["reference_key"], t["target_key"]) in seen.pairs for t in trips),
            "same_caption": pct((t["reference_key"], t["target_key"], t["caption"]) in seen.captioned for t in trips),
            "reference_in_training": pct(t["reference_key"] in seen.scenes for t in trips),
            "target_in_training": pct(t["target_key"] in seen.scenes for t in trips),
            "gallery_images_in_training": pct((k in seen.scenes for k in images), len(images)),
            "gallery_scenes_in_training": pct((k in seen.scenes for k in gallery), len(gallery)),
            "shared_scenes": len(gallery & seen.scenes),
        }
    return out
