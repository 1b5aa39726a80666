"""GPU probe (issue 10): compare stage-1 recipes for the shapes default model (docs/results/README.md).

    python docs/results/recipe_probe.py D_rn_groups_raw,E_rn_fresh_raw 2000     # $OUT/probe_*.json

Plain PyTorch loop over the mlcl model API (no LAVIS): procedural groups
(mlcl.data.shapes.procedural), sum fusion, AdamW 1e-3 cosine, batch of Q
queries; val R@1/R@10 (mlcl.eval, official protocol) at a few steps.
"""
import json
import math
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
# beside a copy of mlcl/ on the device, or at docs/results/ of a checkout
sys.path.insert(0, HERE if os.path.isdir(os.path.join(HERE, "mlcl")) else os.path.dirname(os.path.dirname(HERE)))
from mlcl.data.shapes import ensure_shapes  # noqa: E402
from mlcl.data.shapes.procedural import render_array, training_group  # noqa: E402
from mlcl.eval.evaluate import evaluate  # noqa: E402
from mlcl.model import build_model  # noqa: E402


class Batches(torch.utils.data.Dataset):
    def __init__(self, seed, k, s, queries, pool, steps):
        self.seed, self.k, self.s, self.g, self.pool, self.steps = seed, k, s, queries // k, pool, steps

    def __len__(self):
        return self.steps

    def groups(self, step):
        if self.pool is None:
            return [step * self.g + j for j in range(self.g)]
        per_epoch = self.pool // self.g
        epoch, b = divmod(step, per_epoch)
        perm = torch.randperm(self.pool, generator=torch.Generator().manual_seed(1000 + epoch))
        return perm[b * self.g:(b + 1) * self.g].tolist()

    def __getitem__(self, step):
        import numpy as np

        recs = [training_group(self.seed, g, self.k, self.s) for g in self.groups(step)]
        ref = torch.from_numpy(np.stack([render_array(r.reference) for r in recs]))
        tgt = torch.from_numpy(np.stack([render_array(t) for r in recs for t in r.targets]))
        out = {"ref": ref, "tgt": tgt, "text": [c for r in recs for c in r.captions]}
        if self.s:
            out["neg"] = torch.from_numpy(np.stack([render_array(n) for r in recs for ns in r.negatives for n in ns]))
        return out


def lr_at(step, total, init=1e-3, min_lr=1e-5, warm=100):
    if step < warm:
        return init * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return min_lr + (init - min_lr) * 0.5 * (1 + math.cos(math.pi * t))


