"""`mlcl search`: a composed query (reference image + modifier text) against a running Flow.

    mlcl search --image shirt.png --text "is red with shorter sleeves" -k 5
    mlcl search --image shirt.png --json          # image only: similar images
    mlcl search --text "a blue circle"            # text only

The image is read here and sent as bytes (gRPC), so it need not exist on the server.
When the reference image is itself in the index (`mlcl index` stores each file's
absolute path in its tags), it is left out of the results, and the command says so;
`--keep-reference` keeps it. `--reference-id ID` leaves out the gallery document
with that id (the id `mlcl index` gave it: its path relative to the indexed folder).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", type=Path, help="reference image file")
    parser.add_argument("--text", help="modifier text")
    parser.add_argument("-k", "--limit", type=int, default=10, help="number of results (default: 10)")
    parser.add_argument("--reference-id", help="gallery id of the reference image (left out of the results)")
    parser.add_argument("--keep-reference", action="store_true",
                        help="keep the reference image in the results when it is in the index")
    parser.add_argument("--host", default="localhost", help="Flow host (default: localhost)")
    parser.add_argument("--port", type=int, default=54321, help="gRPC port (default: 54321)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.image is None and not args.text:
        print("mlcl search: give --image, --text, or both", file=sys.stderr)
        return 2
    if args.image is not None and not args.image.is_file():
        print(f"mlcl search: {args.image}: no such file", file=sys.stderr)
        return 2
    if args.limit < 1:
        print(f"mlcl search: -k/--limit must be at least 1, got {args.limit}", file=sys.stderr)
        return 2
    from mlcl_cli import launcher

    launcher.quiet()
    from docarray import DocList

    from mlcl_executor.schemas import QueryDoc
    from mlcl_cli.client import NoFlowError, check_flow, grpc_client

    reference_path = str(args.image.resolve()) if args.image is not None and not args.keep_reference else None
    query = QueryDoc(image=args.image.read_bytes() if args.image else None, text=args.text, reference_id=args.reference_id)
    try:
        check_flow(args.host, args.port)
        client = grpc_client(args.host, args.port)
        # One more than asked: the reference image itself may be among them.
        answer = client.post("/search", DocList[QueryDoc]([query]), parameters={"limit": args.limit + 1},
                             return_type=DocList[QueryDoc])[0]
    except NoFlowError as exc:
        print(f"mlcl search: {exc}", file=sys.stderr)
        return 1
    except ConnectionError as exc:
        print(f"mlcl search: lost the Flow at {args.host}:{args.port} ({str(exc).splitlines()[0][:160]})", file=sys.stderr)
        return 1
    pairs = list(zip(answer.matches, answer.scores))
    left_out = [m.id for m, _ in pairs if reference_path and (m.tags or {}).get("path") == reference_path]
    pairs = [(m, s) for m, s in pairs if m.id not in left_out][: args.limit]
    results = [{"rank": r + 1, "id": m.id, "score": round(float(s), 6), "uri": m.uri, "tags": m.tags}
               for r, (m, s) in enumerate(pairs)]
    if args.json:
        print(json.dumps({"query": {"image": str(args.image) if args.image else None, "text": args.text},
                          "left_out": left_out, "error": answer.error, "matches": results}, indent=2))
    elif not answer.error:
        if left_out:
            print(f"(left out {left_out[0]!r}: it is the reference image itself; --keep-reference keeps it)")
        print(f"{'rank':>4}  {'score':>7}  id")
        for r in results:
            where = r["tags"].get("path") or r["uri"] or ""
            print(f"{r['rank']:>4}  {r['score']:>7.4f}  {r['id']}" + (f"  ({where})" if where and where != r["id"] else ""))
    if answer.error:
        print(f"mlcl search: {answer.error}", file=sys.stderr)
        return 1
    return 0
