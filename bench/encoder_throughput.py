"""Encoder throughput: the Flow over gRPC against the bare model in one process, on the same inputs, in one run.

Inputs: shapes test-gallery images (PNG bytes, what a Python gRPC client sends) and shapes captions.
Work per item: hybrid query = reference image + caption -> fused vector; gallery = image -> vector.

Measured (each in items/s):
  bare forward      the model alone: `encode_query` / `encode_image` on preprocessed tensors, batches of 32
  bare pipeline     decode PNG + preprocess + forward in this process (the work the encoder does per item)
  executor direct   MLCLEncoder's endpoint called in this process (no Jina runtime, no network)
  flow gRPC         `--clients` client processes posting to the Flow's `/encode` (parameters as=query /
                    as=gallery; the encoder only, no index writes), in two ways (`--modes`):
                    stream      one post of all items, sent as requests of 32 with several in flight
                                (how a client encodes or indexes a collection: the stages overlap)
                    sequential  one post per batch of 32, each awaited (every stage in series: latency)
Ratio = flow gRPC / bare decode+forward (target >= 0.90, the same work in one process), also given
against the bare forward.

Profile (`--profile`, on by default): where a batch of 32 spends its time outside the model: client
serialisation, payload size, the executor's decode/preprocess/forward, and cProfile's top functions of the
executor call.

    .venv/bin/python bench/encoder_throughput.py              # 1024 items per kind, 4 clients
    .venv/bin/python bench/encoder_throughput.py --quick
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing as mp
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    Timer, bench_checkpoint, machine_info, machine_line, markdown_table, percentiles, progress, quiet_jina, write_results,
)

quiet_jina()
KINDS = ("query", "gallery")


# ------------------------------------------------------------------ inputs
def load_inputs(n: int) -> Tuple[List[bytes], List[str]]:
    """n (PNG bytes, caption) pairs from the shapes test split (cycled if n exceeds it)."""
    from mlcl.data.shapes import ShapesDataset, ensure_shapes

    ds = ShapesDataset(ensure_shapes(split="test"), "test")
    triplets = ds.triplets
    images = [ds.image_path(triplets[i % len(triplets)]["reference"]).read_bytes() for i in range(n)]
    texts = [triplets[i % len(triplets)]["caption"] for i in range(n)]
    return images, texts


def make_docs(kind: str, images: List[bytes], texts: List[str], start: int = 0):
    from docarray import DocList

    from mlcl_executor.schemas import QueryDoc

    if kind == "query":
        return DocList[QueryDoc]([QueryDoc(id=f"q{start + i}", image=im, text=t) for i, (im, t) in enumerate(zip(images, texts))])
    return DocList[QueryDoc]([QueryDoc(id=f"g{start + i}", image=im) for i, im in enumerate(images)])


# ------------------------------------------------------------------ bare
def bare(model: Any, kind: str, images: List[bytes], texts: List[str], batch: int, decode: bool) -> Dict[str, Any]:
    """Items/s of the model alone (decode=False: tensors preprocessed beforehand) or with PNG decode + preprocess."""
    import torch
    from PIL import Image

    def prep(data: bytes) -> torch.Tensor:
        with Image.open(io.BytesIO(data)) as im:
            return model.preprocess(im.convert("RGB"))

    tensors = None if decode else [prep(b) for b in images]
    n = len(images)
    with torch.inference_mode():
        # warm-up
        x = torch.stack([prep(b) for b in images[:batch]])
        model.encode_query(x, texts[:batch]) if kind == "query" else model.encode_image(x)
        batch_times = []
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        for s in progress(range(0, n, batch), desc=f"bare {kind} {'pipeline' if decode else 'forward'}"):
            tb = time.perf_counter()
            x = torch.stack([prep(b) for b in images[s : s + batch]]) if decode else torch.stack(tensors[s : s + batch])
            v = model.encode_query(x, texts[s : s + batch]) if kind == "query" else model.encode_image(x)
            v.float().cpu().numpy()
            batch_times.append(time.perf_counter() - tb)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    return {"items": n, "seconds": wall, "items_per_s": n / wall, "batch_ms": percentiles([t * 1e3 for t in batch_times]),
            "cpu_ms_per_batch": cpu * 1e3 / len(batch_times)}


# ------------------------------------------------------------------ flow clients
def _client_proc(port: int, kind: str, images: List[bytes], texts: List[str], batch: int, ready: Any, start: Any,
                 out: Any, idx: int, protocol: str, mode: str = "stream") -> None:
    quiet_jina()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from docarray import DocList
    from jina import Client

    from mlcl_executor.schemas import QueryDoc

    client = Client(host="127.0.0.1", port=port, protocol=protocol)
    batches = [make_docs(kind, images[s : s + batch], texts[s : s + batch], start=idx * 10**6 + s) for s in range(0, len(images), batch)]
    params = {"as": kind}
    client.post("/encode", inputs=batches[0], parameters=params, return_type=DocList[QueryDoc])  # connect + warm-up
    ready.put(idx)
    start.wait(timeout=300)
    lat = []
    errors = 0
    cpu0 = sum(os.times()[:2])
    t0 = time.perf_counter()
    if mode == "stream":
        # One post of every item: Jina's client sends them as requests of `batch` with several in flight, so
        # serialisation, gateway, encoder and indexer overlap (how a client encodes a collection).
        every = DocList[QueryDoc]([d for docs in batches for d in docs])
        res = client.post("/encode", inputs=every, parameters=params, request_size=batch, return_type=DocList[QueryDoc])
        errors += sum(1 for d in res if d.embedding is None) + len(every) - len(res)
    else:
        # One post per batch, each waiting for its answer: every stage in series (request latency).
        for docs in batches:
            tb = time.perf_counter()
            res = client.post("/encode", inputs=docs, parameters=params, request_size=batch, return_type=DocList[QueryDoc])
            lat.append(time.perf_counter() - tb)
            errors += sum(1 for d in res if d.embedding is None)
    t1 = time.perf_counter()
    out.put({"idx": idx, "t0": t0, "t1": t1, "items": len(images), "lat": lat, "errors": errors, "batches": len(batches),
             "cpu_s": sum(os.times()[:2]) - cpu0})


def flow_pids(flow: Any) -> Dict[str, int]:
    """name -> pid of the Flow's processes (jina internals; empty when they change)."""
    pids: Dict[str, int] = {}
    try:
        for name, dep in flow._deployment_nodes.items():
            for shard_id, shard in dep.shards.items():
                for j, pod in enumerate(shard._pods):
                    pids[f"{name}" + (f"/{shard_id}" if len(dep.shards) > 1 else "") + (f"/{j}" if len(shard._pods) > 1 else "")] = pod.worker.pid
    except Exception:  # noqa: BLE001 - private API: measure without it
        return {}
    return pids


