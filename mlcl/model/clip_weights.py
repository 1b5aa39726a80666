"""CLIP weights from files other programs wrote, in OpenAI's state-dict layout.

The files a researcher holds (formats checked against the public sources, see
docs/training.md, "Serve a model trained with the authors' code"):

- OpenAI's release files (`RN50x4.pt`, `ViT-B-32.pt`, ...): TorchScript
  archives whose state dict also carries `input_resolution`,
  `context_length` and `vocab_size` (OpenAI's `build_model` drops them);
- the MLCL authors' and CLIP4Cir's fine-tuned CLIPs: `torch.save({'epoch': n,
  'CLIP': model.state_dict()})` of an OpenAI `clip` model;
- plain state dicts (`torch.save(model.state_dict())`) and open_clip training
  checkpoints (`{'state_dict': ...}`, keys maybe prefixed `module.`).

All hold OpenAI's layout (`visual.*`, `transformer.*`, `token_embedding.weight`,
`positional_embedding`, `ln_final.*`, `text_projection`, `logit_scale`), which
open_clip's CLIP models share. OpenAI's CLIPs use QuickGELU in the text
tower: weights known to come from OpenAI's code select open_clip's
`-quickgelu` variant of the named backbone (`resolve_backbone`).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import open_clip
import torch
from torch import nn

from ..checkpoint_header import FORMAT as CHECKPOINT_FORMAT

log = logging.getLogger(__name__)

# Entries of OpenAI's TorchScript state dict that are not weights (OpenAI's build_model drops them too).
TORCHSCRIPT_EXTRAS = ("input_resolution", "context_length", "vocab_size")
CLIP_KEY = "CLIP"  # the authors' / CLIP4Cir's save_model: {'epoch': n, <module class name>: state_dict}
QUICKGELU_SUFFIX = "-quickgelu"


class WeightsError(ValueError):
    """A weights file of the wrong kind, or one that does not fit the model it is meant for."""


@dataclass
class ClipWeights:
    """CLIP weights read from a file: the state dict in OpenAI's layout and where it came from."""

    path: Path
    kind: str  # "openai-torchscript" | "clip-package" ({'CLIP': ...}) | "state-dict" | "open_clip-checkpoint"
    state: dict[str, torch.Tensor]
    epoch: int | None = None


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive (torch.jit.save) rather than a torch.save file: it holds compiled code."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


def read_torch_file(path: str | Path, what: str) -> Any:
    """The object in a torch file (TorchScript archives as a ScriptModule); one-line errors naming the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    if is_torchscript(path):
        try:
            with warnings.catch_warnings():  # torch deprecates TorchScript; OpenAI's release files are TorchScript
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # a damaged archive raises many kinds
            raise WeightsError(f"{path}: a damaged TorchScript archive ({first_line(exc)})") from None
    try:
        # weights_only: a pickle from elsewhere never runs code here; mmap: big files are not read whole.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:
        raise WeightsError(f"{path}: not a PyTorch weights file {what} can be read from ({first_line(exc)})") from None


def first_line(exc: BaseException) -> str:
    """An exception as one line (torch's load errors run to a dozen lines of advice)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _strip_module_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _describe_keys(obj: Mapping[str, Any]) -> str:
    keys = list(obj)
    return ", ".join(map(repr, keys[:6])) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")


def read_clip_weights(path: str | Path, what: str = "CLIP weights") -> ClipWeights:
    """Read any of the module docstring's file kinds; WeightsError names the file and what it holds instead."""
    path = Path(path).expanduser()
    obj = read_torch_file(path, what)
    epoch = None
    if isinstance(obj, torch.jit.ScriptModule):
        state = {k: v for k, v in obj.state_dict().items() if k not in TORCHSCRIPT_EXTRAS}
        kind = "openai-torchscript"
    elif isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: an mlcl checkpoint, not CLIP weights: serve or evaluate it as it is "
                           "(--checkpoint), or start stage 2 from it (--init-from)")
    elif isinstance(obj, Mapping) and CLIP_KEY in obj:
        state, kind = obj[CLIP_KEY], "clip-package"
        epoch = obj.get("epoch") if isinstance(obj.get("epoch"), int) else None
    elif isinstance(obj, Mapping) and "Combiner" in obj:
        raise WeightsError(f"{path}: a combiner file (key 'Combiner'), not CLIP weights: give it as --combiner")
    elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        state, kind = obj["state_dict"], "open_clip-checkpoint"
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, kind = obj, "state-dict"
    else:
        held = _describe_keys(obj) if isinstance(obj, Mapping) else type(obj).__name__
        raise WeightsError(f"{path}: not CLIP weights (it holds {held}; expected an OpenAI release file, "
                           f"a {{'{CLIP_KEY}': state_dict}} file from the authors' code, or a state dict)")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: the {kind} entry is not a state dict of tensors")
    state = _strip_module_prefix(state)
    if not any(k.startswith("visual.") for k in state) or "token_embedding.weight" not in state:
        raise WeightsError(f"{path}: not a CLIP in OpenAI's layout (no visual.* or token_embedding.weight; "
                           f"it holds {_describe_keys(state)})")
    return ClipWeights(path, kind, dict(state), epoch)


