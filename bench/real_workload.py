"""The real workload: photo-sized JPEGs and CLIP-size backbones, on the CPU or a GPU, bare and through the product.

For each backbone (`--backbones`: `bundled` = the shipped shapes model; open_clip names such as
`RN50x4` (the paper's, 640-d, combiner projection 2560 / hidden 5120) and `ViT-B-32` with random
weights: speed does not depend on them) and each precision (`--precisions`):

  bare forward            the image tower + gallery vector on preprocessed batches, in this process; swept
                          over memory format, torch threads (CPU) and batch size: the fastest is kept
  bare decode + forward   decode the JPEGs (draft, as served), pad/resize/crop, forward, one process
  mlcl encode             `mlcl encode PHOTOS --out DIR` in a subprocess (DataLoader decode workers)
  Flow /index             `mlcl serve` (a Flow YAML with this checkpoint, precision, threads and batch)
                          and `mlcl index PHOTOS` against it: images/s as `mlcl index` reports it
  Flow /index --by-path   the same with `mlcl index --by-path`: the Flow reads the files (image_roots), nothing
                          is copied through the gateway
  Flow CPU ceiling        (CPU only) where the CPU went during `mlcl index` (encoder, its decode workers, gateway
                          + indexer, the client without its start) and the bare forward's CPU seconds over
                          their total: the Flow / bare ratio this machine allows when every core is busy, since
                          decoding and moving the photos cost CPU the bare forward does not spend
  hybrid query            p50/p99 of one composed query (a photo + a caption) at a time over gRPC
  also                    Flow start time ("ready in"), encoder RSS (with its decode workers), checkpoint size
  parity (`--parity`)     `mlcl.eval.precision_parity` of each non-fp32 precision against fp32

Photos: `bench/photos.py`, 4000x3000 quality 90, gradients plus pixel noise (SD 20), ~5.8 MB each.

    .venv/bin/python bench/real_workload.py                                  # CPU: bundled, RN50x4, ViT-B-32
    .venv/bin/python bench/real_workload.py --backbones RN50x4 --photos 40
    .venv/bin/python bench/real_workload.py --device cuda --precisions fp32 fp16 bf16 --parity --photos 400
    .venv/bin/python bench/real_workload.py --quick                          # seconds: a smoke test

Writes `bench/results/real_workload.json` (`--name` to change; `.quick.json` with --quick) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    REPO_ROOT, Timer, machine_info, machine_line, markdown_table, percentiles, quiet_jina, write_results,
)
from bench.photos import photo_folder  # noqa: E402

quiet_jina()
MLCL = [sys.executable, "-m", "mlcl_cli"]
CAPTIONS = ["make it red with short sleeves", "the same but darker and plain", "add a white collar",
            "make the pattern striped", "a brighter, more colourful version"]


# --------------------------------------------------------------- set-up
def make_checkpoint(backbone: str, folder: Path) -> Path:
    """The bundled model, or a random-weight MLCL model of `backbone` (authors' combiner: 4D / 8D) saved in `folder`."""
    if backbone == "bundled":
        from mlcl.paths import DEFAULT_CHECKPOINT

        return DEFAULT_CHECKPOINT
    import torch

    from mlcl.model import build_model, save_checkpoint

    path = folder / f"random-{backbone}.pt"
    if not path.is_file():
        torch.manual_seed(0)
        save_checkpoint(build_model(backbone), path)
    return path


def load_pixels(model: Any, paths: Sequence[Path], draft: bool = True) -> Tuple[List[Any], float]:
    """The photos as the model's uint8 input (decoded as served) and the decode seconds per image."""
    from mlcl.image_decode import open_image

    out = []
    with Timer() as t:
        for p in paths:
            out.append(model.pixels(open_image(p, model.pixels, draft=draft)))
    return out, t.s / max(1, len(paths))


# --------------------------------------------------------------- bare
def time_forward(model: Any, batch: Any, reps: int) -> float:
    """Images/s of `encode_image` on a preprocessed batch: one warm-up call, then the best of `reps`."""
    import torch

    with torch.inference_mode():
        model.encode_image(batch)
        if batch.device.type == "cuda":
            torch.cuda.synchronize()
        best = float("inf")
        for _ in range(reps):
            start = time.perf_counter()
            model.encode_image(batch)
            if batch.device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    return len(batch) / best


def sweep_forward(model: Any, pixels: List[Any], device: str, precision: str, args: argparse.Namespace) -> Dict[str, Any]:
    """Memory format, then torch threads (CPU), then batch size; each step keeps the fastest. Rows: every config."""
    import torch

    from mlcl.model.inference import prepare_for_inference

    def batch_of(n: int) -> Any:
        chosen = [pixels[i % len(pixels)] for i in range(n)]
        return model.images_from_pixels(chosen, device)

    rows: List[Dict[str, Any]] = []

    def run(fmt: str, threads: Optional[int], size: int) -> float:
        if threads:
            torch.set_num_threads(threads)
        prepare_for_inference(model, device, precision, fmt)
        rate = time_forward(model, batch_of(size), args.reps)
        rows.append({"memory_format": fmt, "threads": threads or torch.get_num_threads(), "batch": size,
                     "channels_last": model.inference.channels_last, "images_per_s": rate})
        print(f"  bare forward {precision} {fmt} threads {threads or torch.get_num_threads()} batch {size}: "
              f"{rate:.2f} images/s", file=sys.stderr, flush=True)
        return rate

    cpus = len(os.sched_getaffinity(0))
    threads = cpus if device == "cpu" else None
    size = args.batch_sizes[len(args.batch_sizes) // 2]
    formats = ["contiguous", "channels_last"] if not args.quick else ["auto"]
    best_fmt = max(formats, key=lambda f: run(f, threads, size))
    best_threads = threads
    if device == "cpu" and not args.quick:
        candidates = sorted({1, cpus} - {threads})
        rates = {threads: max(r["images_per_s"] for r in rows if r["memory_format"] == best_fmt)}
        for t in candidates:
            rates[t] = run(best_fmt, t, size)
        best_threads = max(rates, key=rates.get)
    rates = {size: max(r["images_per_s"] for r in rows if r["memory_format"] == best_fmt and r["threads"] == (best_threads or r["threads"]) and r["batch"] == size)}
    for b in args.batch_sizes:
        if b != size and not args.quick:
            rates[b] = run(best_fmt, best_threads, b)
    best_batch = max(rates, key=rates.get)
    best = {"memory_format": best_fmt, "threads": best_threads, "batch": best_batch, "images_per_s": rates[best_batch]}
    prepare_for_inference(model, device, precision, best_fmt)
    if best_threads:
        torch.set_num_threads(best_threads)
    return {"configs": rows, "best": best}


def bare_decode_forward(model: Any, paths: Sequence[Path], device: str, batch: int) -> Dict[str, Any]:
    """Decode (draft) + preprocess + forward in this process, batch by batch, as one pipeline would."""
    import torch

    from mlcl.image_decode import open_image

    with Timer() as t, torch.inference_mode():
        for s in range(0, len(paths), batch):
            pixels = [model.pixels(open_image(p, model.pixels)) for p in paths[s : s + batch]]
            model.encode_image(model.images_from_pixels(pixels, device))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return {"images": len(paths), "seconds": t.s, "images_per_s": len(paths) / t.s}


def parity(model: Any, pixels: List[Any], device: str, precision: str) -> Dict[str, Any]:
    from mlcl.eval.precision_parity import precision_parity

    gallery = model.images_from_pixels(pixels, device)
    n = max(1, len(pixels) // 4)
    texts = [CAPTIONS[i % len(CAPTIONS)] for i in range(n)]
    return precision_parity(model, gallery, gallery[:n], texts, precision)


# --------------------------------------------------------------- product
def run_encode(photos: Path, ckpt: Path, device: str, precision: str, best: Dict[str, Any], work: Path) -> Dict[str, Any]:
    out = work / f"vectors-{ckpt.stem}-{precision}"
    cmd = MLCL + ["encode", str(photos), "--out", str(out), "--checkpoint", str(ckpt), "--device", device,
                  "--precision", precision, "--memory-format", best["memory_format"], "--batch-size", str(best["batch"]),
                  "--no-progress"]
    if best.get("threads"):
        cmd += ["--threads", str(best["threads"])]
    with Timer() as t:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"mlcl encode failed: {done.stderr.strip()[-600:]}")
    m = re.search(r"encoded (\d+) images in ([\d.]+) s \(([\d.]+) images/s\)", done.stdout)
    workers = re.search(r"(\d+) decode workers", done.stdout)
    return {"images": int(m.group(1)), "seconds": float(m.group(2)), "images_per_s": float(m.group(3)),
            "wall_s_with_start": t.s, "decode_workers": int(workers.group(1)) if workers else None}


def flow_yaml(work: Path, ckpt: Path, device: str, precision: str, best: Dict[str, Any], photos: Path) -> Path:
    """flows/flow.yml with this encoder's settings (what a user would put in config.yml)."""
    import yaml

    from mlcl_cli.flows import flow_config

    encoder = {"checkpoint": str(ckpt), "device": device, "precision": precision, "memory_format": best["memory_format"],
               "batch_size": int(best["batch"]), "torch_threads": best.get("threads"),
               "image_roots": [str(photos.resolve())]}  # `mlcl index --by-path` (as `mlcl serve --image-root`)
    config = flow_config(encoder_with=encoder)
    path = work / f"flow-{ckpt.stem}-{precision}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # jina wants `jtype` first
    return path


def encoder_rss(serve_pid: int) -> Dict[str, Optional[float]]:
    """RSS (MB) of the Flow's encoder process and of its decode workers."""
    import psutil

    procs = psutil.Process(serve_pid).children(recursive=True)
    workers = [p for p in procs if "mlcl_executor.decode_worker" in " ".join(p.cmdline())]
    encoder = workers[0].parent() if workers else max(procs, key=lambda p: p.memory_info().rss, default=None)
    mb = lambda p: p.memory_info().rss / 2**20  # noqa: E731
    return {"encoder_rss_mb": mb(encoder) if encoder else None,
            "decode_workers_rss_mb": sum(mb(w) for w in workers), "decode_workers": len(workers)}


def flow_cpu_seconds(serve_pid: int) -> Dict[int, Tuple[str, float]]:
    """CPU seconds (user + system) so far of each process of the Flow, by pid: (role, seconds)."""
    import psutil

    procs = psutil.Process(serve_pid).children(recursive=True)
    workers = {p.pid for p in procs if "mlcl_executor.decode_worker" in " ".join(p.cmdline())}
    encoder = psutil.Process(next(iter(workers))).ppid() if workers else None
    out: Dict[int, Tuple[str, float]] = {}
    for p in procs:
        try:
            c = p.cpu_times()
        except psutil.Error:
            continue
        role = "decode_workers" if p.pid in workers else "encoder" if p.pid == encoder else "gateway_indexer"
        out[p.pid] = (role, c.user + c.system)
    return out


def cpu_during(before: Dict[int, Tuple[str, float]], after: Dict[int, Tuple[str, float]], client_s: float) -> Dict[str, float]:
    """CPU seconds per role between two `flow_cpu_seconds` snapshots, the client's, and their total."""
    roles: Dict[str, float] = {"encoder": 0.0, "decode_workers": 0.0, "gateway_indexer": 0.0}
    for pid, (role, seconds) in after.items():
        roles[role] += seconds - before.get(pid, (role, 0.0))[1]
    roles["client"] = client_s
    roles["total"] = sum(roles.values())
    return roles


def children_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited-for subprocesses: `mlcl index` once it exits
    return usage.ru_utime + usage.ru_stime


def index_run(photos: Path, grpc: int, serve_pid: int, by_path: bool) -> Dict[str, Any]:
    """`mlcl index PHOTOS` (`--by-path`: the Flow reads the files) into the Flow: images/s and where the CPU went."""
    cpu_before, client_before = flow_cpu_seconds(serve_pid), children_cpu_s()
    done = subprocess.run(MLCL + ["index", str(photos), "--port", str(grpc), "--no-progress"] + (["--by-path"] if by_path else []),
                          capture_output=True, text=True, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"mlcl index failed: {done.stderr.strip()[-600:]}")
    m = re.search(r"indexed (\d+) of \d+ images in ([\d.]+) s \(([\d.]+) images/s\)", done.stdout)
    cpu_after, client_after = flow_cpu_seconds(serve_pid), children_cpu_s()
    # The client's start (imports, connecting) is not in its images/s: `mlcl count` costs the same, minus it.
    subprocess.run(MLCL + ["count", "--port", str(grpc)], capture_output=True, cwd=REPO_ROOT, check=True)
    client_start_s = children_cpu_s() - client_after
    return {"index_images": int(m.group(1)), "index_s": float(m.group(2)), "index_images_per_s": float(m.group(3)),
            "index_cpu_s": cpu_during(cpu_before, cpu_after, max(0.0, client_after - client_before - client_start_s))}


def run_flow(photos: Path, ckpt: Path, device: str, precision: str, best: Dict[str, Any], work: Path,
             queries: int) -> Dict[str, Any]:
    from mlcl_cli.flows import free_port

    grpc, http = free_port(), free_port()
    flow = flow_yaml(work, ckpt, device, precision, best, photos)
    log = open(work / f"serve-{ckpt.stem}-{precision}.log", "w+")
    t0 = time.perf_counter()
    serve = subprocess.Popen(MLCL + ["serve", "--flow", str(flow), "--grpc-port", str(grpc), "--http-port", str(http),
                                     "--workspace", str(work / f"ws-{ckpt.stem}-{precision}")],
                             stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True)
    try:
        ready = None
        while ready is None and time.perf_counter() - t0 < 600:
            log.seek(0)
            text = log.read()
            found = re.search(r"ready in ([\d.]+) s", text)
            if found:
                ready = float(found.group(1))
            elif serve.poll() is not None:
                raise RuntimeError(f"mlcl serve exited: {text.strip()[-600:]}")
            else:
                time.sleep(0.5)
        if ready is None:
            raise RuntimeError("mlcl serve was not ready within 600 s")
        out: Dict[str, Any] = {"start_s": ready, "start_wall_s": time.perf_counter() - t0}
        out.update(index_run(photos, grpc, serve.pid, by_path=False))
        by_path = index_run(photos, grpc, serve.pid, by_path=True)  # the same ids again: replaced, the same work
        out.update({f"by_path_{k}": v for k, v in by_path.items()})
        out.update(encoder_rss(serve.pid))
        out["query"] = hybrid_queries(grpc, sorted(photos.glob("*.jpg")), queries)
        return out
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, 9)
        log.close()


def hybrid_queries(port: int, paths: Sequence[Path], n: int) -> Dict[str, Any]:
    """One composed query (photo + caption) at a time over gRPC: latency percentiles (ms), after 2 warm-up queries."""
    from docarray import DocList

    from mlcl_executor.schemas import QueryDoc
    from mlcl_cli.client import grpc_client

    client = grpc_client("localhost", port)
    images = [p.read_bytes() for p in paths[: max(1, min(len(paths), 8))]]
    times = []
    for i in range(n + 2):
        doc = QueryDoc(id=f"q{i}", image=images[i % len(images)], text=CAPTIONS[i % len(CAPTIONS)])
        start = time.perf_counter()
        answer = client.post("/search", DocList[QueryDoc]([doc]), parameters={"limit": 10}, return_type=DocList[QueryDoc])
        elapsed = time.perf_counter() - start
        if answer[0].error:
            raise RuntimeError(f"query failed: {answer[0].error}")
        if i >= 2:
            times.append(elapsed * 1e3)
    return percentiles(times)


# --------------------------------------------------------------- main
def measure(backbone: str, precision: str, args: argparse.Namespace, photos: Path, work: Path) -> Dict[str, Any]:
    import torch

    from mlcl.model import load_checkpoint
    from mlcl.device import resolve_device

    from bench.common import load_average

    load_start = load_average()
    device = resolve_device(args.device)
    ckpt = make_checkpoint(backbone, work)
    model = load_checkpoint(ckpt)
    paths = sorted(photos.glob("*.jpg"))
    print(f"{backbone} {precision} on {device}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
          f"{model.image_size} px, dim {model.embed_dim}", file=sys.stderr, flush=True)
    pixels, decode_s = load_pixels(model, paths[: args.sweep_images])
    row: Dict[str, Any] = {
        "backbone": backbone, "precision": precision, "device": device, "random_weights": backbone != "bundled",
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6, "image_size": model.image_size,
        "embed_dim": model.embed_dim, "combiner": model.config.get("combiner"),
        "checkpoint_mb": ckpt.stat().st_size / 2**20, "decode_ms_per_image": decode_s * 1e3,
    }
    row["bare_forward"] = sweep_forward(model, pixels, device, precision, args)
    best = row["bare_forward"]["best"]
    row["bare_decode_forward"] = bare_decode_forward(model, paths, device, best["batch"])
    if args.parity and precision != "fp32":
        row["parity"] = parity(model, pixels, device, precision)
    del model, pixels
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    if "encode" not in args.skip:
        row["encode"] = run_encode(photos, ckpt, device, precision, best, work)
    if "flow" not in args.skip:
        row["flow"] = run_flow(photos, ckpt, device, precision, best, work, args.queries)
        row["flow_over_bare_forward"] = row["flow"]["index_images_per_s"] / best["images_per_s"]
        if device == "cpu":
            # The Flow's ceiling on this machine: the rate at which all its cores would spend the CPU seconds
            # the Flow's processes and the client spent (decoding and moving the photos are not in the bare
            # forward), over the bare forward's rate.
            cores = len(os.sched_getaffinity(0))

            def ceiling(cpu: Dict[str, float]) -> float:
                return row["flow"]["index_images"] * cores / cpu["total"] / best["images_per_s"]

            row["flow_cpu_ceiling"] = ceiling(row["flow"]["index_cpu_s"])
            row["flow_by_path_cpu_ceiling"] = ceiling(row["flow"]["by_path_index_cpu_s"])
        row["flow_by_path_over_bare_forward"] = row["flow"]["by_path_index_images_per_s"] / best["images_per_s"]
    if "encode" in row:
        row["encode_over_bare_forward"] = row["encode"]["images_per_s"] / best["images_per_s"]
    row["load_average_1_5_15"] = {"start": load_start, "end": load_average()}  # the machine may be shared
    return row


def table(rows: List[Dict[str, Any]]) -> str:
    headers = ["backbone", "precision", "device", "bare forward img/s (format, threads, batch)", "bare decode+forward img/s",
               "mlcl encode img/s", "Flow /index img/s", "Flow / bare", "Flow CPU ceiling", "Flow /index --by-path img/s (/ bare, ceiling)", "query p50 / p99 ms", "encoder RSS MB",
               "checkpoint MB", "start s", "load (1 min) start / end"]
    out = []
    for r in rows:
        b = r["bare_forward"]["best"]
        f = r.get("flow", {})
        q = f.get("query", {})
        out.append([
            r["backbone"], r["precision"], r["device"],
            f"{b['images_per_s']:.3g} ({b['memory_format']}, {b['threads'] or '-'}, {b['batch']})",
            r["bare_decode_forward"]["images_per_s"], r.get("encode", {}).get("images_per_s"),
            f.get("index_images_per_s"), r.get("flow_over_bare_forward"), r.get("flow_cpu_ceiling"),
            "{:.3g} ({:.3g}, {})".format(f["by_path_index_images_per_s"], r["flow_by_path_over_bare_forward"],
                                         "-" if r.get("flow_by_path_cpu_ceiling") is None else f"{r['flow_by_path_cpu_ceiling']:.3g}")
            if "by_path_index_images_per_s" in f else None,
            f"{q['p50']:.0f} / {q['p99']:.0f}" if q else None,
            f.get("encoder_rss_mb"), r["checkpoint_mb"], f.get("start_s"),
            "{} / {}".format(*[(x or [None])[0] for x in (r["load_average_1_5_15"]["start"], r["load_average_1_5_15"]["end"])]),
        ])
    return markdown_table(headers, out)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", nargs="+", default=["bundled", "RN50x4", "ViT-B-32"])
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "fp16", "bf16"])
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    p.add_argument("--photos", type=int, default=40, help="photos in the folder indexed and encoded")
    p.add_argument("--photo-size", type=int, nargs=2, default=(4000, 3000), metavar=("W", "H"))
    p.add_argument("--sweep-images", type=int, default=16, help="photos decoded once for the bare forward sweep")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--reps", type=int, default=2, help="timed forward calls per config (best kept)")
    p.add_argument("--queries", type=int, default=20, help="hybrid queries timed through the Flow")
    p.add_argument("--parity", action="store_true", help="check each non-fp32 precision against fp32")
    p.add_argument("--skip", nargs="*", default=[], choices=["encode", "flow"])
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--name", default="real_workload", help="results file bench/results/NAME.json")
    p.add_argument("--out-dir", type=Path, default=None, help="results folder (default: bench/results)")
    p.add_argument("--quick", action="store_true", help="bundled model, 6 small photos, no sweeps: a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.backbones, args.photos, args.photo_size = ["bundled"], 6, (800, 600)
        args.sweep_images, args.batch_sizes, args.reps, args.queries = 4, [4], 1, 3
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    photos = photo_folder(args.photos, tuple(args.photo_size))
    info = machine_info()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlcl-real-workload-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for backbone in args.backbones:
            for precision in args.precisions:
                rows.append(measure(backbone, precision, args, photos, work))
    payload = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "photos": {"folder": str(photos), "n": args.photos, "size": list(args.photo_size),
                          "mean_mb": sum(p.stat().st_size for p in photos.glob("*.jpg")) / args.photos / 2**20},
               "machine": info, "rows": rows}
    path = write_results(args.name, payload, out_dir=args.out_dir, quick=args.quick)
    print(f"\n{machine_line(info)}\n{args.photos} photos {args.photo_size[0]}x{args.photo_size[1]} "
          f"({payload['photos']['mean_mb']:.1f} MB each)\n")
    print(table(rows))
    for r in rows:
        if "parity" in r:
            print(f"parity {r['backbone']} {r['precision']}: " + json.dumps({k: r["parity"][k] for k in (
                "gallery_cosine_min", "query_cosine_min", "topk_overlap_mean", "ok")}))
    print(f"\nresults: {path}")
    return payload


if __name__ == "__main__":
    main()