def _cpu_s(pid: int, children: bool = False) -> float:
    """CPU seconds of a process, or (children=True) of all its child processes (the encoder's decode workers)."""
    import psutil

    try:
        procs = psutil.Process(pid).children(recursive=True) if children else [psutil.Process(pid)]
        return sum(t.user + t.system for t in (p.cpu_times() for p in procs))
    except Exception:  # noqa: BLE001
        return float("nan")


def _cpu_all(pids: Dict[str, int]) -> Dict[str, float]:
    """CPU seconds by process: each of the Flow's processes, and the child processes of each (`NAME+children`)."""
    out = {name: _cpu_s(pid) for name, pid in pids.items()}
    out.update({f"{name}+children": _cpu_s(pid, children=True) for name, pid in pids.items()})
    return out


def flow_throughput(port: int, kind: str, images: List[bytes], texts: List[str], batch: int, clients: int,
                    protocol: str = "grpc", timeout_s: float = 600.0, pids: Optional[Dict[str, int]] = None,
                    mode: str = "stream") -> Dict[str, Any]:
    pids = pids or {}
    ctx = mp.get_context("spawn")
    ready, out, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    per = len(images) // clients
    procs = [ctx.Process(target=_client_proc, args=(port, kind, images[i * per : (i + 1) * per], texts[i * per : (i + 1) * per],
                                                    batch, ready, start, out, i, protocol, mode), daemon=True) for i in range(clients)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=300)
    cpu0 = _cpu_all(pids)
    start.set()
    results = [out.get(timeout=timeout_s) for _ in procs]
    cpu1 = _cpu_all(pids)
    for p in procs:
        p.join(timeout=30)
    t0 = min(r["t0"] for r in results)
    t1 = max(r["t1"] for r in results)
    items = sum(r["items"] for r in results)
    lat = [x * 1e3 for r in results for x in r["lat"]]
    n_batches = sum(r["batches"] for r in results)
    # children that did no work (none, or a resource tracker) are left out of the table
    cpu = {name: (cpu1[name] - cpu0[name]) * 1e3 / n_batches for name in cpu0
           if not name.endswith("+children") or cpu1[name] - cpu0[name] > 0.01}
    cpu["clients"] = sum(r["cpu_s"] for r in results) * 1e3 / n_batches
    return {"clients": clients, "mode": mode, "items": items, "seconds": t1 - t0, "items_per_s": items / (t1 - t0),
            "request_ms": percentiles(lat) if lat else None, "errors": sum(r["errors"] for r in results),
            "cpu_ms_per_batch": cpu}


