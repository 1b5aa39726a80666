"""Vectors in bulk through the Flow: `mlcl index --vectors FILE.npy --ids FILE.txt` into a running Flow.

Writes `--n` random unit vectors of the model's width (float32 .npy) and their ids (one per line) to a
temporary folder, starts the default Flow (`flows/flow.yml`: encoder -> indexer, `--backend`) with a fresh
workspace, and runs `mlcl index --vectors ... --ids ...` as one client process (gRPC, `--batch-size`
vectors per request). Reported: vectors/s through the gateway (as the CLI measures it: from the first
request to the last answer), the count the index holds after, and the load average before and after.
The encoder does no model work for these documents (they carry the model id, `mlcl_executor/vectors.py`);
the indexer writes each request to its log (fsync) and its store.

    .venv/bin/python bench/bulk_vectors.py --n 100000
    nice -n 5 .venv/bin/python bench/bulk_vectors.py --n 1000000
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.common import REPO_ROOT, bench_checkpoint, load_average, machine_info, machine_line, quiet_jina, write_results  # noqa: E402


def write_files(folder: Path, n: int, dim: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(folder / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, 65536):
        x = rng.standard_normal((min(65536, n - start), dim), dtype=np.float32)
        out[start : start + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()
    del out
    (folder / "ids.txt").write_text("".join(f"v{i}\n" for i in range(n)))


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=1000, help="vectors per request")
    p.add_argument("--backend", default="memory", choices=("memory", "hnsw"))
    p.add_argument("--checkpoint", default=None, help="default: the bundled model")
    p.add_argument("--timeout-s", type=float, default=3600.0)
    p.add_argument("--name", default="bulk_vectors")
    p.add_argument("--out-dir", default=None)
    args = p.parse_args(argv)
    quiet_jina()
    from mlcl_cli.flows import build_flow, free_port

    ckpt = bench_checkpoint(args.checkpoint)
    dim: Optional[int] = None
    info = machine_info()
    res: Dict[str, Any] = {"n": args.n, "batch_size": args.batch_size, "backend": args.backend, "checkpoint": str(ckpt)}
    with tempfile.TemporaryDirectory(prefix="mlcl-bench-bulk-") as tmp:
        folder = Path(tmp)
        grpc = free_port()
        flow = build_flow(workspace=folder / "ws", grpc_port=grpc, http_port=free_port(),
                          encoder_with={"checkpoint": str(ckpt)}, indexer_with={"backend": args.backend})
        with flow:
            if dim is None:  # ask the Flow: the width of a vector it computes
                from docarray import DocList

                from mlcl_executor.schemas import QueryDoc
                from mlcl_cli.client import grpc_client

                q = grpc_client(port=grpc).post("/encode", DocList[QueryDoc]([QueryDoc(text="a red circle")]),
                                                return_type=DocList[QueryDoc])[0]
                dim = len(q.embedding)
            write_files(folder, args.n, dim)
            res["dim"] = dim
            res["load_average_before"] = load_average()
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "mlcl_cli", "index", "--vectors", str(folder / "vectors.npy"), "--ids",
                   str(folder / "ids.txt"), "--checkpoint", str(ckpt), "--port", str(grpc), "--no-progress",
                   "--batch-size", str(args.batch_size)]
            env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s, env=env, cwd=REPO_ROOT)
            res["wall_s"] = time.perf_counter() - t0
            res["load_average_after"] = load_average()
            res["returncode"] = done.returncode
            res["cli_output"] = done.stdout.strip()
            if done.returncode != 0:
                res["stderr"] = done.stderr[-3000:]
            m = re.search(r"indexed (\d+) of (\d+) vectors in ([\d.]+) s \(([\d,]+) vectors/s\); the index holds (\d+)", done.stdout)
            if m:
                res.update(indexed=int(m.group(1)), seconds=float(m.group(3)), vectors_per_s=float(m.group(4).replace(",", "")),
                           index_holds=int(m.group(5)))
    res["command"] = "bench/bulk_vectors.py " + " ".join(sys.argv[1:] if argv is None else argv)
    path = write_results(args.name, {"benchmark": args.name, "machine": info, "config": vars(args), "results": res},
                         Path(args.out_dir) if args.out_dir else None)
    print(f"\n{res.get('cli_output')}\nvectors/s through the gateway: {res.get('vectors_per_s')}; load before "
          f"{res['load_average_before']}, after {res['load_average_after']}\nMachine: {machine_line(info)}\nJSON: {path}")
    if res["returncode"] != 0:
        print(res.get("stderr", ""), file=sys.stderr)
    return res


if __name__ == "__main__":
    main()
