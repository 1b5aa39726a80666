"""SSCL augmentation policies, per data set, as config (training/configs/augment.yaml).

An `Augment` holds PIL ops (applied per image, e.g. in DataLoader workers) and
tensor ops (applied to a batch of floats in [0, 1] with per-sample random
parameters, cheap on CPU and GPU).  Data sets call `augment.pil(image)` on
each PIL image and `augment.tensor(batch)` on stacked floats.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

POLICY_FILE = Path(__file__).resolve().parents[1] / "configs" / "augment.yaml"
PIL_OPS = ("random_resized_crop", "color_jitter", "hflip", "vflip", "rotate90", "autocontrast",
           "perspective", "grayscale", "pil_blur")
TENSOR_OPS = ("translate", "blur", "noise")


@lru_cache(maxsize=1)
def load_policies() -> dict[str, dict[str, Any]]:
    import yaml

    with open(POLICY_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def resolve_policy(spec: Any) -> dict[str, Any]:
    """A policy name, a mapping {ops: [...]} (optionally {policy: NAME} to start from a named one), or None."""
    from training.common import to_plain

    spec = to_plain(spec)
    if spec is None or spec == "none":
        return {"name": "none", "ops": []}
    policies = load_policies()
    if isinstance(spec, str):
        if spec not in policies:
            raise KeyError(f"unknown augmentation policy {spec!r}; known: {', '.join(policies)} (see {POLICY_FILE})")
        return {"name": spec, **copy.deepcopy(policies[spec])}
    if isinstance(spec, dict):
        base = resolve_policy(spec["policy"]) if "policy" in spec else {"name": "custom", "ops": []}
        out = {**base, **{k: v for k, v in spec.items() if k != "policy"}}
        return out
    raise TypeError(f"augmentation policy must be a name or a mapping, got {spec!r}")


# ---------------------------------------------------------------- PIL ops
class RandomRotate90:
    """With probability p, rotate by 90, 180 or 270 degrees (picklable for DataLoader workers)."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, image):
        from PIL import Image

        # torch's RNG, like torchvision's transforms: seeded by the feature-cache build and DataLoader workers.
        if float(torch.rand(())) >= self.p:
            return image
        k = int(torch.randint(0, 3, ()))
        return image.transpose((Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)[k])


def _pil_op(op: dict[str, Any], size: int) -> Callable:
    from torchvision import transforms as T

    name = op["op"]
    p = float(op.get("p", 1.0))
    if name == "random_resized_crop":
        return T.RandomResizedCrop(size, scale=tuple(op.get("scale", (0.8, 1.0))),
                                   ratio=tuple(op.get("ratio", (3 / 4, 4 / 3))),
                                   interpolation=T.InterpolationMode.BICUBIC)
    if name == "color_jitter":
        jitter = T.ColorJitter(op.get("brightness", 0), op.get("contrast", 0), op.get("saturation", 0), op.get("hue", 0))
        return T.RandomApply([jitter], p=p)
    if name == "hflip":
        return T.RandomHorizontalFlip(p)
    if name == "vflip":
        return T.RandomVerticalFlip(p)
    if name == "rotate90":
        return RandomRotate90(p)
    if name == "autocontrast":
        return T.RandomAutocontrast(p)
    if name == "perspective":
        return T.RandomPerspective(float(op.get("distortion", 0.2)), p=p)
    if name == "grayscale":
        return T.RandomGrayscale(p)
    if name == "pil_blur":
        sigma = tuple(op.get("sigma", (0.1, 1.0)))
        return T.RandomApply([T.GaussianBlur(int(op.get("kernel", 3)), sigma)], p=p)
    raise KeyError(f"unknown PIL augmentation op {name!r}; known: {PIL_OPS}")


