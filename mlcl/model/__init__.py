"""The MLCL model in plain PyTorch (no Jina, no LAVIS).

    from mlcl.model import build_model, save_checkpoint, load_checkpoint
    model = build_model("mlcl-tiny", method="mlcl")            # random init, our config
    model = build_model("RN50x4", pretrained="openai")          # open_clip name + tag (needs a hub)
    model = build_model("ViT-B-32", pretrained="/path/ckpt.pt") # local weights (OpenAI's ViT-B-32.pt too)
    save_checkpoint(model, "model.pt"); model = load_checkpoint("model.pt")
"""

from __future__ import annotations

from typing import Any

from .backbone import backbone_config, create_backbone, register_configs
from .clip_weights import WeightsError, read_clip_weights, resolve_backbone
from .checkpoint import CheckpointError, check_compatible, load_checkpoint, load_state, read_checkpoint, save_checkpoint
from .method import MethodConfig, available_methods, get_method
from .mlcl import INFERENCE_WEIGHTINGS, MLCLModel


def build_model(
    backbone: str = "mlcl-tiny",
    method: str | dict[str, Any] | MethodConfig = "mlcl",
    pretrained: str | None = None,
    proj_dim: int | None = None,
    hidden_dim: int | None = None,
    dropout: float = 0.5,
    normalize_features: bool = False,
    inference_weighting: str = "train",
    target_pad_ratio: float | None = 1.25,
) -> MLCLModel:
    """Build an MLCL model around an open_clip backbone (see module docstring).

    proj_dim/hidden_dim default to the authors' 4*D and 8*D.
    normalize_features: False (default, as CLIP4Cir and the MLCL authors) feeds the raw
    encoder outputs to the sum and the combiner; True L2-normalises them first.
    """
    backbone = resolve_backbone(backbone, pretrained)  # OpenAI's weights: the QuickGELU twin (clip_weights.py)
    cfg = backbone_config(backbone)
    d = int(cfg["embed_dim"])
    config = {
        "backbone": {"model_name": backbone, "model_config": cfg, "pretrained": pretrained},
        "method": get_method(method).to_dict(),
        "combiner": {"proj_dim": proj_dim or 4 * d, "hidden_dim": hidden_dim or 8 * d, "dropout": dropout},
        "normalize_features": normalize_features,
        "inference_weighting": inference_weighting,
        "target_pad_ratio": target_pad_ratio,
    }
    return MLCLModel(config, pretrained=pretrained)


__all__ = [
    "INFERENCE_WEIGHTINGS", "CheckpointError", "MLCLModel", "MethodConfig", "WeightsError", "available_methods",
    "backbone_config", "build_model", "check_compatible", "create_backbone", "get_method", "load_checkpoint",
    "load_state", "read_checkpoint", "read_clip_weights", "register_configs", "resolve_backbone", "save_checkpoint",
]
