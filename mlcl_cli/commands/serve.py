"""`mlcl serve`: start the encoder + indexer Flow (gRPC and HTTP gateways).

    mlcl serve                                   # flows/flow.yml, ports 54321 (gRPC) / 54322 (HTTP), this machine only
    mlcl serve --flow flows/flow.sharded.yml --grpc-port 6000 --http-port 6001
    mlcl serve --backend hnsw --workspace /data/mlcl-index --image-root /data/images
    MLCL_WRITE_TOKEN=... mlcl serve --host 0.0.0.0   # reachable from other machines; writes need the token

Equivalent to `jina flow --uses flows/flow.yml` plus overrides, with checks
first (checkpoint, workspace, ports, a Milvus server or docker daemon the Flow needs: one line each,
nothing started), a quiet
log (our own lines; `--verbose` shows jina's), and a clean stop on Ctrl-C or
SIGTERM (every child process ends). jina is imported inside `run`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Optional


def add_flow_arguments(parser: argparse.ArgumentParser, free_ports: bool = False) -> None:
    """Options shared by `mlcl serve` and `mlcl demo` (`free_ports`: the ports default to free ones)."""
    defaults = ("a free port", "a free port") if free_ports else ("the Flow YAML's, 54321", "the Flow YAML's, 54322")
    parser.add_argument("--grpc-port", type=int, help=f"gRPC gateway port (default: {defaults[0]})")
    parser.add_argument("--http-port", type=int, help=f"HTTP gateway port (default: {defaults[1]})")
    parser.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the bundled shapes model)")
    parser.add_argument("--device", help="encoder device: auto, cpu, cuda, cuda:N (default: config.yml's)")
    parser.add_argument("--backend", choices=("memory", "hnsw", "milvus"), help="index backend (default: flows/indexer.yml's)")
    parser.add_argument("--verbose", action="store_true", help="show jina's own log and every warning")


def flow_overrides(args: argparse.Namespace) -> dict:
    encoder = {}
    if getattr(args, "checkpoint", None):
        encoder["checkpoint"] = str(Path(args.checkpoint).expanduser().resolve())
    if getattr(args, "device", None):
        encoder["device"] = args.device
    if getattr(args, "image_root", None):
        encoder["image_roots"] = [str(Path(r).expanduser().resolve()) for r in args.image_root]
    if getattr(args, "allow_urls", False):
        encoder["allow_urls"] = True
    indexer = {"backend": args.backend} if getattr(args, "backend", None) else {}
    return {"encoder_with": encoder or None, "indexer_with": indexer or None}


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flow", type=Path,
                        help="Flow YAML, or the name of one shipped with mlcl: flow (default), sharded, milvus")
    add_flow_arguments(parser)
    parser.add_argument("--workspace", type=Path, default=Path("workspace"),
                        help="where the index is kept (default: ./workspace)")
    parser.add_argument("--host", help="the gateway's address: 127.0.0.1 (this machine only), 0.0.0.0 (every "
                        "interface) or one of this machine's addresses (default: the Flow YAML's, 127.0.0.1)")
    parser.add_argument("--image-root", action="append", metavar="DIR",
                        help="allow clients to name image files under DIR (repeatable; default: no paths)")
    parser.add_argument("--allow-urls", action="store_true", help="let the encoder fetch http(s) image URLs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mlcl_cli import launcher

    started = time.monotonic()
    if not args.verbose:
        launcher.quiet()
    from mlcl_executor.torch_gate import keep_model_out

    keep_model_out()  # this process, the gateway and the indexer never run the model

    from mlcl_cli.flows import encoder_checkpoint, flow_config, flow_ports, resolve_flow

    try:
        flow_file = resolve_flow(args.flow)
    except FileNotFoundError as exc:
        print(f"mlcl serve: {exc}", file=sys.stderr)
        return 2
    kwargs = dict(flow_file=flow_file, grpc_port=args.grpc_port, http_port=args.http_port, host=args.host,
                  workspace=args.workspace, quiet_errors=not args.verbose, **flow_overrides(args))
    try:
        config = flow_config(**kwargs)
        ports = flow_ports(config)
    except ValueError as exc:
        print(f"mlcl serve: {exc}", file=sys.stderr)
        return 2
    checkpoint = encoder_checkpoint(config)  # --checkpoint is in the config by now; else the Flow file's own
    from mlcl_cli.milvus_server import LiteServer, lite_file_to_serve, lite_problems

    lite_file = lite_file_to_serve(config, Path(args.workspace))
    problems = launcher.preflight(checkpoint, Path(args.workspace).resolve(), args.backend, ports, config)
    problems += lite_problems(config, lite_file) if lite_file else []
    if problems:
        for problem in problems:
            print(f"mlcl serve: {problem}", file=sys.stderr)
        return 2
    lite = LiteServer(lite_file) if lite_file else None
    try:
        if lite is not None:
            from mlcl_executor.stores.milvus import URI_ENV

            try:
                os.environ[URI_ENV] = lite.start()  # the Flow's processes, forked from this one, share it
            except RuntimeError as exc:
                print(f"mlcl serve: {exc}", file=sys.stderr)
                return 1
            print(f"mlcl serve: Milvus Lite serves {lite_file} at {lite.uri} (this machine only) for the indexer "
                  "replicas; MLCL_MILVUS_URI names a Milvus server instead", flush=True)
        return _serve(args, started, flow_file, kwargs, config, ports, checkpoint)
    finally:
        if lite is not None:
            lite.stop()


def _serve(args: argparse.Namespace, started: float, flow_file: Path, kwargs: dict, config: dict, ports: dict,
           checkpoint: Optional[Path]) -> int:
    from mlcl_cli import launcher

    from mlcl_cli.flows import build_flow
    from mlcl_executor import jina_patches
    from mlcl_executor.vectors import checkpoint_id

    jina_patches.apply()  # before any process starts: the Flow's processes are forked from this one
    flow = build_flow(**kwargs)
    model = f"model {checkpoint.name} (model id {checkpoint_id(checkpoint)})" if checkpoint else "the model its encoder names"
    print(f"mlcl serve: starting {Path(flow_file).name}: {model}, index in {Path(args.workspace).resolve()}", flush=True)
    writes_guarded, _ = launcher.write_token_problem(config)
    with launcher.supervised(flow, "mlcl serve", show_jina_banner=args.verbose) as stop:
        print(f"mlcl serve: ready in {time.monotonic() - started:.1f} s: {ready_line(ports, writes_guarded)}; "
              "Ctrl-C stops", flush=True)
        stop.wait()
        print("mlcl serve: stopping", flush=True)
    print("mlcl serve: stopped", flush=True)
    return 0


def ready_line(ports: dict, writes_guarded: bool) -> str:
    """What is served where, as bound (not as configured), and who may write."""
    from mlcl_cli import launcher

    bound = launcher.listening(list(ports.values()))
    grpc, http = ports.get("grpc"), ports.get("http")
    addresses = sorted({a for port in ports.values() for a in bound.get(port, [])})
    # a URL that opens here: the bound address, or this machine's when bound to every interface
    host = next((a for a in addresses if a not in ("0.0.0.0", "::")), "127.0.0.1")
    host = f"[{host}]" if ":" in host else host
    parts = []
    if grpc:
        parts.append(f"gRPC grpc://{host}:{grpc}")
    if http:
        parts.append(f"HTTP http://{host}:{http}  (search page: http://{host}:{http}/ui/  API docs: http://{host}:{http}/docs)")
    where = ", ".join(f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for p in ports.values() for a in bound.get(p, []))
    writes = ("writes need the write token" if writes_guarded else
              "writes (/index, /update, /delete, /clear) are open to anyone who reaches these ports: set MLCL_WRITE_TOKEN")
    return f"{'  '.join(parts)}; bound to {where or '?'} ({launcher.reach(addresses)}); {writes}"
