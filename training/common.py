"""Small helpers shared by the training modules (no LAVIS imports here)."""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch


@dataclass(frozen=True)
class ImageSpec:
    """How the model wants its images: side, normalisation, "target pad" ratio.

    Training images go through the same geometric steps as the model's eval
    transform (target pad, bicubic resize, centre crop), so a model trained
    here sees at evaluation exactly the pixels it was trained on.
    """

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad_ratio: float | None = 1.25

    @classmethod
    def from_model(cls, model: Any) -> "ImageSpec":
        return cls(int(model.image_size), tuple(model.image_mean), tuple(model.image_std),
                   model.config.get("target_pad_ratio", 1.25))

    @classmethod
    def from_model_cfg(cls, model_cfg: Any) -> "ImageSpec":
        """Without building the model: side from the backbone config, open_clip's default statistics."""
        import open_clip

        from mlcl.model import backbone_config

        vision = backbone_config(model_cfg.get("backbone", "mlcl-tiny"))["vision_cfg"]
        size = vision.get("image_size", 224)
        size = int(size[0] if isinstance(size, (list, tuple)) else size)
        mean = tuple(vision.get("image_mean") or open_clip.OPENAI_DATASET_MEAN)
        std = tuple(vision.get("image_std") or open_clip.OPENAI_DATASET_STD)
        return cls(size, mean, std, model_cfg.get("target_pad_ratio", 1.25))

    def key(self) -> str:
        return f"{self.size}px-pad{self.pad_ratio}"

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] floats in [0,1] -> normalised, on x's device."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def geometric(self):
        """PIL -> PIL: target pad, bicubic resize, centre crop (the eval transform minus ToTensor/Normalize)."""
        from torchvision import transforms as T

        from mlcl.model.transforms import TargetPad

        steps: list[Any] = [_to_rgb]
        if self.pad_ratio:
            steps.append(TargetPad(self.pad_ratio))
        steps += [T.Resize(self.size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(self.size)]
        return T.Compose(steps)


def _to_rgb(image):
    return image.convert("RGB")


def resolve_device(name: str | None) -> torch.device:
    """"auto" (or None): CUDA when available, else CPU (`mlcl.device.resolve_device`)."""
    from mlcl.device import resolve_device as resolve

    return torch.device(resolve(name))


def configure_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(int(n))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover
        pass


def to_plain(obj: Any) -> Any:
    """OmegaConf nodes, tuples, paths, tensors -> plain JSON-like Python (safe for torch weights_only)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            obj = OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    if isinstance(obj, float):
        # 12 significant digits: recalls such as 99.85000000000001 (binary noise of 100 * hits / n)
        # read back as 99.85 in summary.json and `mlcl info`; 5e-07 stays 5e-07.
        return float(f"{obj:.12g}")
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    return str(obj)


def state_fingerprint(module: torch.nn.Module) -> str:
    """sha1 of a module's tensors (names, shapes, bytes): identifies frozen backbone weights."""
    h = hashlib.sha1()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def files_fingerprint(paths: Iterable[str | os.PathLike[str]]) -> str:
    """sha1 of (name, size, mtime) of files: changes when data are regenerated."""
    h = hashlib.sha1()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def text_fingerprint(items: Sequence[Any]) -> str:
    return hashlib.sha1(json.dumps(to_plain(list(items)), sort_keys=True).encode()).hexdigest()
