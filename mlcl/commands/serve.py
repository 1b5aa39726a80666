"""`mlcl serve`: start the encoder + indexer Flow (gRPC and HTTP gateways).

    mlcl serve                                   # flows/flow.yml, ports 54321 (gRPC) / 54322 (HTTP)
    mlcl serve --flow flows/flow.sharded.yml --grpc-port 6000 --http-port 6001
    mlcl serve --backend hnsw --workspace /data/mlcl-index --image-root /data/images

Equivalent to `jina flow --uses flows/flow.yml` plus overrides. Runs until
Ctrl-C or SIGTERM, then stops the Flow cleanly. jina is imported inside `run`.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path


def add_flow_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by `mlcl serve` and `mlcl demo`."""
    parser.add_argument("--grpc-port", type=int, help="gRPC gateway port (default: the Flow YAML's, 54321)")
    parser.add_argument("--http-port", type=int, help="HTTP gateway port (default: the Flow YAML's, 54322)")
    parser.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the bundled shapes model)")
    parser.add_argument("--device", help="encoder device: auto, cpu, cuda, cuda:N (default: config.yml's)")
    parser.add_argument("--backend", choices=("memory", "hnsw"), help="index backend (default: flows/indexer.yml's)")


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
    parser.add_argument("--flow", type=Path, help="Flow YAML (default: flows/flow.yml; flows/flow.sharded.yml for shards)")
    add_flow_arguments(parser)
    parser.add_argument("--workspace", type=Path, help="where the index is kept (default: ./workspace)")
    parser.add_argument("--image-root", action="append", metavar="DIR",
                        help="allow clients to name image files under DIR (repeatable; default: no paths)")
    parser.add_argument("--allow-urls", action="store_true", help="let the encoder fetch http(s) image URLs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mlcl_executor.serving import DEFAULT_FLOW, build_flow, flow_config, flow_ports

    flow_file = args.flow or DEFAULT_FLOW
    kwargs = dict(flow_file=flow_file, grpc_port=args.grpc_port, http_port=args.http_port,
                  workspace=args.workspace, **flow_overrides(args))
    ports = flow_ports(flow_config(**kwargs))
    flow = build_flow(**kwargs)
    stop = threading.Event()

    def _stop(signum, frame):  # SIGTERM (docker, kill) stops as cleanly as Ctrl-C
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    with flow:
        grpc, http = ports.get("grpc"), ports.get("http")
        print(f"mlcl serve: ready: gRPC grpc://127.0.0.1:{grpc}  HTTP http://127.0.0.1:{http}  "
              f"(docs: http://127.0.0.1:{http}/docs)", flush=True)
        try:
            flow.block(stop_event=stop)
        except KeyboardInterrupt:
            pass
    print("mlcl serve: stopped", flush=True)
    return 0