def run(name, backbone, k, s, pool, norm, steps, evals, root, queries=128, method="sum", init_from=None, lr=1e-3):
    torch.manual_seed(42)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(backbone, method=method, normalize_features=norm)
    if init_from is not None:
        model.backbone.load_state_dict(init_from)
    model = model.to(dev)
    model.set_stage(1 if method == "sum" else 2)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    nod = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05 if method == "sum" else 0.0},
                             {"params": nod, "weight_decay": 0.0}], lr=lr)
    mean = torch.tensor(model.image_mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(model.image_std, device=dev).view(1, 3, 1, 1)
    norm_img = lambda x: (x.to(dev, non_blocking=True).float() / 255 - mean) / std  # noqa: E731
    loader = torch.utils.data.DataLoader(Batches(1, k, s, queries, pool, steps), batch_size=None, shuffle=False,
                                         num_workers=5, prefetch_factor=4, persistent_workers=False)
    curve = []
    t0 = time.time()
    model.train()
    ema = None
    for step, b in enumerate(loader):
        for gr in opt.param_groups:
            gr["lr"] = lr_at(step, steps, init=lr)
        ref_index = torch.arange(b["ref"].shape[0], device=dev).repeat_interleave(k)
        ref = norm_img(b["ref"])
        extra = {}
        if method != "sum" and model.method.sscl:
            x = b["ref"].to(dev).float() / 255
            x = torch.roll(x, shifts=(int(torch.randint(-2, 3, ())), int(torch.randint(-2, 3, ()))), dims=(2, 3))
            x = (x + 0.03 * torch.randn_like(x)).clamp(0, 1)
            extra["ref_images_aug"] = ((x - mean) / std)[ref_index]
        if method == "sum":
            out = model(ref, b["text"], norm_img(b["tgt"]), neg_images=norm_img(b["neg"]) if "neg" in b else None,
                        ref_index=ref_index)
        else:
            with torch.no_grad():
                parts = [ref, norm_img(b["tgt"])] + ([norm_img(b["neg"])] if "neg" in b else [])
                f = model.image_features(torch.cat(parts)).split([p.shape[0] for p in parts])
                f_txt = model.text_features(b["text"])
                f_aug = model.image_features(extra["ref_images_aug"]) if extra else None
            out = model.loss_from_features(f[0][ref_index], f_txt, f[1], f_aug, f[2] if len(f) > 2 else None)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        ema = float(out["loss"]) if ema is None else 0.95 * ema + 0.05 * float(out["loss"])
        if step + 1 in evals:
            model.eval()
            r = evaluate(model, "shapes", root, split="val", batch_size=512, num_workers=6, progress=False)
            model.train()
            m = r.metrics
            curve.append({"step": step + 1, "R@1": m.get("R@1"), "R@10": m.get("R@10"), "loss": round(ema, 4),
                          "s": round(time.time() - t0, 1)})
            print(name, curve[-1], flush=True)
    return model, curve


def main():
    out_dir = os.environ.get("OUT", "/tmp/out")
    which = sys.argv[1]
    steps = int(sys.argv[2])
    root = ensure_shapes(None, "val", workers=8)
    evals = {steps // 4, steps // 2, (3 * steps) // 4, steps}
    recipes = {
        "A_vit_fixed20k_norm": ("mlcl-tiny", 1, 0, 20000, True),
        "B_vit_fresh_raw": ("mlcl-tiny", 1, 0, None, False),
        "C_vit_groups_raw": ("mlcl-tiny", 4, 1, None, False),
        "D_rn_groups_raw": ("mlcl-rn-tiny", 4, 1, None, False),
        "E_rn_fresh_raw": ("mlcl-rn-tiny", 1, 0, None, False),
        "F_rn_groups_norm": ("mlcl-rn-tiny", 4, 1, None, True),
        "G_rn_fixed20k_raw": ("mlcl-rn-tiny", 1, 0, 20000, False),
        "H_rn_groups_k4s2": ("mlcl-rn-tiny", 4, 2, None, False),
        "I_rn_groups_k8s1": ("mlcl-rn-tiny", 8, 1, None, False),
        "J_rn16_groups_raw": ("mlcl-rn-tiny", 4, 1, None, False),
        "K_rn16_fresh_raw": ("mlcl-rn-tiny", 1, 0, None, False),
    }
    results = {}
    for name in which.split(","):
        bb, k, s, pool, norm = recipes[name]
        model, curve = run(name, bb, k, s, pool, norm, steps, evals, root)
        results[name] = curve
        if os.environ.get("FINAL") == name:
            model.eval()
            for sp in ("test", "novel"):
                r2 = ensure_shapes(None, sp, workers=8)
                m = evaluate(model, "shapes", r2, split=sp, batch_size=512, num_workers=6, progress=False).metrics
                results[f"{name}:{sp}"] = {"R@1": m.get("R@1"), "R@10": m.get("R@10")}
                print(name, sp, results[f"{name}:{sp}"], flush=True)
        if os.environ.get("STAGE2") == name:
            state = {kk: v.detach().clone() for kk, v in model.backbone.state_dict().items()}
            for meth in ("clip4cir", "mlcl"):
                _, c2 = run(f"{name}+{meth}", bb, k, s, None, norm, int(os.environ.get("S2STEPS", 600)),
                            {int(os.environ.get("S2STEPS", 600))}, root, method=meth, init_from=state, lr=5e-4)
                results[f"{name}+{meth}"] = c2
        with open(os.path.join(out_dir, f"probe_{which.replace(',', '_')}.json"), "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
