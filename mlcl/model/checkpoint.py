"""One checkpoint file: the weights plus everything needed to rebuild the model."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import open_clip
import torch

from .. import __version__
from .clip_weights import first_line, is_torchscript
from .mlcl import MLCLModel

from ..checkpoint_header import FORMAT, FORMAT_VERSION  # noqa: E402  (one definition, readable without torch)


class CheckpointError(ValueError):
    """A file that is not an mlcl checkpoint, or one that does not fit the model."""


def save_checkpoint(
    model: MLCLModel,
    path: str | Path,
    extra: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write weights + config + versions. `half` stores float tensors as fp16
    (the bundled model, to keep the package small); loading restores fp32."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config,
        "stage": model.stage,
        "state_dict": state,
        "versions": {"mlcl": __version__, "torch": str(torch.__version__), "open_clip": str(open_clip.__version__),
                     "python": platform.python_version()},
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a crash mid-write never leaves a truncated checkpoint
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate the file's payload (no model built)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if is_torchscript(path):
        raise CheckpointError(f"{path}: a TorchScript archive (an OpenAI CLIP release file?), not an mlcl checkpoint: "
                              "use it as model.pretrained, or with a combiner in mlcl import-weights")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign/corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint ({first_line(exc)})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an mlcl checkpoint (no 'format': '{FORMAT}' key; a bare open_clip or LAVIS "
            "checkpoint goes to build_model(..., pretrained=PATH) instead; the MLCL authors' or CLIP4Cir's "
            "files to mlcl import-weights)"
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {payload['format_version']} is newer than this mlcl reads ({FORMAT_VERSION})")
    return payload


def _describe(config: dict[str, Any]) -> dict[str, Any]:
    """The fields of a config that must agree for weights to fit."""
    bb = config["backbone"]
    method = config["method"]
    comb = config.get("combiner", {})
    return {
        "backbone": bb["model_name"],
        "embedding width": bb["model_config"]["embed_dim"],
        "image size": bb["model_config"]["vision_cfg"].get("image_size"),
        "method": method["name"] if isinstance(method, dict) else method,
        "fusion levels": list(method.get("levels", [])) if isinstance(method, dict) else None,
        "combiner projection width": comb.get("proj_dim"),
        "combiner hidden width": comb.get("hidden_dim"),
    }


def check_compatible(model_config: dict[str, Any], ckpt_config: dict[str, Any], source: str = "checkpoint") -> None:
    """Raise CheckpointError naming every field where the checkpoint and the model disagree."""
    want, got = _describe(model_config), _describe(ckpt_config)
    diffs = [f"{k}: model has {want[k]!r}, {source} has {got[k]!r}" for k in want if want[k] != got[k]]
    if diffs:
        raise CheckpointError(f"{source} does not fit this model: " + "; ".join(diffs))


def load_state(model: MLCLModel, payload: dict[str, Any], source: str = "checkpoint") -> None:
    """Load weights into an existing model after checking the configs agree."""
    check_compatible(model.config, payload["config"], source)
    own = model.state_dict()
    state = payload["state_dict"]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensors (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"shape mismatch: {shapes[:3]}")
        raise CheckpointError(f"{source}: weights do not fit the model: " + "; ".join(parts))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", eval_mode: bool = True) -> MLCLModel:
    """Rebuild the model a checkpoint describes and load its weights."""
    payload = read_checkpoint(path)
    model = MLCLModel(payload["config"])
    model.set_stage(payload.get("stage", model.stage))
    load_state(model, payload, source=str(path))
    model.to(device)
    return model.eval() if eval_mode else model
