"""`mlcl count`, `mlcl delete`, `mlcl clear`: manage the gallery of a running Flow.

    mlcl count                          # documents in the index, its vector width and model id
    mlcl delete shirts/a.png shirts/b.png
    mlcl delete --prefix shop1/         # every id that starts with shop1/ (see `mlcl index --id-prefix`)
    mlcl clear                          # asks first; --yes to skip the question (scripts)

Deletes and clear are writes: with `$MLCL_WRITE_TOKEN` set they carry the write
token (a Flow that has one refuses writes without it, in one line). Clearing
also forgets the model id the workspace recorded: an empty index takes any model.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _flow_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="localhost", help="Flow host (default: localhost)")
    parser.add_argument("--port", type=int, default=54321, help="gRPC port (default: 54321)")


def register_count(parser: argparse.ArgumentParser) -> None:
    _flow_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run_count)


def register_delete(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="*", metavar="ID", help="ids to delete (as `mlcl index` gave them)")
    parser.add_argument("--prefix", help="delete every id that starts with PREFIX")
    _flow_arguments(parser)
    parser.set_defaults(func=run_delete)


def register_clear(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask (needed without a terminal)")
    _flow_arguments(parser)
    parser.set_defaults(func=run_clear)


def post(args: argparse.Namespace, endpoint: str, docs: Any, return_type: Any, **kwargs: Any) -> Any:
    """One request to the Flow at --host/--port; no Flow, a refusal or a lost connection end in one line."""
    from mlcl_cli import launcher
    from mlcl_cli.cli import UserError
    from mlcl_cli.client import NoFlowError, check_flow, grpc_client, refusal
    from mlcl_cli.commands.index import refused_or_lost

    launcher.quiet()
    try:
        check_flow(args.host, args.port)
    except NoFlowError as exc:
        raise UserError(str(exc)) from None
    try:
        return grpc_client(args.host, args.port).post(endpoint, docs, return_type=return_type, **kwargs)
    except Exception as exc:
        if refusal(exc) is None and not isinstance(exc, ConnectionError):
            raise
        raise UserError(refused_or_lost(exc, args)) from None


def stats(args: argparse.Namespace) -> Any:
    """The Flow's `/count` answer (a `StatsDoc`: count, shards, dim, model)."""
    from docarray import DocList

    from mlcl_executor.schemas import GalleryDoc, StatsDoc

    return post(args, "/count", DocList[GalleryDoc](), DocList[StatsDoc])[0]


def run_count(args: argparse.Namespace) -> int:
    answer = stats(args)
    if args.json:
        print(json.dumps({"count": answer.count, "dim": answer.dim, "model_id": answer.model, "shards": answer.shards}))
        return 0
    shards = f"; per shard {', '.join(f'{k}: {v}' for k, v in sorted(answer.shards.items()))}" if len(answer.shards) > 1 else ""
    print(f"{answer.count} documents (dim {answer.dim if answer.dim is not None else '-'}, "
          f"model {answer.model or 'not recorded'}){shards}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from docarray import DocList

    from mlcl_cli.cli import UserError
    from mlcl_executor.schemas import GalleryDoc

    if bool(args.ids) == (args.prefix is not None):
        raise UserError("name the ids to delete, or give --prefix PREFIX (not both)")
    if args.prefix is not None:
        if not args.prefix:
            raise UserError("--prefix is empty (`mlcl clear` deletes everything)")
        answer = post(args, "/delete", DocList[GalleryDoc](), DocList[GalleryDoc], parameters={"prefix": args.prefix})
        print(f"deleted {len(answer)} documents whose id starts with {args.prefix!r}; the index holds {stats(args).count}")
        return 0
    ids = list(dict.fromkeys(args.ids))
    answer = post(args, "/delete", DocList[GalleryDoc]([GalleryDoc(id=i) for i in ids]), DocList[GalleryDoc])
    errors = [d.error for d in answer if d.error]
    for error in errors:
        print(f"mlcl delete: {error}", file=sys.stderr)
    print(f"deleted {len(ids) - len(errors)} of {len(ids)} ids; the index holds {stats(args).count}")
    return 1 if errors else 0


def run_clear(args: argparse.Namespace) -> int:
    from docarray import DocList

    from mlcl_cli.cli import UserError
    from mlcl_executor.schemas import GalleryDoc

    count = stats(args).count
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError(f"this deletes all {count} documents of the index at {args.host}:{args.port}: add --yes")
        reply = input(f"Delete all {count} documents of the index at {args.host}:{args.port}? [y/N] ")
        if reply.strip().lower() not in ("y", "yes"):
            print("mlcl clear: nothing deleted")
            return 1
    post(args, "/clear", DocList[GalleryDoc](), DocList[GalleryDoc])
    print(f"cleared: deleted {count} documents; the index holds {stats(args).count} (any model may write to it now)")
    return 0
