"""`mlcl import-weights` on full-size files: time, sizes and parity, for an RN50x4 model of the MLCL authors.

Builds, from random weights (the time and the sizes do not depend on them), the files a researcher holds:
OpenAI's RN50x4 release file (a TorchScript archive, float16, open_clip's `RN50x4-quickgelu` has its
layout), the authors' fine-tuned CLIP (`{'epoch', 'CLIP'}`, float32) and their combiner (`{'epoch',
'Combiner'}`, D 640, P 2560, H 5120). Then runs the command as a user does (a fresh process, `mlcl
import-weights --from mlcl-authors ...`), once from the fine-tuned CLIP and once from the release file,
and reports its wall time, the file sizes (float32 and `--half`), and the parity of the imported model
with the authors' published inference (tests/foreign_formats.py) on `--images` random images: max abs
difference of query vectors (both weightings) and gallery vectors.

    .venv/bin/python bench/import_weights.py            # RN50x4 (a few GB of RAM, ~1 min on 2 cores)
    .venv/bin/python bench/import_weights.py --quick    # a small backbone: checks the script runs
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # foreign_formats: the sources' layouts

from bench.common import machine_info, machine_line, markdown_table, write_results  # noqa: E402

FULL = {"backbone": "RN50x4", "d": 640, "p": 2560, "h": 5120, "size": 288}
QUICK = {"backbone": "oai-rn-micro", "d": 24, "p": 40, "h": 56, "size": 32}


def _mb(path: Path) -> float:
    return round(path.stat().st_size / 2**20, 1)


def _run_cli(args: List[str], env_configs: Optional[Path]) -> float:
    """Wall seconds of `mlcl import-weights ARGS` in a fresh process (what a user waits for)."""
    code = "import sys; from mlcl_cli.cli import main; sys.exit(main(sys.argv[1:]))"
    if env_configs is not None:  # the quick backbone is a test config: register it in the child first
        code = f"import open_clip; open_clip.add_model_config({str(env_configs)!r}); " + code
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, "import-weights", *args], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"mlcl import-weights failed: {done.stderr.strip()[-2000:]}")
    return wall


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a small backbone (seconds): checks the script runs")
    p.add_argument("--images", type=int, default=4, help="random images (and captions) for the parity check")
    p.add_argument("--out-dir", default=None)
    args = p.parse_args(argv)
    import torch

    from foreign_formats import (
        combiner_state, published_gallery, published_query, random_clip, reference_clip, register_small_backbones,
        save_model_file, save_openai_release,
    )
    from mlcl.model import load_checkpoint

    spec = QUICK if args.quick else FULL
    info = machine_info()
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="mlcl-import-bench-") as tmp:
        folder = Path(tmp)
        configs = None
        if args.quick:
            configs = folder / "configs"
            register_small_backbones(configs)
        clip = random_clip(spec["backbone"], seed=0)
        state = clip.state_dict()
        release = save_openai_release(clip, folder / f"{spec['backbone']}.pt")
        tuned = save_model_file("CLIP", state, folder / "tuned_clip_best.pt")
        comb = combiner_state(spec["d"], spec["p"], spec["h"], seed=1)
        combiner = save_model_file("Combiner", comb, folder / "combiner.pt")
        del clip

        g = torch.Generator().manual_seed(0)
        images = torch.randn(args.images, 3, spec["size"], spec["size"], generator=g)
        texts = [f"is darker with {n} buttons" for n in range(args.images)]
        for name, clip_file in (("fine-tuned {'CLIP'} file", tuned), ("OpenAI release file (TorchScript)", release)):
            for half in (False, True):
                out = folder / f"model{'-half' if half else ''}.pt"
                out.unlink(missing_ok=True)
                cli = ["--from", "mlcl-authors", "--clip", str(clip_file), "--combiner", str(combiner),
                       "--backbone", spec["backbone"], "--out", str(out)] + (["--half"] if half else [])
                wall = _run_cli(cli, configs)
                row = {"clip": name, "half": half, "import_s": round(wall, 2), "clip_mb": _mb(clip_file),
                       "combiner_mb": _mb(combiner), "out_mb": _mb(out)}
                if not half:  # parity of the float32 checkpoint with the published inference
                    model = load_checkpoint(out)
                    ref_state = torch.jit.load(str(release)).state_dict() if clip_file == release else state
                    ref = reference_clip(spec["backbone"], ref_state)
                    for weighting in ("released", "train"):
                        model.set_inference_weighting(weighting)
                        want = published_query(ref, comb, images, texts, swap=weighting == "train")
                        row[f"query_max_abs_diff_{weighting}"] = float((model.encode_query(images, texts) - want).abs().max())
                    row["gallery_max_abs_diff"] = float((model.encode_image(images) - published_gallery(ref, images)).abs().max())
                    del model, ref
                results.append(row)
                rows.append([name, "fp16" if half else "fp32", row["import_s"], row["clip_mb"], row["combiner_mb"],
                             row["out_mb"], row.get("query_max_abs_diff_released"), row.get("query_max_abs_diff_train"),
                             row.get("gallery_max_abs_diff")])
    table = markdown_table(["CLIP file", "stored", "import s", "CLIP MB", "combiner MB", "checkpoint MB",
                            "query diff released", "query diff train", "gallery diff"], rows)
    print(f"mlcl import-weights --from mlcl-authors --backbone {spec['backbone']} ({args.images} images for parity)")
    print(table)
    print(machine_line(info))
    path = write_results("import_weights", {"config": {**spec, "images": args.images}, "results": results,
                                            "machine": info}, args.out_dir, quick=args.quick)
    print(f"wrote {path}")
    return {"results": results, "path": str(path)}


if __name__ == "__main__":
    main()
