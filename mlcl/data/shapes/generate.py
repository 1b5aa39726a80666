"""Generates the shapes benchmark's splits: scenes, captions, images, manifests.

Determinism: each group of queries (those sharing a reference image) draws
from its own RNG seeded by (seed, split, group index), so a split's bytes do
not depend on which other splits are generated, on the number of worker
processes, or on the order chunks finish; a split of n queries is also a
prefix of the same split with more queries.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Container, Iterator, Mapping, Sequence

from .config import SPLITS, load_config
from .exclusion import TrainingShare, training_exclusion
from .modify import Modification, apply, random_scene, sample_modification
from .phrasing import caption
from .refer import minimal_expression
from .render import Geometry, render_png
from .scene import Scene

log = logging.getLogger(__name__)

# Bump when the code changes the generated data for the same config;
# ensure_shapes() then regenerates splits written by older versions.
# 2: the train split avoids every evaluation gallery's scenes; the hard split.
GENERATOR_VERSION = "2"
DATASET_NAME = "shapes"


# ------------------------------------------------------------------ layout
def images_dir(root: Path, split: str) -> Path:
    return root / "images" / split


def captions_file(root: Path, split: str) -> Path:
    return root / "captions" / f"cap.{DATASET_NAME}.{split}.json"


def gallery_file(root: Path, split: str) -> Path:
    return root / "image_splits" / f"split.{DATASET_NAME}.{split}.json"


def scenes_file(root: Path, split: str) -> Path:
    return root / "scenes" / f"scene.{DATASET_NAME}.{split}.json"


def manifest_file(root: Path, split: str) -> Path:
    return root / f"manifest.{DATASET_NAME}.{split}.json"


def default_root(seed: int = 0, image_size: int = 64) -> Path:
    from mlcl.paths import default_data_dir

    return default_data_dir(f"shapes-seed{seed}-{image_size}px")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown shapes split {split!r}; expected one of {', '.join(SPLITS)}")


# ---------------------------------------------------------------- sampling
@dataclass
class GroupRecord:
    """The queries that share one reference image, and every image they add."""

    triplets: list[dict[str, Any]]
    images: dict[str, str]  # image name -> scene key


def _group_rng(seed: int, split: str, group: int) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`: stable across runs and
    # platforms (unlike hash()).
    return random.Random(f"mlcl-shapes/{seed}/{split}/{group}")


def queries_per_group(split: str) -> int:
    cfg = load_config()
    return cfg.train_queries_per_reference if split == "train" else cfg.eval_queries_per_reference


def _sample_group(rng: random.Random, novel: bool, k: int,
                  excluded: Container[str] = frozenset()) -> tuple[Scene, list[Modification]]:
    """A reference scene (object count uniform) and k edits of it with distinct
    targets (each: kind uniform among those possible here, then uniform).

    excluded: scene keys neither the reference nor a target may have: they are
    re-drawn (training: the evaluation galleries' scenes; evaluation: the
    small scenes reserved for training, mlcl.data.shapes.exclusion).
    """
    cfg = load_config()
    held_out = cfg.held_out_pairs
    kinds = cfg.novel_kinds if novel else cfg.kinds
    # Novel: the reference lacks every held-out pair and each edit creates one.
    constraints: dict[str, Any] = {"require": held_out} if novel else {"forbidden": held_out}
    counts = range(cfg.min_objects, cfg.max_objects + 1)
    for _ in range(1000):
        ref = random_scene(rng, counts[rng.randrange(len(counts))], forbidden=held_out)
        if ref.key in excluded:
            continue
        mods: list[Modification] = []
        targets: set[Scene] = set()
        for _ in range(20 * k):
            if len(mods) == k:
                break
            mod = sample_modification(rng, ref, kinds, **constraints)
            if mod is None:
                break
            t = apply(ref, mod)
            if t not in targets and t.key not in excluded:
                targets.add(t)
                mods.append(mod)
        if len(mods) == k:
            return ref, mods
    raise RuntimeError("could not sample a query group; check objects_per_scene and held_out_pairs")


def _siblings(rng: random.Random, base: Scene, count: int, avoid: set[Scene], kinds: Sequence[str],
              excluded: Container[str] = frozenset(), **constraints: Any) -> list[Scene]:
    """Up to `count` distinct one-edit variants of `base` not in `avoid` (nor with a key in `excluded`)."""
    out: list[Scene] = []
    for _ in range(20 * count):
        if len(out) == count:
            break
        mod = sample_modification(rng, base, kinds, **constraints)
        if mod is None:
            break
        s = apply(base, mod, constraints.get("limits"))
        if s not in avoid and s.key not in excluded:
            avoid.add(s)
            out.append(s)
    return out


def make_group(seed: int, split: str, group: int, keep: int | None = None) -> GroupRecord:
    """Group `group` of a split: queries group*k .. group*k+k-1 sharing one reference.

    keep < k truncates the group (the split's last one) without changing what
    is kept: everything is drawn first, so a split of n queries is a prefix of
    the same split with more queries.
    """
    if split == "hard":
        from .hard import make_hard_group

        return make_hard_group(seed, split, group, keep)
    cfg = load_config()
    rng = _group_rng(seed, split, group)
    novel = split == "novel"
    k = queries_per_group(split)
    keep = k if keep is None else keep
    # Training and evaluation are disjoint (mlcl.data.shapes.exclusion): the train split never draws a
    # scene of an evaluation gallery (its own seed's or the config's seeds'), evaluation splits never
    # a small scene of training's share.
    excluded: Container[str] = training_exclusion((seed,)) if split == "train" else TrainingShare()
    ref, mods = _sample_group(rng, novel, k, excluded)
    targets = [apply(ref, m) for m in mods]
    texts = [caption(m, ref, rng) for m in mods]
    # (role, scene, query of the group it belongs to; None = shared by all)
    roles: list[tuple[str, Scene, int | None]] = [("reference", ref, None)]
    roles += [(f"target_{i}", t, i) for i, t in enumerate(targets)]
    if split != "train":
        held_out = cfg.held_out_pairs
        avoid = {ref, *targets}
        # Image-only hard negatives: the group's other targets, and more edits
        # of the reference drawn like the queries' own (in "novel" they too
        # create held-out pairs, so holding one is no give-away).
        kinds = cfg.novel_kinds if novel else cfg.kinds
        ref_constraints: dict[str, Any] = {"require": held_out} if novel else {"forbidden": held_out}
        for j, s in enumerate(_siblings(rng, ref, cfg.reference_siblings, avoid, kinds, excluded,
                                        **ref_constraints)):
            roles.append((f"reference_sibling_{j}", s, None))
        # Text-only hard negatives: a target with one more edit that leaves the
        # cells the caption is about alone, so the caption still fits it.
        for i, (m, t) in enumerate(zip(mods, targets)):
            for j, s in enumerate(_siblings(rng, t, cfg.target_siblings, avoid, cfg.kinds, excluded,
                                            forbidden=held_out, protected=m.changed_cells())):
                roles.append((f"target_sibling_{i}_{j}", s, i))
    # Names carry no hint of an image's role: slots are shuffled per group.
    slots = list(range(len(roles)))
    rng.shuffle(slots)
    names = {role: f"{split}_{group:06d}_{slot:02d}" for (role, _, _), slot in zip(roles, slots)}

    triplets = []
    for i in range(keep):
        m, ref_expr = mods[i], None if mods[i].kind == "add" else minimal_expression(ref, mods[i].obj)
        t: dict[str, Any] = {
            "id": f"{split}-{group * k + i:06d}",
            "reference": names["reference"],
            "target": names[f"target_{i}"],
            "caption": texts[i],
            "kind": m.kind,
            "modification": m.to_json(),
            "expression": ref_expr.to_json() if ref_expr else None,
            "reference_scene": ref.to_json(),
            "target_scene": targets[i].to_json(),
            "reference_key": ref.key,
            "target_key": targets[i].key,
        }
        if novel:
            created = targets[i].pairs() & cfg.held_out_pairs
            assert len(created) == 1, (ref, m)
            t["novel_pair"] = list(next(iter(created)))
        triplets.append(t)
    images = {names[role]: s.key for role, s, owner in roles if owner is None or owner < keep}
    return GroupRecord(triplets, images)


# ----------------------------------------------------------------- workers
def _work_chunk(args: tuple[int, str, int, int, int, int, str]) -> list[GroupRecord]:
    """Build groups [start, stop) of a split of n queries; write their images into `image_dir`."""
    seed, split, image_size, n, start, stop, image_dir = args
    k = queries_per_group(split)
    out = []
    for g in range(start, stop):
        rec = make_group(seed, split, g, keep=min(k, n - g * k))
        for name, key in rec.images.items():
            with open(os.path.join(image_dir, name + ".png"), "wb") as f:
                f.write(render_png(Scene.from_key(key), image_size))
        out.append(rec)
    return out


def images_per_query(split: str) -> float:
    """Expected images a query adds to its split (for progress bars)."""
    cfg = load_config()
    k = queries_per_group(split)
    if split == "train":
        return (1 + k) / k
    partial = 2 * cfg.hard.two_edits if split == "hard" and cfg.hard.partial_negatives else 0
    return (1 + k + cfg.reference_siblings + k * (cfg.target_siblings + partial)) / k


def _default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _dump_lines(items: list[Any]) -> str:
    """A JSON list with one item per line: compact, yet greppable and diffable."""
    return "[\n" + ",\n".join(json.dumps(x) for x in items) + "\n]\n"


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def manifest_for(split: str, seed: int, image_size: int, n_triplets: int, n_images: int,
                 n_gallery: int) -> dict[str, Any]:
    cfg = load_config()
    return {
        "dataset": DATASET_NAME,
        "generator_version": GENERATOR_VERSION,
        "config_sha256": cfg.sha256,
        "split": split,
        "seed": seed,
        "image_size": image_size,
        "n_triplets": n_triplets,
        "n_images": n_images,
        "n_gallery": n_gallery,
        "held_out_pairs": sorted(list(p) for p in cfg.held_out_pairs),
        "files": {
            "images": f"images/{split}/<name>.png",
            "captions": f"captions/cap.{DATASET_NAME}.{split}.json",
            "gallery": f"image_splits/split.{DATASET_NAME}.{split}.json",
            "scenes": f"scenes/scene.{DATASET_NAME}.{split}.json",
        },
    }


@contextmanager
def _split_lock(root: Path, split: str) -> Iterator[None]:
    """Serialise generators of the same split (e.g. parallel test processes)."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(root / f".lock.{split}", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _generate_split(root: Path, split: str, seed: int, image_size: int, n: int, workers: int,
                    pool: Any, advance: Callable[[int], None]) -> None:
    tmp = root / f".tmp-{split}-{uuid.uuid4().hex[:8]}"
    tmp_images = tmp / "images"
    tmp_images.mkdir(parents=True)
    try:
        n_groups = -(-n // queries_per_group(split))
        chunk = max(10, min(500, -(-n_groups // (4 * workers))))
        tasks = [(seed, split, image_size, n, s, min(n_groups, s + chunk), str(tmp_images))
                 for s in range(0, n_groups, chunk)]
        triplets: list[dict[str, Any]] = []
        scenes: dict[str, str] = {}
        results = pool.imap(_work_chunk, tasks) if pool is not None else map(_work_chunk, tasks)
        for recs in results:  # imap keeps task order: output is independent of scheduling
            for r in recs:
                triplets.extend(r.triplets)
                scenes.update(r.images)
            advance(sum(len(r.images) for r in recs))
        names = sorted(scenes)
        # Train's "gallery" is all its images; an evaluation gallery is every
        # image of the split: references, targets and their hard negatives.
        manifest = manifest_for(split, seed, image_size, len(triplets), len(names), len(names))
        manifest_file(root, split).unlink(missing_ok=True)  # split incomplete from here on
        final_images = images_dir(root, split)
        if final_images.exists():
            shutil.rmtree(final_images)
        final_images.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_images, final_images)
        _write_text(captions_file(root, split), _dump_lines(triplets))
        _write_text(gallery_file(root, split), _dump_lines(names))
        _write_text(scenes_file(root, split), json.dumps({k: scenes[k] for k in names}, indent=0) + "\n")
        _write_text(manifest_file(root, split), json.dumps(manifest, indent=2) + "\n")  # written last
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def generate_shapes(
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    image_size: int = 64,
    sizes: Mapping[str, int] | None = None,
    splits: Sequence[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write the benchmark's splits under `out_dir` and return it as a Path.

    sizes:   triplets per split; missing entries take config defaults
             (train 20000, val/test/novel 2000).
    splits:  which splits to write (default: all four). Each split is written
             exactly as a full generation would write it.
    workers: processes for sampling and rendering (default: CPUs, at most 8;
             1 = in this process).
    """
    return _generate(out_dir, seed, image_size, sizes, splits, workers, progress, lock=True)


def _generate(out_dir: str | os.PathLike[str], seed: int, image_size: int, sizes: Mapping[str, int] | None,
              splits: Sequence[str] | None, workers: int | None, progress: bool, lock: bool) -> Path:
    cfg = load_config()
    root = Path(out_dir).expanduser()
    Geometry(image_size)  # validates the size before any work
    todo = list(SPLITS if splits is None else splits)
    for s in todo:
        _check_split(s)
    n_per_split = dict(cfg.default_sizes)
    for s, n in (sizes or {}).items():
        _check_split(s)
        if int(n) < 1:
            raise ValueError(f"sizes[{s!r}] must be a positive number of triplets, got {n}")
        n_per_split[s] = int(n)
    workers = _default_workers() if workers is None else max(1, int(workers))
    total = round(sum(n_per_split[s] * images_per_query(s) for s in todo))
    if workers > 1 and total < 1500:
        workers = 1  # starting processes would cost more than it saves

    if "train" in todo:
        training_exclusion((seed,))  # computed once here: forked workers inherit it

    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", desc="shapes", disable=not progress)
    pool = None
    try:
        if workers > 1:
            import multiprocessing

            pool = multiprocessing.get_context().Pool(workers)
        for s in todo:
            bar.set_description(f"shapes {s}")
            with _split_lock(root, s) if lock else nullcontext():
                _generate_split(root, s, seed, image_size, n_per_split[s], workers, pool, bar.update)
            log.info("wrote shapes split %s (%d triplets) under %s", s, n_per_split[s], root)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        bar.close()
    return root


# ------------------------------------------------------------------ ensure
def read_manifest(root: Path, split: str) -> dict[str, Any] | None:
    path = manifest_file(root, split)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def split_status(root: Path, split: str, seed: int, image_size: int, n: int | None = None) -> str:
    """'ok', 'missing', 'stale' (older generator/config or another size), or
    'conflict: ...' (another seed or image size lives at this root)."""
    m = read_manifest(root, split)
    if m is None:
        return "missing"
    if m.get("seed") != seed or m.get("image_size") != image_size:
        return (f"conflict: {manifest_file(root, split)} holds seed={m.get('seed')}, "
                f"image_size={m.get('image_size')}; asked for seed={seed}, image_size={image_size}")
    cfg = load_config()
    if m.get("generator_version") != GENERATOR_VERSION or m.get("config_sha256") != cfg.sha256:
        return "stale"
    if n is not None and m.get("n_triplets") != n:
        return "stale"
    d = images_dir(root, split)
    files = (captions_file(root, split), gallery_file(root, split), scenes_file(root, split))
    if not all(f.is_file() for f in files) or not d.is_dir():
        return "missing"
    if sum(1 for _ in os.scandir(d)) != m.get("n_images"):
        return "missing"
    return "ok"


def ensure_shapes(
    root: str | os.PathLike[str] | None = None,
    split: str = "test",
    seed: int = 0,
    image_size: int = 64,
    n: int | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> Path:
    """Make sure `split` exists under `root` (generating only that split if
    needed) and return root. Idempotent and cheap when the split is there.

    root: default mlcl.paths.default_data_dir(f"shapes-seed{seed}-{image_size}px").
    n:    triplets required (default: the config's default size for the split).
    """
    _check_split(split)
    root_path = default_root(seed, image_size) if root is None else Path(root).expanduser()
    want = load_config().default_sizes[split] if n is None else n
    status = split_status(root_path, split, seed, image_size, want)
    if status.startswith("conflict"):
        raise ValueError(f"cannot use {root_path} for shapes seed={seed}: {status[len('conflict: '):]}")
    if status != "ok":
        with _split_lock(root_path, split):
            # Another process may have written it while we waited for the lock.
            if split_status(root_path, split, seed, image_size, want) != "ok":
                log.info("generating shapes split %s under %s (%s)", split, root_path, status)
                _generate(root_path, seed, image_size, {split: want}, [split], workers, progress, lock=False)
    return root_path
