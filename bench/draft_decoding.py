"""How much JPEG draft decoding moves the model input and the embedding, and what it saves.

Photos (bench/photos.py: gradients plus pixel noise, and scenes with objects, hard edges and fine stripes;
4000x3000 quality 90 by default, landscape and portrait) are decoded twice: at full size, and as the
served encoder decodes them (`mlcl.image_decode.open_image` told the model input and a 128 px thumbnail:
the decoder's scaled DCT at 1/2, 1/4 or 1/8). For each model geometry (the bundled model, 64 px;
RN50x4, 288 px; ViT-B-32, 224 px):

  pixels      PSNR (dB) and mean absolute difference of the model's uint8 input, draft vs full
  embedding   cosine between the gallery vectors of the draft and the full decode; `bundled` is a trained
              model; RN50x4 and ViT-B-32 have random weights, whose vectors of different photos are almost
              parallel, so their row also gives (1 - cosine draft/full) / (1 - cosine between photos)
  time        decode + pad/resize/crop per photo, full vs draft (one core, this process)

`--shapes DIR`: every image of a generated shapes split (PNG) through the new loader (the eval path, full
size; and the served path, draft on) against the former `Image.open(...).convert("RGB")`: the count of
model inputs that are bit-identical.

    .venv/bin/python bench/draft_decoding.py                    # 24 photos, bundled + RN50x4 + ViT-B-32
    .venv/bin/python bench/draft_decoding.py --shapes ~/.cache/mlcl/data/shapes-seed0-64px --split test
    .venv/bin/python bench/draft_decoding.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_info, machine_line, markdown_table, write_results  # noqa: E402
from bench.photos import photo_folder  # noqa: E402


def decode_both(paths: Sequence[Path], pixels: Any, thumbnail: int) -> Dict[str, Any]:
    """Model inputs (uint8) of each photo decoded in full and in draft, with the time of each (ms per photo)."""
    import numpy as np
    from PIL import Image

    from mlcl.image_decode import open_image

    full, draft, t_full, t_draft, sizes = [], [], 0.0, 0.0, set()
    for p in paths:
        t0 = time.perf_counter()
        with Image.open(p) as im:
            full.append(pixels(im.convert("RGB")))  # the former decode
        t1 = time.perf_counter()
        image = open_image(p, pixels, thumbnail)
        draft.append(pixels(image))
        t2 = time.perf_counter()
        t_full, t_draft = t_full + t1 - t0, t_draft + t2 - t1
        sizes.add(f"{image.size[0]}x{image.size[1]}")
    f, d = np.stack(full).astype(np.float64), np.stack(draft).astype(np.float64)
    mse = ((f - d) ** 2).reshape(len(paths), -1).mean(axis=1)
    return {"full": full, "draft": draft, "decoded_sizes": sorted(sizes),
            "psnr_db_min": float(10 * np.log10(255.0**2 / mse.max())), "psnr_db_mean": float(np.mean(10 * np.log10(255.0**2 / mse))),
            "mean_abs_diff": float(np.abs(f - d).mean()),
            "full_ms": t_full / len(paths) * 1e3, "draft_ms": t_draft / len(paths) * 1e3}


def cosines(model: Any, full: List[Any], draft: List[Any]) -> Dict[str, float]:
    import torch

    with torch.inference_mode():
        vf = torch.cat([model.encode_image(model.images_from_pixels(full[s : s + 16])) for s in range(0, len(full), 16)])
        vd = torch.cat([model.encode_image(model.images_from_pixels(draft[s : s + 16])) for s in range(0, len(draft), 16)])
    cos = (vf * vd).sum(-1)
    gram = vf @ vf.T
    n = len(vf)
    between = float((gram.sum() - gram.diagonal().sum()) / max(1, n * n - n))
    return {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "cosine_between_photos_mean": between,
            "draft_shift_over_spread": float((1 - cos.mean()) / max(1e-12, 1 - between))}


def model_for(name: str) -> Any:
    import torch

    from mlcl.model import build_model, load_checkpoint
    from mlcl.paths import DEFAULT_CHECKPOINT

    if name == "bundled":
        return load_checkpoint(DEFAULT_CHECKPOINT)
    torch.manual_seed(0)
    return build_model(name).eval()


def shapes_identity(root: Path, split: str, limit: Optional[int]) -> Dict[str, Any]:
    """Shapes images (PNG): the new loader's model input vs the former convert("RGB"), bit for bit."""
    import numpy as np
    from PIL import Image

    from mlcl.data.images import open_rgb
    from mlcl.data.shapes import ShapesDataset
    from mlcl.image_decode import open_image
    from mlcl.model import load_checkpoint
    from mlcl.paths import DEFAULT_CHECKPOINT

    ds = ShapesDataset(root, split)
    pixels = load_checkpoint(DEFAULT_CHECKPOINT).pixels
    names = ds.gallery[:limit] if limit else ds.gallery
    same_eval = same_served = 0
    for name in names:
        path = ds.image_path(name)
        with Image.open(path) as im:
            before = pixels(im.convert("RGB"))
        same_eval += bool(np.array_equal(pixels(open_rgb(path)), before))
        same_served += bool(np.array_equal(pixels(open_image(path, pixels, thumbnail=128)), before))
    return {"root": str(root), "split": split, "images": len(names), "identical_eval_path": same_eval,
            "identical_served_path": same_served}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", type=int, default=24, help="photos of each orientation")
    p.add_argument("--photo-size", type=int, nargs=2, default=(4000, 3000), metavar=("W", "H"))
    p.add_argument("--models", nargs="+", default=["bundled", "RN50x4", "ViT-B-32"])
    p.add_argument("--thumbnail", type=int, default=128, help="thumbnail px (the encoder's default; 0: queries)")
    p.add_argument("--shapes", type=Path, default=None, help="a generated shapes data set root")
    p.add_argument("--split", default="test")
    p.add_argument("--shapes-limit", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="4 small photos, the bundled model")
    p.add_argument("--out-dir", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.photos, args.photo_size, args.models, args.shapes_limit = 2, (1600, 1200), ["bundled"], 20
    w, h = args.photo_size
    kinds = ("gradient", "scene")
    paths = sorted(photo_folder(args.photos, (w, h), kinds).glob("*.jpg")) + sorted(
        photo_folder(args.photos, (h, w), kinds, seed=1000).glob("*.jpg"))
    info = machine_info()
    rows = []
    for name in args.models:
        model = model_for(name)
        both = decode_both(paths, model.pixels, args.thumbnail)
        row = {"model": name, "image_size": model.image_size, "random_weights": name != "bundled",
               **{k: v for k, v in both.items() if k not in ("full", "draft")}, **cosines(model, both["full"], both["draft"])}
        rows.append(row)
        print(f"{name}: {row}", file=sys.stderr, flush=True)
    payload: Dict[str, Any] = {"config": {**{k: v for k, v in vars(args).items() if k != "out_dir"}},
                               "photos": len(paths), "machine": info, "rows": rows}
    if args.shapes:
        payload["shapes"] = shapes_identity(args.shapes, args.split, args.shapes_limit)
    path = write_results("draft_decoding", payload, args.out_dir, quick=args.quick)
    print(f"\n{machine_line(info)}\n{len(paths)} photos ({w}x{h} and {h}x{w}, gradients and scenes), thumbnail {args.thumbnail} px\n")
    print(markdown_table(
        ["model", "input px", "decoded at", "pixels PSNR dB (min / mean)", "mean |diff|", "cosine draft vs full (min / mean)",
         "cosine between photos", "shift / spread", "full decode ms", "draft decode ms"],
        [[r["model"] + (" (random)" if r["random_weights"] else ""), r["image_size"], ", ".join(r["decoded_sizes"]),
          f"{r['psnr_db_min']:.1f} / {r['psnr_db_mean']:.1f}", r["mean_abs_diff"],
          f"{r['cosine_min']:.6f} / {r['cosine_mean']:.6f}", r["cosine_between_photos_mean"], r["draft_shift_over_spread"],
          r["full_ms"], r["draft_ms"]] for r in rows]))
    if "shapes" in payload:
        s = payload["shapes"]
        print(f"\nshapes {s['split']}: {s['identical_eval_path']} of {s['images']} model inputs bit-identical on the eval path, "
              f"{s['identical_served_path']} on the served path")
    print(f"\nresults: {path}")
    return payload


if __name__ == "__main__":
    main()
