"""LAVIS model "mlcl": a BaseModel around mlcl.model.MLCLModel.

The fusion method (MLCL and the combiners it is compared with) is the model
config's `method:` key (mlcl/model/configs/methods.yaml): `sum` is the
stage-1 model (fine-tunes the backbone with sum fusion); `mlcl`,
`mlcl_no_sscl`, `mlcl_no_mid` and `clip4cir` are stage-2 models (frozen
backbone, trained combiner).  `init_from` copies the backbone of an mlcl
checkpoint (stage 2 from a stage-1 run); `load_from` loads all weights of an
mlcl checkpoint of the same configuration (evaluation, further training).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from lavis.models.base_model import BaseModel

from training.common import to_plain
from training.registration import register_once

log = logging.getLogger(__name__)
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "models"
IMAGE_KEYS = ("ref", "tgt", "text")
FEATURE_KEYS = ("f_ref", "f_tgt", "f_txt")


def copy_backbone(model: Any, checkpoint: str | Path) -> dict[str, Any]:
    """Load the backbone weights of an mlcl checkpoint into `model` (an MLCLModel).

    The backbones must be the same architecture; returns a description of the
    source (path, method, stage, its training extra) for logs and checkpoints.
    """
    from mlcl.model import CheckpointError, read_checkpoint

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(
            f"model.init_from={str(checkpoint)!r}: no such checkpoint; train stage 1 first (its run writes "
            "OUTPUT_DIR/model.pt) or pass --init-from CKPT"
        )
    payload = read_checkpoint(checkpoint)
    want = model.config["backbone"]
    got = payload["config"]["backbone"]
    if (want["model_name"], want["model_config"]) != (got["model_name"], got["model_config"]):
        raise CheckpointError(
            f"{checkpoint}: its backbone {got['model_name']!r} does not match this model's {want['model_name']!r} "
            "(stage 2 must use the stage-1 run's backbone)"
        )
    prefix = "backbone."
    state = {k[len(prefix):]: v for k, v in payload["state_dict"].items() if k.startswith(prefix)}
    own = model.backbone.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise CheckpointError(f"{checkpoint}: backbone weights incomplete (missing e.g. {missing[:3]})")
    model.backbone.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    extra = payload.get("extra") or {}
    return {"path": str(checkpoint), "method": payload["config"]["method"].get("name"), "stage": payload.get("stage"),
            "steps": extra.get("steps"), "metrics": extra.get("metrics")}


@register_once("model", "mlcl")
class MLCLLavis(BaseModel):
    """LAVIS wrapper: forward(samples) -> {"loss", terms...}; `.mlcl` is the plain model."""

    PRETRAINED_MODEL_CONFIG_DICT = {
        "micro": str(CONFIG_DIR / "mlcl_micro.yaml"),
        "tiny": str(CONFIG_DIR / "mlcl_tiny.yaml"),
        "rn-tiny": str(CONFIG_DIR / "mlcl_rn_tiny.yaml"),
        "rn-micro": str(CONFIG_DIR / "mlcl_rn_micro.yaml"),
        "rn50x4": str(CONFIG_DIR / "mlcl_rn50x4.yaml"),
        "vit-b-32": str(CONFIG_DIR / "mlcl_vit_b_32.yaml"),
    }

    def __init__(self, model: Any, init_info: dict[str, Any] | None = None, model_cfg: dict[str, Any] | None = None):
        super().__init__()
        self.mlcl = model
        self.init_info = init_info
        self.model_cfg = model_cfg or {}

    @classmethod
    def default_config_path(cls, model_type: str) -> str:
        if model_type not in cls.PRETRAINED_MODEL_CONFIG_DICT:
            raise KeyError(f"unknown mlcl model_type {model_type!r}; known: {', '.join(cls.PRETRAINED_MODEL_CONFIG_DICT)}")
        return cls.PRETRAINED_MODEL_CONFIG_DICT[model_type]

    @classmethod
    def from_config(cls, cfg: Any) -> "MLCLLavis":
        from mlcl.model import build_model, get_method, resolve_backbone

        cfg = to_plain(cfg)
        method = get_method(cfg.get("method", "mlcl"))
        # init_from / load_from bring the backbone's weights: `pretrained` then only names its architecture
        # (OpenAI's weights: the QuickGELU twin), and nothing is downloaded.
        own_weights = not (cfg.get("init_from") or cfg.get("load_from"))
        model = build_model(
            backbone=resolve_backbone(cfg.get("backbone", "mlcl-tiny"), cfg.get("pretrained")),
            method=method,
            pretrained=cfg.get("pretrained") if own_weights else None,
            proj_dim=cfg.get("proj_dim"),
            hidden_dim=cfg.get("hidden_dim"),
            dropout=float(cfg.get("dropout", 0.5)),
            normalize_features=bool(cfg.get("normalize_features", False)),
            inference_weighting=cfg.get("inference_weighting", "train"),
            target_pad_ratio=cfg.get("target_pad_ratio", 1.25),
        )
        init_info = None
        if cfg.get("load_from"):
            # All weights of an mlcl checkpoint of the same config (evaluate_only, or to train further).
            from mlcl.model import load_state, read_checkpoint

            load_state(model, read_checkpoint(cfg["load_from"]), source=str(cfg["load_from"]))
            init_info = {"path": str(cfg["load_from"]), "loaded": "all weights"}
        elif cfg.get("init_from"):
            init_info = copy_backbone(model, cfg["init_from"])
            log.info("backbone initialised from %s (method %s)", cfg["init_from"], init_info["method"])
        elif method.stage == 2:
            log.warning("stage-2 method %r without model.init_from: the frozen backbone is %s", method.name,
                        f"pretrained={cfg.get('pretrained')!r}" if cfg.get("pretrained") else "randomly initialised")
        model.set_stage(method.stage, train_text=bool(cfg.get("train_text", True)),
                        train_image=bool(cfg.get("train_image", True)))
        return cls(model, init_info, cfg)

    # ------------------------------------------------------------------
    @property
    def stage(self) -> int:
        return self.mlcl.stage

    @property
    def uses_sscl(self) -> bool:
        return self.mlcl.stage == 2 and self.mlcl.method.sscl

    def train(self, mode: bool = True) -> "MLCLLavis":
        super().train(mode)
        self.mlcl.train(mode)  # keeps a frozen backbone in eval mode
        return self

    def forward(self, samples: dict[str, Any]) -> dict[str, torch.Tensor]:
        """samples: images {"ref", "tgt", "text"[, "ref_aug"]} or cached backbone
        features {"f_ref", "f_tgt", "f_txt"[, "f_ref_aug"]}."""
        if "f_ref" in samples:
            return self.mlcl.loss_from_features(samples["f_ref"], samples["f_txt"], samples["f_tgt"],
                                                samples.get("f_ref_aug"), samples.get("f_neg"))
        missing = [k for k in IMAGE_KEYS if k not in samples]
        if missing:
            raise KeyError(f"a training batch needs {IMAGE_KEYS} (or cached {FEATURE_KEYS}); missing {missing}")
        return self.mlcl(samples["ref"], samples["text"], samples["tgt"], samples.get("ref_aug"),
                         neg_images=samples.get("neg"), ref_index=samples.get("ref_index"))
