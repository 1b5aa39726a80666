"""`mlcl demo`: the whole serving path on the bundled model, end to end, in about a minute.

    mlcl demo                         # shapes test gallery, 5 queries shown, contact sheet PNG
    mlcl demo --gallery 3000 -k 5 --out outputs/demo.png
    mlcl demo --serve                 # then keep the Flow up: the search page at http://localhost:PORT/ui/

Starts the Flow (flows/flow.yml: encoder + indexer, gRPC + HTTP) on free
ports in a temporary workspace, indexes a shapes gallery over gRPC, runs
composed queries over gRPC and one over HTTP (printing the equivalent curl),
prints the top-k with hits marked (a hit has the target's scene), writes a
contact sheet (query image and text, then the top 5, hits framed) and stops
the Flow. jina and the model are imported inside `run`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from mlcl.commands.serve import add_flow_arguments, flow_overrides


def register(parser: argparse.ArgumentParser) -> None:
    add_flow_arguments(parser)
    parser.add_argument("--data-root", type=Path, help="shapes data folder (generated if missing; default: mlcl's cache)")
    parser.add_argument("--gallery", type=int, default=6000,
                        help="gallery images to index, whole query groups (default: 6000; 0: the full test gallery)")
    parser.add_argument("--queries", type=int, default=5, help="queries shown (default: 5)")
    parser.add_argument("--eval-queries", type=int, default=200, help="queries scored for the recall line (default: 200)")
    parser.add_argument("-k", "--limit", type=int, default=10, help="results per query (default: 10)")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo.png"), help="contact sheet PNG (default: outputs/demo.png)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per /index request (default: 256)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--serve", action="store_true",
                        help="keep the Flow up afterwards, with the search page at http://localhost:PORT/ui/ (Ctrl-C stops)")
    parser.set_defaults(func=run)


def _log(message: str, start: float) -> None:
    print(f"[{time.monotonic() - start:5.1f}s] {message}", flush=True)


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    from mlcl_executor import jina_compat, launcher

    if not args.verbose:
        launcher.quiet()
    launcher.keep_model_out()  # the model runs in the Flow's encoder, not here
    from mlcl.paths import DEFAULT_CHECKPOINT

    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    if not checkpoint.is_file():
        print(f"mlcl demo: model {checkpoint} not found (the bundled model ships with the package; "
              "or pass --checkpoint FILE)", file=sys.stderr)
        return 2
    args.checkpoint = checkpoint

    from mlcl.data.shapes import ShapesDataset, ensure_shapes

    root = ensure_shapes(args.data_root, split="test")
    ds = ShapesDataset(root, "test")
    gallery, triplets = _select(ds, args.gallery)
    _log(f"shapes test split: {len(gallery)} gallery images, {len(triplets)} queries ({root})", start)

    from docarray import DocList
    from tqdm import tqdm

    from mlcl_executor.image_source import file_to_data_uri
    from mlcl_executor.schemas import GalleryDoc, QueryDoc, StatsDoc
    from mlcl_executor.serving import batched, build_flow, curl_command, free_port, grpc_client, http_post

    grpc_port, http_port = args.grpc_port or free_port(), args.http_port or free_port()
    with tempfile.TemporaryDirectory(prefix="mlcl-demo-") as workspace:
        jina_compat.apply()
        flow = build_flow(grpc_port=grpc_port, http_port=http_port, workspace=workspace,
                          quiet_errors=not args.verbose, **flow_overrides(args))
        with launcher.supervised(flow, "mlcl demo", show_jina_banner=args.verbose, interrupt=True) as stop:
            _log(f"Flow ready: gRPC localhost:{grpc_port}, HTTP http://localhost:{http_port} (model {checkpoint.name})", start)
            client = grpc_client(port=grpc_port)

            t0 = time.monotonic()
            errors = 0
            with tqdm(total=len(gallery), unit="img", desc="indexing", disable=args.no_progress) as bar:
                for chunk in batched(gallery, args.batch_size):
                    docs = DocList[GalleryDoc](GalleryDoc(id=n, image=ds.image_path(n).read_bytes()) for n in chunk)
                    errors += sum(1 for d in client.post("/index", docs, return_type=DocList[GalleryDoc]) if d.error)
                    bar.update(len(chunk))
            count = client.post("/count", DocList[GalleryDoc](), return_type=DocList[StatsDoc])[0].count
            rate = len(gallery) / max(time.monotonic() - t0, 1e-9)
            _log(f"indexed {count} images over gRPC ({rate:.0f} images/s, {errors} errors)", start)

            def query_doc(t: dict[str, Any]) -> QueryDoc:
                return QueryDoc(image=ds.image_path(t["reference"]).read_bytes(), text=t["caption"], reference_id=t["reference"])

            def is_hit(t: dict[str, Any], match_id: str) -> bool:
                return ds.scene_key(match_id) == ds.scene_key(t["target"])

            # Recall line: one batched request of composed queries.
            scored = triplets[: max(args.eval_queries, 1)]
            answers = client.post("/search", DocList[QueryDoc](query_doc(t) for t in scored),
                                  parameters={"limit": args.limit}, return_type=DocList[QueryDoc])
            hits = [any(is_hit(t, m.id) for m in a.matches) for t, a in zip(scored, answers)]
            _log(f"recall@{args.limit} over {len(scored)} composed queries (gRPC): {100 * sum(hits) / len(hits):.1f}%", start)

            # Shown queries: spread over the split (neighbouring triplets share a reference).
            picked = triplets[:: max(1, len(triplets) // max(args.queries, 1))][: args.queries]
            shown_answers = client.post("/search", DocList[QueryDoc](query_doc(t) for t in picked),
                                        parameters={"limit": args.limit}, return_type=DocList[QueryDoc])
            shown = list(zip(picked, shown_answers))
            for i, (t, answer) in enumerate(shown, 1):
                print(f"\nquery {i}: reference {t['reference']} + \"{t['caption']}\"  (target {t['target']})")
                for rank, (m, s) in enumerate(zip(answer.matches, answer.scores), 1):
                    mark = "HIT " if is_hit(t, m.id) else "    "
                    print(f"  {rank:>2}. {mark}{s:.4f}  {m.id}")

            # The first query again over HTTP, with the curl a shell user would type.
            t = shown[0][0]
            payload = {"data": [{"image": file_to_data_uri(ds.image_path(t["reference"])), "text": t["caption"],
                                 "reference_id": t["reference"]}],
                       "parameters": {"limit": args.limit}}
            base = f"http://localhost:{http_port}"
            http_ids = [m["id"] for m in http_post(base, "/search", payload)["data"][0]["matches"]]
            same = http_ids == [m.id for m in shown[0][1].matches]
            print(f"\nquery 1 over HTTP: {'same' if same else 'DIFFERENT'} top-{args.limit} as over gRPC. The equivalent curl:")
            print("  " + curl_command(base, "/search", payload))
            print("  (the image is a base64 data URI, shortened here; `mlcl search --image FILE --text ...` does the same over gRPC)")

            out = _contact_sheet(ds, shown, args.out, is_hit)
            _log(f"contact sheet: {out}", start)
            if args.serve:
                _log(f"search page: http://localhost:{http_port}/ui/  (the Flow stays up with the {count} "
                     "indexed images; Ctrl-C stops)", start)
                try:
                    stop.wait()
                except KeyboardInterrupt:
                    pass
        _log("Flow stopped", start)
    return 0 if same else 1


def _select(ds: Any, size: int) -> tuple[list[str], list[dict[str, Any]]]:
    """The first `size` gallery images (whole groups of a query's images) and the queries they can answer."""
    gallery = list(ds.gallery)
    if size and size < len(gallery):
        cut = gallery[size - 1].rsplit("_", 1)[0]  # keep the last query group whole
        end = size
        while end < len(gallery) and gallery[end].rsplit("_", 1)[0] == cut:
            end += 1
        gallery = gallery[:end]
    names = set(gallery)
    triplets = [t for t in ds.triplets if t["reference"] in names and t["target"] in names]
    return gallery, triplets


def _font(size: int):  # noqa: ANN202 - a PIL font
    """A scalable font where Pillow has one (its bitmap default font drops spaces)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _contact_sheet(ds: Any, shown: list, out: Path, is_hit) -> Path:
    """Rows: query image + text, then the top 5 (hits framed green)."""
    from PIL import Image, ImageDraw, ImageFont

    cell, pad, text_h, top = 128, 12, 46, 5
    width = pad + (top + 1) * (cell + pad) + pad
    sheet = Image.new("RGB", (width, pad + len(shown) * (cell + text_h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(12)
    for row, (t, answer) in enumerate(shown):
        y = pad + row * (cell + text_h + pad)
        sheet.paste(ds.load_image(t["reference"]).resize((cell, cell)), (pad, y))
        draw.rectangle([pad - 3, y - 3, pad + cell + 2, y + cell + 2], outline=(40, 90, 220), width=3)
        draw.multiline_text((pad, y + cell + 3), "\n".join(textwrap.wrap(t["caption"], 24)[:3]), fill="black", font=font)
        for col, (m, s) in enumerate(list(zip(answer.matches, answer.scores))[:top], 1):
            x = pad + col * (cell + pad) + pad
            sheet.paste(ds.load_image(m.id).resize((cell, cell)), (x, y))
            hit = is_hit(t, m.id)
            draw.rectangle([x - 4, y - 4, x + cell + 3, y + cell + 3], outline=(20, 170, 40) if hit else (200, 200, 200),
                           width=5 if hit else 1)
            label = f"rank {col}  score {s:.3f}" + ("  HIT" if hit else "")
            draw.text((x, y + cell + 3), label, fill=(20, 120, 30) if hit else "black", font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
