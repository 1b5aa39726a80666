"""Training speed on this machine: samples/s of stage 1 and of stage 2 (re-encoding vs cached features).

Plain loops over the model API (what the LAVIS runner's steps do, without its logging/checkpointing):
  stage 1            backbone fine-tune with sum fusion: forward + backward + AdamW step through the
                     image and text encoders (ref, text, target per sample)
  stage 2, re-encode frozen backbone re-encodes ref, target, caption and the SSCL view of the reference every
                     step (no gradient through it); forward + backward + step of the combiner (method `mlcl`)
  stage 2, cached    the backbone features are computed once (`cache build`) and every step only gathers
                     rows and runs the combiner's forward + backward + step

Inputs are random pixels at the model's resolution and shapes-style captions (the step cost does not depend
on the pixel values; the tokenizer pads every caption to the context length).

    .venv/bin/python bench/training_speed.py            # batch 128
    .venv/bin/python bench/training_speed.py --quick    # seconds
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_info, machine_line, markdown_table, percentiles, progress, write_results  # noqa: E402

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "gray", "cyan"]
SHAPES = ["circle", "square", "triangle", "star", "cross", "diamond"]


def captions(n: int, seed: int = 0) -> List[str]:
    rng = random.Random(seed)
    verbs = ["make the {c1} {s} {c2}", "replace the {c1} {s} with a {c2} {s2}", "remove the {c1} {s}",
             "add a {c2} {s2} in the top left", "move the {c1} {s} to the right"]
    return [rng.choice(verbs).format(c1=rng.choice(COLORS), c2=rng.choice(COLORS), s=rng.choice(SHAPES),
                                     s2=rng.choice(SHAPES)) for _ in range(n)]


def time_steps(step: Callable[[int], None], steps: int, warmup: int, max_s: float, desc: str) -> Dict[str, Any]:
    for i in range(warmup):
        step(i)
    times: List[float] = []
    deadline = time.perf_counter() + max_s
    for i in progress(range(steps), desc=desc, unit="step"):
        t0 = time.perf_counter()
        step(warmup + i)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    return {"steps": len(times), "step_s": percentiles(times), "total_s": sum(times)}


def run(args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    from mlcl.model import build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    b = args.batch_size
    model = build_model(args.backbone, method="sum").to(device)
    size = model.image_size
    pool = max(b * 2, args.pool)  # distinct samples the loops draw batches from

    def images(n: int) -> torch.Tensor:
        return torch.randn(n, 3, size, size, device=device)

    texts_all = captions(pool, args.seed)
    ref_all, tgt_all, aug_all = images(pool), images(pool), images(pool)

    def batch_idx(i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(args.seed + i)
        return torch.randperm(pool, generator=g)[:b]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    results: Dict[str, Any] = {}

    # ---------------------------------------------------------- stage 1
    model.set_stage(1)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)

    def step1(i: int) -> None:
        idx = batch_idx(i)
        loss = model(ref_all[idx], [texts_all[j] for j in idx.tolist()], tgt_all[idx])["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()

    results["stage1"] = time_steps(step1, args.steps, args.warmup, args.max_s, "stage 1")

    # ---------------------------------------------------------- stage 2
    model2 = build_model(args.backbone, method=args.method).to(device)
    model2.backbone.load_state_dict(model.backbone.state_dict())
    del model, opt
    model2.set_stage(2)
    model2.train()
    opt2 = torch.optim.AdamW(model2.parameter_groups(lr=2e-5))
    sscl = model2.method.sscl

    def step2_encode(i: int) -> None:
        idx = batch_idx(i)
        out = model2(ref_all[idx], [texts_all[j] for j in idx.tolist()], tgt_all[idx], aug_all[idx] if sscl else None)
        opt2.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt2.step()
        sync()

    results["stage2_reencode"] = time_steps(step2_encode, args.steps, args.warmup, args.max_s, "stage 2 re-encode")

    # Feature cache: the frozen backbone's features of every sample, once.
    t0 = time.perf_counter()
    with torch.no_grad():
        model2.backbone.eval()
        chunks = range(0, pool, b)
        f_ref = torch.cat([model2.image_features(ref_all[s : s + b]) for s in chunks])
        f_tgt = torch.cat([model2.image_features(tgt_all[s : s + b]) for s in chunks])
        f_txt = torch.cat([model2.text_features(texts_all[s : s + b]) for s in chunks])
        f_aug = torch.cat([model2.image_features(aug_all[s : s + b]) for s in chunks]) if sscl else None
    sync()
    build_s = time.perf_counter() - t0
    results["cache_build"] = {"samples": pool, "seconds": build_s, "samples_per_s": pool / build_s,
                              "encodes_per_sample": 4 if sscl else 3}

    def step2_cached(i: int) -> None:
        idx = batch_idx(i).to(device)
        out = model2.loss_from_features(f_ref[idx], f_txt[idx], f_tgt[idx], f_aug[idx] if sscl else None)
        opt2.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt2.step()
        sync()

    cached_steps = args.steps * args.cached_steps_factor
    results["stage2_cached"] = time_steps(step2_cached, cached_steps, args.warmup, args.max_s, "stage 2 cached")

    for key in ("stage1", "stage2_reencode", "stage2_cached"):
        r = results[key]
        r["samples_per_s"] = b / r["step_s"]["p50"]
        r["samples_per_s_mean"] = b * r["steps"] / r["total_s"]
    results["stage2_cached_speedup"] = results["stage2_cached"]["samples_per_s"] / results["stage2_reencode"]["samples_per_s"]
    # Epoch over `pool` samples including building the cache once (what a 1-epoch run pays).
    per_epoch_cached = build_s + pool / results["stage2_cached"]["samples_per_s"]
    per_epoch_encode = pool / results["stage2_reencode"]["samples_per_s"]
    results["stage2_epochs_to_break_even"] = build_s / max(1e-9, per_epoch_encode - pool / results["stage2_cached"]["samples_per_s"])
    results["stage2_first_epoch_s"] = {"cached_incl_build": per_epoch_cached, "reencode": per_epoch_encode}
    return results


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="mlcl-rn-tiny", help="the default model's backbone")
    p.add_argument("--method", default="mlcl", help="stage-2 method (mlcl: three levels + SSCL)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=8, help="timed steps per phase (after warm-up)")
    p.add_argument("--cached-steps-factor", type=int, default=10, help="cached steps are cheap: time this many times more")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--pool", type=int, default=1024, help="distinct samples (the cache holds their features)")
    p.add_argument("--max-s", type=float, default=180.0, help="per phase: stop timing after this many seconds")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None, help="results file name (default: training_speed[_<device>])")
    p.add_argument("--quick", action="store_true", help="batch 16, 2 steps (smoke test)")
    p.add_argument("--out-dir", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.batch_size, args.steps, args.warmup, args.pool, args.cached_steps_factor, args.max_s = 8, 1, 1, 16, 2, 5.0
        args.threads = args.threads or 1
    return args


def table(res: Dict[str, Any], batch: int) -> str:
    rows = []
    for key, label in (("stage1", "stage 1 (backbone fwd+bwd, sum fusion)"),
                       ("stage2_reencode", "stage 2, re-encoding through the frozen backbone"),
                       ("stage2_cached", "stage 2, cached features")):
        r = res[key]
        rows.append([label, batch, r["steps"], r["step_s"]["p50"] * 1e3, r["samples_per_s"]])
    c = res["cache_build"]
    rows.append([f"cache build ({c['encodes_per_sample']} encodes/sample, no grad)", batch, 1, c["seconds"] * 1e3, c["samples_per_s"]])
    return markdown_table(["phase", "batch", "steps timed", "step p50 ms", "samples/s"], rows)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # before machine_info, which records the thread count
    info = machine_info()
    res = run(args)
    name = args.name or ("training_speed" + ("" if args.device == "cpu" else f"_{args.device.split(':')[0]}"))
    config = {k: v for k, v in vars(args).items() if k != "out_dir"}
    payload = {"benchmark": name, "machine": info, "config": config, "results": res}
    path = write_results(name, payload, Path(args.out_dir) if args.out_dir else None, quick=args.quick)
    print(f"\n### Training speed ({args.backbone}, {args.device}, batch {args.batch_size})\n")
    print(table(res, args.batch_size))
    print(f"\nStage 2 with cached features: {res['stage2_cached_speedup']:.1f}x the samples/s of re-encoding; "
          f"the cache pays for itself after {res['stage2_epochs_to_break_even']:.2f} epochs.")
    print(f"\nMachine: {machine_line(info)}\nJSON: {path}")
    return payload


if __name__ == "__main__":
    main()