# ------------------------------------------------------------------ fitting a state to a model
def expected_shapes(module_factory: Any) -> dict[str, torch.Size]:
    """Names and shapes of the state dict of the module `module_factory()` builds, built on the meta
    device (no memory, no initialisation cost: a full-size RN50x4 in a few milliseconds)."""
    with torch.device("meta"):
        module = module_factory()
    return {k: v.shape for k, v in module.state_dict().items()}


def backbone_shapes(model_name: str) -> dict[str, torch.Size]:
    """State-dict names and shapes of an open_clip backbone (see `expected_shapes`)."""
    from .backbone import register_configs

    register_configs()
    return expected_shapes(lambda: open_clip.create_model(model_name, device="meta"))


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(t.shape)


def check_fit(
    state: Mapping[str, Any],
    expected: Mapping[str, torch.Size],
    source: str,
    target: str,
    rename: Mapping[str, str] | None = None,
    optional: tuple[str, ...] = (),
) -> None:
    """Raise WeightsError unless `state` has exactly the names and shapes of `expected`.

    `rename` maps our names back to the file's (so messages name the key as the
    file spells it); names ending with an entry of `optional` may be absent.
    """
    rename = rename or {}
    theirs = lambda k: rename.get(k, k)  # noqa: E731
    missing = [k for k in expected if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and _shape(state[k]) != tuple(expected[k])]
    problems = []
    for k in shapes[:3]:
        problems.append(f"{theirs(k)} has shape {_shape(state[k])}, {target} expects {tuple(expected[k])}")
    if len(shapes) > 3:
        problems.append(f"{len(shapes) - 3} more shapes differ")
    if missing:
        problems.append(f"missing key {theirs(missing[0])}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if unexpected:
        problems.append(f"unexpected key {theirs(unexpected[0])}"
                        + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""))
    if problems:
        raise WeightsError(f"{source} does not fit {target}: " + "; ".join(problems))


def fit_clip_state(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size], source: str, target: str,
) -> dict[str, torch.Tensor]:
    """`state` checked against `expected` (names and shapes), after the harmless differences are
    evened out: BatchNorm step counters some exports leave out, a logit scale stored as (1,) or ()."""
    state = dict(state)
    for k in expected:
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros((), dtype=torch.long)
    for k in ("logit_scale", "logit_bias"):
        if k in state and k in expected and state[k].numel() == math.prod(expected[k]):
            state[k] = state[k].reshape(expected[k])
    check_fit(state, expected, source, target)
    return state


def load_clip_into(backbone: nn.Module, weights: ClipWeights, model_name: str) -> None:
    """Load `weights` into an open_clip backbone after checking every name and shape."""
    own = backbone.state_dict()
    state = fit_clip_state(weights.state, {k: v.shape for k, v in own.items()}, str(weights.path),
                           f"backbone {model_name}")
    backbone.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


# ------------------------------------------------------------------ QuickGELU: which open_clip config
def _is_local_path(pretrained: str) -> bool:
    return os.sep in pretrained or "/" in pretrained or bool(Path(pretrained).suffix) or Path(pretrained).is_file()


def is_local_pretrained(pretrained: str | None) -> bool:
    """`pretrained` names a file (else it is an open_clip tag such as "openai", or None)."""
    return bool(pretrained) and _is_local_path(str(pretrained))


def quick_gelu_weights(model_name: str, pretrained: str | None) -> bool:
    """Whether `pretrained` holds weights trained with QuickGELU: open_clip's tag config says so,
    or the file was written by OpenAI's code. Plain state dicts cannot tell: False (the name decides)."""
    if not pretrained:
        return False
    if not is_local_pretrained(pretrained):
        return bool((open_clip.get_pretrained_cfg(model_name, pretrained) or {}).get("quick_gelu", False))
    path = Path(pretrained).expanduser()
    if not path.is_file():
        return False  # the loader says the file is missing
    if is_torchscript(path):
        return True
    obj = read_torch_file(path, "model.pretrained")
    return isinstance(obj, Mapping) and CLIP_KEY in obj


def quick_gelu_name(model_name: str) -> str:
    """The open_clip name of `model_name` with QuickGELU (itself when it already has it)."""
    from .backbone import backbone_config

    cfg = backbone_config(model_name)
    if cfg.get("quick_gelu"):
        return model_name
    candidate = model_name + QUICKGELU_SUFFIX
    other = open_clip.get_model_config(candidate)
    if other is None or {**cfg, "quick_gelu": True} != other:
        raise WeightsError(
            f"OpenAI's weights need QuickGELU, and backbone {model_name!r} has no {candidate!r} twin: "
            "add a config with \"quick_gelu\": true (mlcl/model/configs/backbones/)")
    return candidate


def resolve_backbone(model_name: str, pretrained: str | None) -> str:
    """`model_name`, or its `-quickgelu` twin when `pretrained` holds QuickGELU weights (OpenAI's)."""
    if not quick_gelu_weights(model_name, pretrained):
        return model_name
    name = quick_gelu_name(model_name)
    if name != model_name:
        log.info("%s: %s holds OpenAI weights (QuickGELU): backbone %s", model_name, pretrained, name)
    return name


__all__ = [
    "ClipWeights", "WeightsError", "backbone_shapes", "check_fit", "expected_shapes", "fit_clip_state",
    "is_local_pretrained", "is_torchscript", "load_clip_into", "quick_gelu_name", "quick_gelu_weights",
    "read_clip_weights", "read_torch_file", "resolve_backbone",
]