# ------------------------------------------------------------------ profile
def profile_executor(ckpt: Path, images: List[bytes], texts: List[str], batch: int, reps: int) -> Dict[str, Any]:
    """Where a batch of 32 goes: (de)serialisation, payload, decode+preprocess, forward; cProfile of the endpoint."""
    import asyncio

    import torch
    from docarray import DocList

    from mlcl_executor import MLCLEncoder
    from mlcl_executor.image_source import ImagePolicy, load_image
    from mlcl_executor.schemas import QueryDoc

    enc = MLCLEncoder(checkpoint=str(ckpt))
    out: Dict[str, Any] = {}
    for kind in KINDS:
        docs = make_docs(kind, images[:batch], texts[:batch])
        t = {"to_protobuf": [], "from_protobuf": [], "executor": [], "decode_preprocess": [], "forward": [],
             "response_to_protobuf": []}
        size_req = size_resp = 0
        params = {"as": kind}
        asyncio.run(enc.encode(docs=make_docs(kind, images[:batch], texts[:batch]), parameters=params))  # warm-up
        for _ in range(reps):
            docs = make_docs(kind, images[:batch], texts[:batch])
            with Timer() as tm:
                pb = docs.to_protobuf()
            t["to_protobuf"].append(tm.s)
            raw = pb.SerializeToString()
            size_req = len(raw)
            with Timer() as tm:
                from docarray.proto import DocListProto

                pb2 = DocListProto()
                pb2.ParseFromString(raw)
                docs2 = DocList[QueryDoc].from_protobuf(pb2)
            t["from_protobuf"].append(tm.s)
            with Timer() as tm:
                res = asyncio.run(enc.encode(docs=docs2, parameters=params))
            t["executor"].append(tm.s)
            res = res if res is not None else docs2
            with Timer() as tm:
                size_resp = len(res.to_protobuf().SerializeToString())
            t["response_to_protobuf"].append(tm.s)
            policy = ImagePolicy.create()
            with Timer() as tm:
                x = torch.stack([enc.model.preprocess(load_image(b, policy)) for b in images[:batch]])
            t["decode_preprocess"].append(tm.s)
            with Timer() as tm, torch.inference_mode():
                enc.model.encode_query(x, texts[:batch]) if kind == "query" else enc.model.encode_image(x)
            t["forward"].append(tm.s)
        prof = cProfile.Profile()
        # fresh documents each time: an answer has its image dropped, so encoding it again would be text-only
        batches = [make_docs(kind, images[:batch], texts[:batch]) for _ in range(max(1, reps // 2))]
        prof.enable()
        for docs in batches:
            asyncio.run(enc.encode(docs=docs, parameters=params))
        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(18)
        out[kind] = {
            "batch": batch,
            "ms": {k: 1e3 * sorted(v)[len(v) // 2] for k, v in t.items()},
            "request_bytes": size_req,
            "response_bytes": size_resp,
            "cprofile_top": s.getvalue(),
        }
    enc.close()
    return out


# ------------------------------------------------------------------ main
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=512, help="items per kind (queries, gallery images)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--clients", type=int, nargs="+", default=[4], help="concurrent gRPC client processes (several values: one run each)")
    p.add_argument("--modes", nargs="+", default=["stream", "sequential"], choices=("stream", "sequential"),
                   help="stream: one post of all items (requests of --batch, several in flight); "
                        "sequential: one post per batch, each awaited (latency)")
    p.add_argument("--checkpoint", default=None, help="default: the bundled model, else a random mlcl-tiny")
    p.add_argument("--threads", type=int, default=None, help="torch threads of the bare model and of the Flow's encoder (default: torch's)")
    p.add_argument("--encoder-with", default=None, help="JSON dict of MLCLEncoder `with:` overrides (e.g. torch_threads)")
    p.add_argument("--flow", default=None, help="Flow YAML (default flows/flow.yml)")
    p.add_argument("--rounds", type=int, default=5, help="alternate bare and Flow runs this many times; medians reported")
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument("--profile-reps", type=int, default=6)
    p.add_argument("--name", default=None)
    p.add_argument("--quick", action="store_true", help="64 items, 2 clients (smoke)")
    p.add_argument("--out-dir", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.items, args.clients, args.profile_reps, args.rounds = 64, [2], 2, 1
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    import json

    import torch

    from mlcl.model import load_checkpoint
    from mlcl_cli.flows import build_flow, free_port

    args = parse_args(argv)
    info = machine_info()
    ckpt = bench_checkpoint(args.checkpoint)
    images, texts = load_inputs(args.items)
    res: Dict[str, Any] = {"checkpoint": str(ckpt), "bare": {}, "flow": {}, "ratio": {}}

    threads = args.threads or torch.get_num_threads()  # set below, after the fork
    # The same torch thread count in the bare model and in the Flow's encoder (on a loaded 2-core machine,
    # 2 OpenMP threads can be several times slower than 1: the comparison must not mix them).
    encoder_with = {"checkpoint": str(ckpt), "torch_threads": threads,
                    **(json.loads(args.encoder_with) if args.encoder_with else {})}
    grpc_port, http_port = free_port(), free_port()
    kwargs: Dict[str, Any] = {"grpc_port": grpc_port, "http_port": http_port, "encoder_with": encoder_with}
    if args.flow:
        kwargs["flow_file"] = args.flow
    # The Flow starts first: jina forks its executors, and a fork after torch has run parallel ops in this
    # process deadlocks the child (seen here: the encoder hangs in a futex at start-up).
    with tempfile.TemporaryDirectory(prefix="mlcl-bench-flow-") as ws:
        flow = build_flow(workspace=ws, **kwargs)
        t0 = time.perf_counter()
        with flow:
            res["flow_start_s"] = time.perf_counter() - t0
            pids = flow_pids(flow)
            res["flow_processes"] = pids
            # Same run, same inputs: the bare model in this process while the Flow idles, alternating with
            # the Flow's runs for `--rounds` rounds (the median of the rounds is reported: the machine is shared).
            torch.set_num_threads(threads)
            model = load_checkpoint(ckpt, device="cpu")
            model.eval()
            rounds: List[Dict[str, Any]] = []
            runs_spec = [(mode, c) for mode in args.modes for c in args.clients]
            for rnd in range(args.rounds):
                r_out: Dict[str, Any] = {"bare": {}, "flow": {}}
                for kind in KINDS:
                    r_out["bare"][kind] = {"forward": bare(model, kind, images, texts, args.batch, decode=False),
                                           "pipeline": bare(model, kind, images, texts, args.batch, decode=True)}
                    for mode, c in runs_spec:
                        r = flow_throughput(grpc_port, kind, images, texts, args.batch, c, pids=pids, mode=mode)
                        r_out["flow"].setdefault(kind, []).append(r)
                        print(f"[encoder_throughput] round {rnd} {kind}: bare {r_out['bare'][kind]['pipeline']['items_per_s']:.1f}, "
                              f"flow {mode} clients={c} {r['items_per_s']:.1f} items/s", file=sys.stderr)
                rounds.append(r_out)
            res["rounds"] = rounds
            del model
            if args.profile:
                res["profile"] = profile_executor(ckpt, images, texts, args.batch, args.profile_reps)
    med = lambda xs: float(sorted(xs)[len(xs) // 2])  # noqa: E731
    for kind in KINDS:
        res["bare"][kind] = {mode: {"items_per_s": med([r["bare"][kind][mode]["items_per_s"] for r in rounds]),
                                    "cpu_ms_per_batch": med([r["bare"][kind][mode]["cpu_ms_per_batch"] for r in rounds]),
                                    "rounds": [r["bare"][kind][mode]["items_per_s"] for r in rounds]}
                             for mode in ("forward", "pipeline")}
        if args.profile:
            res["bare"][kind]["executor_direct"] = {"items_per_s": args.batch / (res["profile"][kind]["ms"]["executor"] / 1e3)}
        res["flow"][kind] = []
        for ci, (mode, c) in enumerate(runs_spec):
            runs = [r["flow"][kind][ci] for r in rounds]
            cpu_keys = sorted({k for x in runs for k in x["cpu_ms_per_batch"]})
            res["flow"][kind].append({
                "mode": mode, "clients": c, "items_per_s": med([x["items_per_s"] for x in runs]),
                "rounds": [x["items_per_s"] for x in runs],
                "request_ms_p50": med([x["request_ms"]["p50"] for x in runs]) if runs[0]["request_ms"] else None,
                "cpu_ms_per_batch": {k: med([x["cpu_ms_per_batch"].get(k, 0.0) for x in runs]) for k in cpu_keys},
                "errors": sum(x["errors"] for x in runs),
                # each round's Flow run against that round's bare run (measured back to back): robust to the
                # machine's drift between rounds, which the ratio of the medians is not
                "per_round_vs_pipeline": [x["items_per_s"] / r["bare"][kind]["pipeline"]["items_per_s"]
                                          for x, r in zip(runs, rounds)],
            })
            res["flow"][kind][-1]["vs_pipeline"] = med(res["flow"][kind][-1]["per_round_vs_pipeline"])
        best = max(res["flow"][kind], key=lambda r: r["vs_pipeline"])
        res["ratio"][kind] = {
            "flow_vs_forward": best["items_per_s"] / res["bare"][kind]["forward"]["items_per_s"],
            "flow_vs_pipeline": best["vs_pipeline"],  # the median of the rounds' ratios (the headline)
            "clients": best["clients"], "mode": best["mode"],
            "per_round_flow_vs_forward": [max(x["items_per_s"] for x in r["flow"][kind]) / r["bare"][kind]["forward"]["items_per_s"]
                                          for r in rounds],
        }
    name = args.name or "encoder_throughput"
    config = {k: v for k, v in vars(args).items() if k != "out_dir"}
    config["torch_threads"] = threads
    payload = {"benchmark": name, "machine": info, "config": config, "results": res}
    path = write_results(name, payload, Path(args.out_dir) if args.out_dir else None, quick=args.quick)

    print(f"\n### Encoder throughput (batches of {args.batch}, {args.items} items per kind, torch threads {threads})\n")
    rows = []
    for kind, label in (("query", "hybrid queries/s"), ("gallery", "gallery images/s")):
        b = res["bare"][kind]
        for r in res["flow"][kind]:
            rows.append([label, b["forward"]["items_per_s"], b["pipeline"]["items_per_s"],
                         b.get("executor_direct", {}).get("items_per_s"), r["mode"], r["clients"], r["items_per_s"],
                         r["items_per_s"] / b["forward"]["items_per_s"], r["vs_pipeline"],
                         ", ".join(f"{x:.2f}" for x in r["per_round_vs_pipeline"])])
    print(markdown_table(["work", "bare forward", "bare decode+forward", "executor in-process", "client", "gRPC clients",
                          "Flow gRPC", "Flow / bare forward", "Flow / bare decode+forward (median of rounds)",
                          "per round"], rows))
    print(f"\n#### CPU time per batch of {args.batch} by process, Flow runs (ms, median of rounds)\n")
    keys = sorted({k for kind in KINDS for r in res["flow"][kind] for k in r["cpu_ms_per_batch"]})
    crow = []
    for kind in KINDS:
        for r in res["flow"][kind]:
            cpu = r["cpu_ms_per_batch"]
            total = sum(v for v in cpu.values() if v == v)
            r["cpu_ms_per_batch_total"] = total
            crow.append([kind, r["mode"], r["clients"], *[cpu.get(k) for k in keys], total,
                         res["bare"][kind]["forward"]["cpu_ms_per_batch"], res["bare"][kind]["pipeline"]["cpu_ms_per_batch"],
                         res["bare"][kind]["forward"]["cpu_ms_per_batch"] / total if total else None, r["request_ms_p50"]])
    print(markdown_table(["kind", "client", "clients", *[f"{k} CPU" for k in keys], "Flow total CPU", "bare forward CPU",
                          "bare decode+forward CPU", "bare forward / Flow CPU", "request p50 ms"], crow))
    if args.profile:
        print(f"\n#### Per batch of {args.batch}, in this process (ms, medians)\n")
        prow = []
        for kind in KINDS:
            pr = res["profile"][kind]
            ms = pr["ms"]
            prow.append([kind, ms["to_protobuf"], ms["from_protobuf"], ms["decode_preprocess"], ms["forward"], ms["executor"],
                         ms["response_to_protobuf"], pr["request_bytes"], pr["response_bytes"]])
        print(markdown_table(["kind", "client to_protobuf", "server from_protobuf", "decode+preprocess", "model forward",
                              "executor endpoint", "response to_protobuf", "request bytes", "response bytes"], prow))
    print(f"\nMachine: {machine_line(info)}\nJSON: {path}")
    return payload


if __name__ == "__main__":
    main()