# ------------------------------------------------------------- tensor ops
def translate(x: torch.Tensor, max_frac: float, fill: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image by its own integer (dx, dy) in [-m, m], m = round(max_frac * side) (>= 1); `fill` enters."""
    b, c, h, w = x.shape
    m = max(1, round(max_frac * max(h, w)))
    padded = F.pad(x, (m, m, m, m), value=fill)
    shifts = torch.randint(0, 2 * m + 1, (2, b), generator=generator).to(x.device)
    rows = shifts[0].view(b, 1) + torch.arange(h, device=x.device).view(1, h)  # [B,H]
    cols = shifts[1].view(b, 1) + torch.arange(w, device=x.device).view(1, w)  # [B,W]
    bi = torch.arange(b, device=x.device).view(b, 1, 1)
    out = padded.permute(0, 2, 3, 1)[bi, rows.view(b, h, 1), cols.view(b, 1, w)]  # [B,H,W,C]
    return out.permute(0, 3, 1, 2).contiguous()


def blur(x: torch.Tensor, p: float, sigma: tuple[float, float], generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian blur (3x3 separable) with per-image sigma, applied to each image with probability p."""
    b, c, h, w = x.shape
    lo, hi = float(sigma[0]), float(sigma[1])
    s = lo + (hi - lo) * torch.rand(b, generator=generator)
    apply = torch.rand(b, generator=generator) < p
    taps = torch.tensor([-1.0, 0.0, 1.0])
    k = torch.exp(-(taps.view(1, 3) ** 2) / (2 * s.view(b, 1) ** 2))
    k = k / k.sum(dim=1, keepdim=True)
    k[~apply] = torch.tensor([0.0, 1.0, 0.0])
    k = k.to(x.device, x.dtype).repeat_interleave(c, dim=0)  # [B*C,3]
    y = x.reshape(1, b * c, h, w)
    y = F.pad(y, (1, 1, 1, 1), mode="replicate")
    y = F.conv2d(y, k.view(b * c, 1, 1, 3), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, 3, 1), groups=b * c)
    return y.view(b, c, h, w)


def noise(x: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    n = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    return (x + std * n).clamp_(0.0, 1.0)


class Augment:
    """One policy: `pil(image)` then `tensor(batch)`; `describe()` identifies it (cache keys, checkpoints)."""

    def __init__(self, policy: dict[str, Any], size: int):
        self.policy = policy
        self.name = policy.get("name", "custom")
        self.size = size
        self.pil_ops: list[Callable] = []
        self.tensor_ops: list[dict[str, Any]] = []
        seen_tensor = False
        for op in policy.get("ops", []) or []:
            if not isinstance(op, dict) or "op" not in op:
                raise ValueError(f"augmentation policy {self.name!r}: each op is a mapping with an 'op' key, got {op!r}")
            if op["op"] in TENSOR_OPS:
                self.tensor_ops.append(dict(op))
                seen_tensor = True
            elif op["op"] in PIL_OPS:
                if seen_tensor:
                    raise ValueError(f"augmentation policy {self.name!r}: PIL ops must come before tensor ops")
                self.pil_ops.append(_pil_op(op, size))
            else:
                raise KeyError(f"augmentation policy {self.name!r}: unknown op {op['op']!r}; "
                               f"known: {PIL_OPS + TENSOR_OPS}")

    @property
    def is_identity(self) -> bool:
        return not self.pil_ops and not self.tensor_ops

    def pil(self, image):
        for op in self.pil_ops:
            image = op(image)
        return image

    def tensor(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x: [B,3,H,W] (or [3,H,W]) floats in [0,1]."""
        single = x.dim() == 3
        if single:
            x = x.unsqueeze(0)
        for op in self.tensor_ops:
            name = op["op"]
            if name == "translate":
                x = translate(x, float(op.get("max_frac", 0.03)), float(op.get("fill", 1.0)), generator)
            elif name == "blur":
                x = blur(x, float(op.get("p", 1.0)), tuple(op.get("sigma", (0.3, 0.8))), generator)
            elif name == "noise":
                x = noise(x, float(op.get("std", 0.03)), generator)
        return x[0] if single else x

    def describe(self) -> dict[str, Any]:
        from training.common import to_plain

        return to_plain({"name": self.name, "ops": self.policy.get("ops", [])})

    def __repr__(self) -> str:
        return f"Augment({self.name!r}, pil={len(self.pil_ops)}, tensor={len(self.tensor_ops)})"


def build_augment(spec: Any, size: int) -> Augment:
    return Augment(resolve_policy(spec), size)


def check_policy(spec: Any) -> None:
    """Raise on an unknown policy or op (no image size needed)."""
    build_augment(spec, 32)
