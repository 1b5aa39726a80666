"""`mlcl search`: a composed query (reference image + modifier text) against a running Flow.

    mlcl search --image shirt.png --text "is red with shorter sleeves" -k 5
    mlcl search --image shirt.png --json          # image only: similar images
    mlcl search --text "a blue circle"            # text only

The image is read here and sent as bytes (gRPC), so it need not exist on the server.
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
    from docarray import DocList

    from mlcl_executor.schemas import QueryDoc
    from mlcl_executor.serving import grpc_client

    query = QueryDoc(image=args.image.read_bytes() if args.image else None, text=args.text, reference_id=args.reference_id)
    client = grpc_client(args.host, args.port)
    answer = client.post("/search", DocList[QueryDoc]([query]), parameters={"limit": args.limit},
                         return_type=DocList[QueryDoc])[0]
    results = [{"rank": r + 1, "id": m.id, "score": round(float(s), 6), "uri": m.uri, "tags": m.tags}
               for r, (m, s) in enumerate(zip(answer.matches, answer.scores))]
    if args.json:
        print(json.dumps({"query": {"image": str(args.image) if args.image else None, "text": args.text},
                          "error": answer.error, "matches": results}, indent=2))
    elif answer.error:
        pass
    else:
        print(f"{'rank':>4}  {'score':>7}  id")
        for r in results:
            where = r["tags"].get("path") or r["uri"] or ""
            print(f"{r['rank']:>4}  {r['score']:>7.4f}  {r['id']}" + (f"  ({where})" if where and where != r["id"] else ""))
    if answer.error:
        print(f"mlcl search: {answer.error}", file=sys.stderr)
        return 1
    return 0
