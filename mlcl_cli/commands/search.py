"""`mlcl search`: a composed query (reference image + modifier text) against a running Flow.

    mlcl search --image shirt.png --text "is red with shorter sleeves" -k 5
    mlcl search --image shirt.png --json          # image only: similar images
    mlcl search --text "a blue circle"            # text only
    mlcl search --image shirt.png --text "in red" --filter '{"category": {"$in": ["shirt", "toptee"]}}'
    mlcl search --image shirt.png --text "in red" -k 10 --offset 10   # the second page

The image is read here and sent as bytes (gRPC), so it need not exist on the server.
When the reference image is itself in the index (`mlcl index` keeps each file's
SHA-256 in `tags.sha256`), it is left out of the results, and the command says so
(on the first page; later pages leave it out on the server, by a filter);
`--keep-reference` keeps it. `--reference-id ID` leaves out the gallery document
with that id (the id `mlcl index` gave it: its path relative to the indexed folder).
`--filter` is a filter in docarray's query language over the gallery's tags
(docs/serving.md, "Filters and pages"). A request the Flow refuses (a `-k` above
its cap, a malformed filter) ends with its reason on one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DIGEST_TAG = "sha256"  # where `mlcl index` keeps a file's SHA-256


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", type=Path, help="reference image file")
    parser.add_argument("--text", help="modifier text")
    parser.add_argument("-k", "--limit", type=int, default=10, help="number of results (default: 10)")
    parser.add_argument("--offset", type=int, default=0, help="skip this many results first: the next page (default: 0)")
    parser.add_argument("--filter", dest="filter", metavar="JSON",
                        help='only gallery documents whose tags pass this filter, e.g. \'{"category": {"$eq": "dress"}}\'')
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
    if args.limit < 1 or args.offset < 0:
        print(f"mlcl search: -k/--limit must be at least 1 and --offset at least 0, got {args.limit} and {args.offset}",
              file=sys.stderr)
        return 2
    try:
        user_filter = json.loads(args.filter) if args.filter else None
    except ValueError as exc:
        print(f"mlcl search: --filter is not JSON ({exc})", file=sys.stderr)
        return 2
    from mlcl_cli import launcher

    launcher.quiet()
    from docarray import DocList

    from mlcl_cli.client import NoFlowError, check_flow, file_digest, grpc_client, refusal
    from mlcl_executor.schemas import QueryDoc

    digest = file_digest(args.image) if args.image is not None and not args.keep_reference else None
    query = QueryDoc(image=args.image.read_bytes() if args.image else None, text=args.text, reference_id=args.reference_id)
    # First page: one more than asked, the reference image is dropped here (and named); later pages, or a -k at the
    # Flow's cap: a filter leaves it out on the server.
    attempts = [(args.limit + 1, user_filter)] if digest and args.offset == 0 else []
    attempts.append((args.limit, both(user_filter, {DIGEST_TAG: {"$neq": digest}}) if digest else user_filter))
    try:
        check_flow(args.host, args.port)
        client = grpc_client(args.host, args.port)
        for i, (limit, flt) in enumerate(attempts):
            parameters = {"limit": limit, "offset": args.offset, **({"filter": flt} if flt else {})}
            try:
                answer = client.post("/search", DocList[QueryDoc]([query]), parameters=parameters,
                                     return_type=DocList[QueryDoc])[0]
                break
            except Exception as exc:
                reason = refusal(exc)
                if reason is None:
                    raise
                if i + 1 == len(attempts):
                    hint = " (pages go further: --offset)" if "'limit'" in reason else ""
                    print(f"mlcl search: the Flow refused the search: {reason}{hint}", file=sys.stderr)
                    return 1
    except NoFlowError as exc:
        print(f"mlcl search: {exc}", file=sys.stderr)
        return 1
    except ConnectionError as exc:
        print(f"mlcl search: lost the Flow at {args.host}:{args.port} ({str(exc).splitlines()[0][:160]})", file=sys.stderr)
        return 1
    pairs = list(zip(answer.matches, answer.scores))
    left_out = [m.id for m, _ in pairs if digest and (m.tags or {}).get(DIGEST_TAG) == digest]
    pairs = [(m, s) for m, s in pairs if m.id not in left_out][: args.limit]
    results = [{"rank": args.offset + r + 1, "id": m.id, "score": round(float(s), 6), "uri": m.uri, "tags": m.tags}
               for r, (m, s) in enumerate(pairs)]
    if args.json:
        print(json.dumps({"query": {"image": str(args.image) if args.image else None, "text": args.text,
                                    "filter": user_filter, "offset": args.offset},
                          "left_out": left_out, "error": answer.error, "matches": results}, indent=2))
    elif not answer.error:
        if left_out:
            print(f"(left out {left_out[0]!r}: it is the reference image itself; --keep-reference keeps it)")
        print(f"{'rank':>4}  {'score':>7}  id")
        for r in results:
            where = r["uri"] or ""
            print(f"{r['rank']:>4}  {r['score']:>7.4f}  {r['id']}" + (f"  ({where})" if where and where != r["id"] else ""))
    if answer.error:
        print(f"mlcl search: {answer.error}", file=sys.stderr)
        return 1
    return 0


def both(a: "dict | None", b: dict) -> dict:
    """Two filters that must both hold (`a` may be None)."""
    return {"$and": [a, b]} if a else b
