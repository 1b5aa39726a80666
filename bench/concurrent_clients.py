"""Many clients at once, each with one query: queries/s, p50, p99 and errors through `mlcl serve`.

What a search service meets: N clients (1, 4, 16, 64), each sending ONE hybrid query (reference image +
text, one document, limit 10), waiting for the answer, then sending the next. Over HTTP (`POST /search`,
a data URI, as the search page and curl send it) and over gRPC (a `DataRequest` with one `QueryDoc`, as
`jina.Client.post(..., stream=False)` sends it). The Flow is started the way users start it, `mlcl serve`
(a subprocess; `--flow sharded` for the sharded one), on a gallery of `--gallery` shapes images indexed first.

Beside the Flow, in the same run: the bare batched pipeline (PNG decode + preprocess + forward of
composed queries, batches of `--bare-batch`, `--bare-threads` torch threads, in a subprocess), the
throughput the Flow is compared with. The load generator shares the machine's cores with the Flow, so its
own CPU share is reported, as is every Flow process's (gateway, encoder, its decode workers, the rest:
indexer(s), heads, merger), in % of one core over the measured window.

    .venv/bin/python bench/concurrent_clients.py                        # flow, http+grpc, 1 4 16 64 clients
    .venv/bin/python bench/concurrent_clients.py --flows flow sharded   # both Flows in one table
    .venv/bin/python bench/concurrent_clients.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    REPO_ROOT, bench_checkpoint, load_average, machine_info, machine_line, markdown_table, percentiles, quiet_jina,
    write_results,
)

quiet_jina()
VENV_BIN = Path(sys.executable).parent


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--protocols", nargs="+", choices=("http", "grpc"), default=["http", "grpc"])
    p.add_argument("--flows", nargs="+", default=["flow"], help="Flows to serve (names `mlcl serve --flow` takes)")
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per (protocol, clients)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before the measured window")
    p.add_argument("--gallery", type=int, default=2000)
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--queries", type=int, default=256, help="distinct queries, cycled")
    p.add_argument("--bare-batch", type=int, default=32)
    p.add_argument("--bare-threads", type=int, default=1)
    p.add_argument("--bare-items", type=int, default=1024)
    p.add_argument("--checkpoint", default=None, help="default: the bundled model")
    p.add_argument("--serve-args", default="", help="extra arguments for `mlcl serve` (one string)")
    p.add_argument("--name", default="concurrent_clients")
    p.add_argument("--quick", action="store_true", help="a few seconds per cell, 200 images, 1 and 4 clients")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--profile", type=int, metavar="N", default=None,
                   help="sample every Flow process with py-spy during the N-client cells (pip install py-spy)")
    p.add_argument("--bare-only", metavar="JSON", help=argparse.SUPPRESS)  # the bare subprocess
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.gallery, args.bare_items = 2.0, 0.5, 200, 128
        args.clients = [c for c in args.clients if c <= 4] or [1]
    return args


# ------------------------------------------------------------------ inputs
def load_queries(n: int) -> List[Tuple[str, bytes, str]]:
    """n composed queries (reference name, PNG bytes, caption) of the shapes test split, cycled."""
    from mlcl.data.shapes import ShapesDataset, ensure_shapes

    ds = ShapesDataset(ensure_shapes(split="test"), "test")
    triplets = ds.triplets
    out = []
    for i in range(n):
        t = triplets[(i * 7) % len(triplets)]  # spread over the split
        out.append((t["reference"], ds.image_path(t["reference"]).read_bytes(), t["caption"]))
    return out


def gallery_images(n: int) -> List[Tuple[str, bytes]]:
    from mlcl.data.shapes import ShapesDataset, ensure_shapes

    ds = ShapesDataset(ensure_shapes(split="test"), "test")
    names = ds.gallery
    return [(f"g{i:06d}", ds.image_path(names[i % len(names)]).read_bytes()) for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def data_uri(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64," + base64.b64encode(data).decode("ascii")


# ------------------------------------------------------------------ bare pipeline (subprocess)
def bare_only(args: argparse.Namespace) -> None:
    import torch

    from bench.encoder_throughput import bare
    from mlcl.model import load_checkpoint

    torch.set_num_threads(args.bare_threads)
    model = load_checkpoint(bench_checkpoint(args.checkpoint), device="cpu").eval()
    queries = load_queries(args.bare_items)
    res = bare(model, "query", [q[1] for q in queries], [q[2] for q in queries], args.bare_batch, decode=True)
    res["threads"] = args.bare_threads
    Path(args.bare_only).write_text(json.dumps(res))


def run_bare(args: argparse.Namespace) -> Dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, __file__, "--bare-only", out, "--bare-threads", str(args.bare_threads),
           "--bare-items", str(args.bare_items), "--bare-batch", str(args.bare_batch)]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    subprocess.run(cmd, check=True)
    res = json.loads(Path(out).read_text())
    os.unlink(out)
    return res


# ------------------------------------------------------------------ the Flow under `mlcl serve`
class Served:
    """`mlcl serve` in a subprocess: started, waited for ("ready"), its processes classified, stopped."""

    def __init__(self, flow: str, workspace: str, checkpoint: Optional[str], extra: Sequence[str]) -> None:
        self.grpc_port, self.http_port = free_port(), free_port()
        cmd = [str(VENV_BIN / "mlcl"), "serve", "--flow", flow, "--workspace", workspace,
               "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port), *extra]
        if checkpoint:
            cmd += ["--checkpoint", checkpoint]
        self.t0 = time.perf_counter()
        # its own process group: stop() ends the whole Flow even when `mlcl serve` itself is stuck
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        self.log: List[str] = []
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.log.append(line.rstrip())
            if "ready in" in line:
                break
        else:
            raise RuntimeError("mlcl serve did not start:\n" + "\n".join(self.log[-20:]))
        self.start_s = time.perf_counter() - self.t0
        self.http = f"http://127.0.0.1:{self.http_port}"

    def processes(self) -> Dict[str, List[Any]]:
        """The Flow's processes by role: gateway (listens on the gRPC port), encoder (parent of the decode
        workers), decode workers, and the rest (indexer, heads, merger)."""
        import psutil

        root = psutil.Process(self.proc.pid)
        roles: Dict[str, List[Any]] = {"gateway": [], "encoder": [], "decode": [], "index side": [], "mlcl serve": [root]}
        procs = root.children(recursive=True)
        decode = [p for p in procs if "decode_worker" in " ".join(p.cmdline())]
        encoders = {p.ppid() for p in decode}
        for p in procs:
            if p in decode:
                roles["decode"].append(p)
            elif p.pid in encoders:
                roles["encoder"].append(p)
            elif any(c.laddr.port == self.grpc_port for c in p.net_connections(kind="tcp") if c.status == "LISTEN"):
                roles["gateway"].append(p)
            elif "multiprocessing" not in " ".join(p.cmdline()):
                roles["index side"].append(p)
        return roles

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything of the Flow left behind


def http_json(url: str, payload: Dict[str, Any], timeout: float = 120.0) -> Dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def index_gallery(served: Served, images: List[Tuple[str, bytes]], batch: int = 64, media: str = "image/png") -> float:
    t0 = time.perf_counter()
    for s in range(0, len(images), batch):
        docs = [{"id": i, "image": data_uri(b, media)} for i, b in images[s : s + batch]]
        answer = http_json(served.http + "/index", {"data": docs})
        bad = [d.get("error") for d in answer["data"] if d.get("error")]
        if bad:
            raise RuntimeError(f"indexing failed: {bad[:2]}")
    return time.perf_counter() - t0


# ------------------------------------------------------------------ load generator
class Load:
    """N concurrent clients, each one query at a time, for warm-up + duration seconds (asyncio, one process)."""

    def __init__(self, protocol: str, served: Served, queries: List[Tuple[str, bytes, str]], limit: int) -> None:
        self.protocol, self.served, self.limit = protocol, served, limit
        if protocol == "http":
            self.bodies = [json.dumps({"data": [{"image": data_uri(png), "text": text}],
                                       "parameters": {"limit": limit}}).encode() for _, png, text in queries]
        else:
            self.bodies = [self._grpc_request(i, png, text) for i, (_, png, text) in enumerate(queries)]

    def _grpc_request(self, i: int, png: bytes, text: str) -> Any:
        from docarray import DocList
        from jina.types.request.data import DataRequest

        from mlcl_executor.schemas import QueryDoc

        req = DataRequest()
        req.data.docs = DocList[QueryDoc]([QueryDoc(id=f"q{i}", image=png, text=text)])
        req.header.exec_endpoint = "/search"
        req.parameters = {"limit": self.limit}
        return req.proto.SerializeToString()  # jina's stub serialises DataRequest objects: one is made per call

    async def _http_client(self, session: Any, k: int, stop_at: float, out: List[Tuple[float, float, bool]]) -> None:
        url = self.served.http + "/search"
        i = k
        while time.perf_counter() < stop_at:
            body = self.bodies[i % len(self.bodies)]
            i += 97
            t0 = time.perf_counter()
            ok = False
            try:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    payload = await r.read()
                    if r.status == 200:
                        doc = json.loads(payload)["data"][0]
                        ok = not doc.get("error") and len(doc.get("matches") or []) == self.limit
            except Exception:  # noqa: BLE001 - counted as an error
                ok = False
            out.append((t0, time.perf_counter(), ok))

    async def _grpc_client(self, stub: Any, k: int, stop_at: float, out: List[Tuple[float, float, bool]]) -> None:
        from jina.proto import jina_pb2
        from jina.types.request.data import DataRequest

        i = k
        while time.perf_counter() < stop_at:
            req = DataRequest(self.bodies[i % len(self.bodies)])
            i += 97
            t0 = time.perf_counter()
            ok = False
            try:
                resp = await stub.process_single_data(req, timeout=60)
                if resp.header.status.code != jina_pb2.StatusProto.ERROR:
                    data = resp.proto_with_data.data.docs.docs[0].data
                    err = data["error"].text if "error" in data else ""
                    n = len(data["matches"].doc_array.docs) if "matches" in data else 0
                    ok = not err and n == self.limit
            except Exception:  # noqa: BLE001 - counted as an error
                ok = False
            out.append((t0, time.perf_counter(), ok))

    async def run(self, clients: int, warmup: float, duration: float) -> List[Tuple[float, float, bool]]:
        out: List[Tuple[float, float, bool]] = []
        stop_at = time.perf_counter() + warmup + duration
        if self.protocol == "http":
            import aiohttp

            connector = aiohttp.TCPConnector(limit=clients)
            async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
                await asyncio.gather(*(self._http_client(session, k, stop_at, out) for k in range(clients)))
        else:
            import grpc
            from jina.proto import jina_pb2_grpc

            async with grpc.aio.insecure_channel(f"127.0.0.1:{self.served.grpc_port}",
                                                 options=[("grpc.max_receive_message_length", -1)]) as channel:
                stub = jina_pb2_grpc.JinaSingleDataRequestRPCStub(channel)
                await asyncio.gather(*(self._grpc_client(stub, k, stop_at, out) for k in range(clients)))
        return out


def cpu_seconds(procs: Dict[str, List[Any]]) -> Dict[str, float]:
    import psutil

    out: Dict[str, float] = {}
    for role, plist in procs.items():
        total = 0.0
        for p in plist:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        out[role] = total
    me = psutil.Process().cpu_times()
    out["load generator"] = me.user + me.system
    return out


async def _measure(load: Load, procs: Dict[str, List[Any]], clients: int, warmup: float, duration: float,
                   profile: bool = False) -> Dict[str, Any]:
    t_start = time.perf_counter()
    task = asyncio.ensure_future(load.run(clients, warmup, duration))
    await asyncio.sleep(warmup)  # CPU over the measured window only
    spies = start_profiles(procs, duration) if profile else {}
    cpu0, t0 = cpu_seconds(procs), time.perf_counter()
    await asyncio.sleep(duration)
    cpu1, t1 = cpu_seconds(procs), time.perf_counter()
    samples = await task
    profiles = finish_profiles(spies)
    lo, hi = t_start + warmup, t_start + warmup + duration
    done = [(a, b, ok) for a, b, ok in samples if lo <= b <= hi]
    lat = [(b - a) * 1e3 for a, b, ok in done if ok]
    stats = percentiles(lat, (50, 99)) if lat else {}
    return {"clients": clients, "queries": len(lat), "errors": sum(1 for *_, ok in done if not ok),
            "qps": len(lat) / duration, "p50_ms": stats.get("p50"), "p99_ms": stats.get("p99"),
            "cpu_percent_of_core": {k: 100.0 * (cpu1[k] - cpu0[k]) / (t1 - t0) for k in cpu0},
            "load_average": load_average(), **({"profile": profiles} if profiles else {})}


def measure(load: Load, served: Served, clients: int, warmup: float, duration: float, profile: bool = False) -> Dict[str, Any]:
    return asyncio.run(_measure(load, served.processes(), clients, warmup, duration, profile))


def start_profiles(procs: Dict[str, List[Any]], duration: float) -> Dict[str, Tuple[Any, str]]:
    """py-spy on each Flow process for `duration` s (collapsed stacks, idle threads left out)."""
    spies = {}
    for role, plist in procs.items():
        for i, p in enumerate(plist):
            out = tempfile.mktemp(suffix=".txt")
            cmd = [str(VENV_BIN / "py-spy"), "record", "--pid", str(p.pid), "--duration", str(int(duration)),
                   "--rate", "200", "--format", "raw", "--output", out, "--nonblocking"]
            spies[f"{role}#{i}"] = (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out)
    return spies


def finish_profiles(spies: Dict[str, Tuple[Any, str]], top: int = 25) -> Dict[str, Any]:
    """Per process: the share of samples in which each function is on the stack (inclusive), top first."""
    out = {}
    for name, (proc, path) in spies.items():
        proc.wait()
        counts: Dict[str, int] = {}
        leaves: Dict[str, int] = {}
        total = 0
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            stack, _, n = line.rpartition(" ")
            total += int(n)
            frames = stack.split(";")
            for frame in set(frames):
                counts[frame] = counts.get(frame, 0) + int(n)
            leaves[frames[-1]] = leaves.get(frames[-1], 0) + int(n)
        os.unlink(path)
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        own = sorted(leaves.items(), key=lambda kv: -kv[1])[:top]
        out[name] = {"samples": total, "inclusive": {f: round(100.0 * c / max(total, 1), 1) for f, c in ranked},
                     "self": {f: round(100.0 * c / max(total, 1), 1) for f, c in own}}
    return out


# ------------------------------------------------------------------ main
def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `finally` stops the Flow on a timeout's SIGTERM too
    if args.bare_only:
        bare_only(args)
        return {}
    info = machine_info()
    print(f"[concurrent] bare batched pipeline ({args.bare_items} composed queries, batch {args.bare_batch}, "
          f"{args.bare_threads} thread(s)) ...", file=sys.stderr)
    bare_res = run_bare(args)
    bare_qps = bare_res["items_per_s"]
    print(f"[concurrent] bare: {bare_qps:.0f} queries/s", file=sys.stderr)
    queries = load_queries(args.queries)
    images = gallery_images(args.gallery)
    ckpt = str(bench_checkpoint(args.checkpoint)) if args.checkpoint else None
    rows, results = [], []
    for flow in args.flows:
        with tempfile.TemporaryDirectory(prefix="mlcl-bench-concurrent-") as ws:
            served = Served(flow, ws, ckpt, args.serve_args.split())
            try:
                index_s = index_gallery(served, images)
                print(f"[concurrent] {flow}: ready in {served.start_s:.1f} s; {len(images)} images indexed in "
                      f"{index_s:.1f} s", file=sys.stderr)
                for protocol in args.protocols:
                    load = Load(protocol, served, queries, args.limit)
                    for n in args.clients:
                        res = measure(load, served, n, args.warmup, args.duration, profile=args.profile == n)
                        res.update(flow=flow, protocol=protocol, vs_bare=res["qps"] / bare_qps)
                        results.append(res)
                        cpu = res["cpu_percent_of_core"]
                        print(f"[concurrent] {flow} {protocol} {n:>3} clients: {res['qps']:.1f} q/s, p50 "
                              f"{res['p50_ms'] or float('nan'):.0f} ms, p99 {res['p99_ms'] or float('nan'):.0f} ms, "
                              f"{res['errors']} errors; load {res['load_average'][0]}", file=sys.stderr)
                        rows.append([flow, protocol.upper(), n, res["qps"], res["vs_bare"], res["p50_ms"], res["p99_ms"],
                                     res["errors"], cpu.get("gateway"), cpu.get("encoder"), cpu.get("decode"),
                                     cpu.get("index side"), cpu.get("load generator")])
            finally:
                served.stop()
    config = {k: v for k, v in vars(args).items() if k not in ("out_dir", "bare_only")}
    payload = {"benchmark": args.name, "machine": info, "config": config, "bare": bare_res, "results": results}
    path = write_results(args.name, payload, Path(args.out_dir) if args.out_dir else None, quick=args.quick)
    print(f"\n### Many clients, one composed query each ({args.gallery:,}-image gallery, top-{args.limit}; "
          f"bare batched decode + forward: {bare_qps:.0f} queries/s)\n")
    print(markdown_table(["Flow", "protocol", "clients", "queries/s", "vs bare", "p50 ms", "p99 ms", "errors",
                          "gateway %", "encoder %", "decode %", "indexer side %", "load generator %"], rows))
    print(f"\nCPU in % of one core over the measured window ({args.duration:.0f} s after {args.warmup:.0f} s of warm-up)."
          f"\nMachine: {machine_line(info)}\nJSON: {path}")
    return payload


if __name__ == "__main__":
    main()
