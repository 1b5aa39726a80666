"""CLIP backbones from open_clip: any open_clip model name, plus our own JSON configs.

`pretrained` is an open_clip tag (e.g. "openai", downloads where a hub is
reachable), a local weights file (OpenAI's release files, the MLCL authors' and
CLIP4Cir's `{'CLIP': ...}` files, state dicts: `clip_weights`), or None
(random initialisation).
"""

from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import open_clip
import torch
from torch import nn

from .clip_weights import is_local_pretrained, load_clip_into, read_clip_weights

CONFIG_DIR = Path(__file__).resolve().parent / "configs" / "backbones"


@lru_cache(maxsize=None)
def register_configs() -> None:
    """Make our JSON configs (mlcl-tiny, ...) known to open_clip by name."""
    open_clip.add_model_config(CONFIG_DIR)


def backbone_config(model_name: str) -> dict[str, Any]:
    """The open_clip config of `model_name`; a clear error for unknown names."""
    register_configs()
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise ValueError(
            f"unknown backbone {model_name!r}: not an open_clip model name nor a config in {CONFIG_DIR} "
            f"(open_clip.list_models() lists the known names)"
        )
    return cfg


def _ensure_registered(model_name: str, model_config: dict[str, Any]) -> None:
    """Register a config carried inside a checkpoint when this install does not know the name."""
    register_configs()
    known = open_clip.get_model_config(model_name)
    if known is not None and known == model_config:
        return
    if known is not None:
        raise ValueError(
            f"backbone {model_name!r} in the checkpoint differs from the config this install has for that name; "
            "rename the config or use the install that trained it"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{model_name}.json"
        path.write_text(json.dumps(model_config))
        open_clip.add_model_config(path)


def create_backbone(
    model_name: str,
    pretrained: str | None = None,
    model_config: dict[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build an open_clip CLIP model. Returns (model, its config dict)."""
    if model_config is not None:
        _ensure_registered(model_name, model_config)
    cfg = backbone_config(model_name)
    if is_local_pretrained(pretrained):
        # Our reader, not open_clip's: it takes OpenAI's TorchScript files and the authors' {'CLIP': ...}
        # files too, and names the key and both shapes when a file does not fit (clip_weights.py).
        weights = read_clip_weights(pretrained, "model.pretrained")
        model = open_clip.create_model(model_name, pretrained=None, device=torch.device("cpu"))
        load_clip_into(model, weights, model_name)
        return model, cfg
    model = open_clip.create_model(model_name, pretrained=pretrained, device=torch.device("cpu"))
    return model, cfg


def create_tokenizer(model_name: str):
    """open_clip's tokenizer for the model (BPE vocabulary ships with open_clip: works offline)."""
    register_configs()
    return open_clip.get_tokenizer(model_name)


def image_stats(backbone: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalisation mean/std the backbone expects (open_clip stores them on the visual tower)."""
    visual = backbone.visual
    mean = getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
    return tuple(mean), tuple(std)


def image_size(backbone: nn.Module) -> int:
    size = backbone.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)
