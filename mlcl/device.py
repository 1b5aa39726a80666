"""The one reading of a device setting (`auto`, `cpu`, `cuda`, `cuda:N`), for serving, training and evaluation."""

from __future__ import annotations

from typing import Optional


def resolve_device(name: Optional[str]) -> str:
    """`auto` (or empty): CUDA when available, else the CPU; a CUDA device where there is none is a ValueError."""
    import torch

    if name in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {name!r} is not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available here (use auto or cpu)")
    return str(device)


__all__ = ["resolve_device"]
