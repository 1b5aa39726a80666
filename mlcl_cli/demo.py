"""The end-to-end demo's work (`mlcl demo` parses its arguments and calls `run_demo`).

Starts the Flow (flows/flow.yml: encoder + indexer, gRPC + HTTP) on free
ports in a temporary workspace, indexes a shapes gallery over gRPC, runs
composed queries over gRPC and one over HTTP (printing the equivalent curl),
prints the top-k with hits marked (a hit has the target's scene), writes a
contact sheet (`mlcl.viz`) and stops the Flow. jina is imported inside `run_demo`.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple


@dataclass
class DemoOptions:
    checkpoint: Path
    data_root: Optional[Path] = None
    gallery: int = 6000  # images to index (whole query groups); 0: the full test gallery
    queries: int = 5  # queries shown
    eval_queries: int = 200  # queries scored for the recall line
    limit: int = 10
    out: Path = Path("outputs/demo.png")
    batch_size: int = 256
    progress: bool = True
    grpc_port: Optional[int] = None
    http_port: Optional[int] = None
    verbose: bool = False
    overrides: Dict[str, Any] = field(default_factory=dict)  # build_flow's encoder_with / indexer_with
    serve: bool = False  # keep the Flow up afterwards (the search page at /ui/) until Ctrl-C


def select_gallery(ds: Any, size: int) -> Tuple[List[str], List[Dict[str, Any]]]:
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


def run_demo(opts: DemoOptions) -> bool:
    """The demo; True when the HTTP answer matched the gRPC one."""
    start = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - start:5.1f}s] {message}", flush=True)

    from mlcl_executor import jina_patches
    from mlcl_executor.torch_gate import keep_model_out

    from . import launcher

    if not opts.verbose:
        launcher.quiet()
    keep_model_out()  # the model runs in the Flow's encoder, not here

    from mlcl.data.shapes import ShapesDataset, ensure_shapes
    from mlcl.viz import contact_sheet

    root = ensure_shapes(opts.data_root, split="test")
    ds = ShapesDataset(root, "test")
    gallery, triplets = select_gallery(ds, opts.gallery)
    log(f"shapes test split: {len(gallery)} gallery images, {len(triplets)} queries ({root})")

    from docarray import DocList
    from tqdm import tqdm

    from mlcl_executor.image_source import file_to_data_uri
    from mlcl_executor.schemas import GalleryDoc, QueryDoc, StatsDoc
    from mlcl_cli.flows import build_flow, free_port
    from mlcl_cli.client import batched, curl_command, grpc_client, http_post

    grpc_port, http_port = opts.grpc_port or free_port(), opts.http_port or free_port()
    with tempfile.TemporaryDirectory(prefix="mlcl-demo-") as workspace:
        jina_patches.apply()
        flow = build_flow(grpc_port=grpc_port, http_port=http_port, workspace=workspace,
                          quiet_errors=not opts.verbose, **opts.overrides)
        with launcher.supervised(flow, "mlcl demo", show_jina_banner=opts.verbose, interrupt=True) as stop:
            log(f"Flow ready: gRPC localhost:{grpc_port}, HTTP http://localhost:{http_port} (model {opts.checkpoint.name})")
            client = grpc_client(port=grpc_port)

            t0 = time.monotonic()
            errors = 0
            with tqdm(total=len(gallery), unit="img", desc="indexing", disable=not opts.progress) as bar:
                for chunk in batched(gallery, opts.batch_size):
                    docs = DocList[GalleryDoc](GalleryDoc(id=n, image=ds.image_path(n).read_bytes()) for n in chunk)
                    errors += sum(1 for d in client.post("/index", docs, return_type=DocList[GalleryDoc]) if d.error)
                    bar.update(len(chunk))
            count = client.post("/count", DocList[GalleryDoc](), return_type=DocList[StatsDoc])[0].count
            rate = len(gallery) / max(time.monotonic() - t0, 1e-9)
            log(f"indexed {count} images over gRPC ({rate:.0f} images/s, {errors} errors)")

            def query_doc(t: Dict[str, Any]) -> QueryDoc:
                return QueryDoc(image=ds.image_path(t["reference"]).read_bytes(), text=t["caption"], reference_id=t["reference"])

            def is_hit(t: Dict[str, Any], match_id: str) -> bool:
                return ds.scene_key(match_id) == ds.scene_key(t["target"])

            # Recall line: one batched request of composed queries.
            scored = triplets[: max(opts.eval_queries, 1)]
            answers = client.post("/search", DocList[QueryDoc](query_doc(t) for t in scored),
                                  parameters={"limit": opts.limit}, return_type=DocList[QueryDoc])
            hits = [any(is_hit(t, m.id) for m in a.matches) for t, a in zip(scored, answers)]
            log(f"recall@{opts.limit} over {len(scored)} composed queries (gRPC): {100 * sum(hits) / len(hits):.1f}%")

            # Shown queries: spread over the split (neighbouring triplets share a reference).
            picked = triplets[:: max(1, len(triplets) // max(opts.queries, 1))][: opts.queries]
            shown_answers = client.post("/search", DocList[QueryDoc](query_doc(t) for t in picked),
                                        parameters={"limit": opts.limit}, return_type=DocList[QueryDoc])
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
                       "parameters": {"limit": opts.limit}}
            base = f"http://localhost:{http_port}"
            http_ids = [m["id"] for m in http_post(base, "/search", payload)["data"][0]["matches"]]
            same = http_ids == [m.id for m in shown[0][1].matches]
            body = opts.out.with_name(opts.out.stem + "-query.json")  # the image is a data URI: too long for a command line
            body.parent.mkdir(parents=True, exist_ok=True)
            body.write_text(json.dumps(payload))
            print(f"\nquery 1 over HTTP: {'same' if same else 'DIFFERENT'} top-{opts.limit} as over gRPC. The equivalent curl "
                  f"(the request body, its image a base64 data URI, is in {body}):")
            print("  " + curl_command(base, "/search", payload, body_file=str(body)))
            print("  (`mlcl search --image FILE --text ...` does the same over gRPC; with --serve the Flow stays up to run it)")

            rows = [(t["reference"], t["caption"], list(zip([m.id for m in a.matches], a.scores))) for t, a in shown]
            out = contact_sheet(rows, opts.out, ds.load_image, lambda row, match_id: is_hit(shown[row][0], match_id))
            log(f"contact sheet: {out}")
            if opts.serve:
                log(f"search page: http://localhost:{http_port}/ui/  (the Flow stays up with the {count} "
                    "indexed images; Ctrl-C stops)")
                try:
                    stop.wait()
                except KeyboardInterrupt:
                    pass
        log("Flow stopped")
    return same


__all__ = ["DemoOptions", "run_demo", "select_gallery"]
