"""Where the Flow's encoder process spends its time while one client streams `/encode` requests (py-spy).

Starts `flows/flow.yml` (torch threads 1 in the encoder), streams hybrid queries or gallery images in
requests of 32 for `--seconds`, samples the encoder process with py-spy (`pip install py-spy`), and
prints the share of samples per part of the work: the model's forward, normalising the decoded pixels,
reading / answering the request, the event loop waiting, the rest (jina, gRPC). Also the encoder's CPU
time per batch and the throughput while sampled (py-spy slows the process a little).

    .venv/bin/python bench/encoder_profile.py --kind query
    .venv/bin/python bench/encoder_profile.py --kind gallery --seconds 20
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_checkpoint, machine_info, machine_line, markdown_table, quiet_jina, write_results  # noqa: E402

quiet_jina()

# (label, frame substrings): a sample counts for the first part one of whose frames it holds
PARTS = [
    ("pixels -> batch (normalise)", ("images_from_pixels",)),
    ("model forward", ("mlcl/model/", "open_clip/", "torch/nn/")),
    ("decode (inline, decode_workers 0)", ("decode_many",)),
    # the document adapters, and the pipeline's bookkeeping around the model calls
    ("read / answer the request", ("proto_docs.py", "typed_docs.py", "standard_docs.py", "docarray/",
                                   "mlcl_executor/pipeline.py")),
    ("event loop waiting", ("selectors.py",)),
]


def summarise(raw: Path) -> Dict[str, Any]:
    """py-spy's raw (collapsed) stacks -> share of samples per part."""
    parts: Dict[str, int] = collections.Counter()
    threads: Dict[str, int] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        head = frames[0]  # "thread (0x7f...): MainThread" with --threads
        threads[head.split("): ", 1)[1] if "): " in head else head] += count
        for label, keys in PARTS:
            if any(k in f for f in frames for k in keys):
                parts[label] += count
                break
        else:
            parts["other (jina, gRPC, asyncio)"] += count
    return {"samples": total, "share": {k: v / total for k, v in parts.items()} if total else {},
            "threads": {k: v / total for k, v in threads.items()} if total else {}}


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=("query", "gallery"), default="query")
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--encoder-with", default=None, help="JSON dict of MLCLEncoder `with:` overrides")
    p.add_argument("--out-dir", default=None)
    args = p.parse_args(argv)

    import json

    import psutil
    from docarray import DocList
    from jina import Client

    from bench.encoder_throughput import flow_pids, load_inputs, make_docs
    from mlcl_executor.schemas import QueryDoc
    from mlcl_cli.flows import build_flow, free_port

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        sys.exit("encoder_profile: py-spy is not installed (pip install py-spy)")
    info = machine_info()
    ckpt = bench_checkpoint(args.checkpoint)
    images, texts = load_inputs(1024)
    docs = make_docs(args.kind, images, texts)
    encoder_with = {"checkpoint": str(ckpt), "torch_threads": 1, **(json.loads(args.encoder_with) if args.encoder_with else {})}
    grpc_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="mlcl-profile-") as ws:
        flow = build_flow(workspace=ws, grpc_port=grpc_port, http_port=http_port, encoder_with=encoder_with)
        with flow:
            pid = flow_pids(flow)["encoder"]
            client = Client(host="127.0.0.1", port=grpc_port)
            params = {"as": args.kind}
            client.post("/encode", inputs=docs[:32], parameters=params, return_type=DocList[QueryDoc])  # warm-up
            raw = Path(ws) / "spy.txt"
            rec = subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(args.seconds)), "-r", str(args.rate),
                                    "-f", "raw", "-o", str(raw), "--threads", "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            proc = psutil.Process(pid)
            cpu0, t0, n = sum(proc.cpu_times()[:2]), time.perf_counter(), 0
            while time.perf_counter() - t0 < args.seconds:
                client.post("/encode", inputs=docs, parameters=params, request_size=32, return_type=DocList[QueryDoc])
                n += len(docs)
            wall, cpu = time.perf_counter() - t0, sum(proc.cpu_times()[:2]) - cpu0
            err = rec.communicate(timeout=120)[1]
            if not raw.exists():
                sys.exit(f"encoder_profile: py-spy wrote nothing ({err.strip()[-300:]})")
            summary = summarise(raw)
    res = {"kind": args.kind, "items_per_s": n / wall, "encoder_cpu_ms_per_batch": 1e3 * cpu / (n / 32), **summary}
    payload = {"benchmark": f"encoder_profile_{args.kind}", "machine": info, "config": vars(args), "results": res}
    path = write_results(f"encoder_profile_{args.kind}", payload, Path(args.out_dir) if args.out_dir else None)
    print(f"\n### The encoder process while one client streams `/encode` ({args.kind}, requests of 32)\n")
    print(f"{res['items_per_s']:.0f} items/s while sampled; encoder CPU {res['encoder_cpu_ms_per_batch']:.1f} ms per batch; "
          f"{summary['samples']} samples\n")
    rows = [[k, 100 * v] for k, v in sorted(summary["share"].items(), key=lambda kv: -kv[1])]
    print(markdown_table(["part", "% of samples"], rows))
    print(f"\nMachine: {machine_line(info)}\nJSON: {path}")
    return payload


if __name__ == "__main__":
    main()
