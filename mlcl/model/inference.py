"""Speed options for a model that only encodes: device, precision (autocast) and memory format.

    from mlcl.model import load_checkpoint
    from mlcl.model.inference import prepare_for_inference
    model = prepare_for_inference(load_checkpoint(path), device="cuda", precision="bf16")

- `precision`: `fp32` (exact), `fp16` or `bf16`: the backbone's forward runs under
  `torch.autocast` in that type; its features come back as fp32, and the combiner, the
  fusion and the normalisation run in fp32. The image tower's first convolution, which
  sees the normalised pixels, stays in fp32: in bf16 (8 bits of mantissa) it alone cost
  the bundled model's vectors most of their distance to fp32 (tests/test_precision_parity.py).
  Check a reduced precision against fp32 on your own data before serving it
  (`mlcl.eval.precision_parity`).
- `memory_format`: `channels_last` stores the image tower's weights and input NHWC,
  which oneDNN (CPU) and cuDNN run faster for convolutions; `auto` picks it for
  convolutional towers (open_clip's ModifiedResNet: RN50, RN50x4, ...) and leaves
  transformers (ViT) as they are. The vectors are equal to the contiguous format's
  within float rounding.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any, ContextManager

import torch
from torch import nn

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


@dataclass(frozen=True)
class Inference:
    """How the backbone runs at inference (held by the model as `model.inference`)."""

    precision: str = "fp32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {self.precision!r}")

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self, device: torch.device) -> ContextManager[Any]:
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)


def is_convolutional(tower: nn.Module) -> bool:
    """A tower whose work is mostly convolutions (more than a patch-embedding stem)."""
    return sum(isinstance(m, nn.Conv2d) for m in tower.modules()) > 1


def _fp32_forward(forward: Any) -> Any:
    @functools.wraps(forward)
    def run(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return forward(x.float(), *args, **kwargs)

    run.mlcl_fp32 = True  # type: ignore[attr-defined]
    return run


def keep_first_conv_fp32(tower: nn.Module) -> None:
    """Run the tower's first Conv2d outside autocast (its forward is wrapped; weights and state dict unchanged)."""
    first = next((m for m in tower.modules() if isinstance(m, nn.Conv2d)), None)
    if first is not None and not getattr(first.forward, "mlcl_fp32", False):
        first.forward = _fp32_forward(first.forward)


def prepare_for_inference(model: Any, device: str | torch.device = "cpu", precision: str = "fp32",
                          memory_format: str = "auto") -> Any:
    """Move an `MLCLModel` to `device` in eval mode and set its precision and memory format; returns it."""
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {MEMORY_FORMATS}, got {memory_format!r}")
    device = torch.device(device)
    channels_last = memory_format == "channels_last" or (memory_format == "auto" and is_convolutional(model.backbone.visual))
    model.eval().to(device)
    model.backbone.visual.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    keep_first_conv_fp32(model.backbone.visual)
    model.inference = Inference(precision, channels_last)
    return model


__all__ = ["Inference", "MEMORY_FORMATS", "PRECISIONS", "is_convolutional", "keep_first_conv_fp32",
           "prepare_for_inference"]
