"""Models trained with other code, as our checkpoints: the MLCL authors' and CLIP4Cir's (CLIP + combiner).

    model, info = import_weights("mlcl-authors", clip="tuned_clip_best.pt", combiner="combiner.pt",
                                 backbone="RN50x4")
    save_checkpoint(model, "model.pt", extra={"import": info})

The sources and their key mappings are data (configs/imports.yaml, read by
`mlcl.weight_sources`). The imported model computes the source's published
inference: raw CLIP features into the combiner (`normalize_features: false`),
the source's level weights (`inference_weighting`), the source's
preprocessing ("targetpad" 1.25 unless told otherwise), and gallery vectors
normalize(encode_image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from ..checkpoint_header import FORMAT as CHECKPOINT_FORMAT
from ..model_id import checkpoint_id
from ..weight_sources import import_sources, pad_ratio
from . import build_model  # (this module is not imported by the package's __init__: no cycle)
from .backbone import backbone_config
from .clip_weights import (
    CLIP_KEY,
    ClipWeights,
    WeightsError,
    backbone_shapes,
    check_fit,
    expected_shapes,
    fit_clip_state,
    quick_gelu_name,
    read_clip_weights,
    read_torch_file,
)
from .combiner import MultiLevelCombiner
from .method import get_method
from .mlcl import MLCLModel

COMBINER_KEY = "Combiner"


def _clip_state(clip: ClipWeights, clip_text: ClipWeights | None, expected: Mapping[str, torch.Size],
                backbone: str) -> dict[str, torch.Tensor]:
    """The backbone's state from one file, or its image tower from `clip` and the rest from `clip_text`
    (the authors fine-tune the two encoders in separate runs); each file checked on its own part."""
    target = f"backbone {backbone}"
    if clip_text is None:
        return fit_clip_state(clip.state, expected, str(clip.path), target)
    is_visual = lambda k: k.startswith("visual.")  # noqa: E731
    image = fit_clip_state({k: v for k, v in clip.state.items() if is_visual(k)},
                           {k: v for k, v in expected.items() if is_visual(k)}, str(clip.path), f"the image tower of {target}")
    text = fit_clip_state({k: v for k, v in clip_text.state.items() if not is_visual(k)},
                          {k: v for k, v in expected.items() if not is_visual(k)}, str(clip_text.path),
                          f"the text tower of {target}")
    return {**image, **text}


def read_combiner(path: str | Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """The combiner's state dict (and epoch) from a `{'Combiner': ...}` file or a bare state dict."""
    path = Path(path).expanduser()
    obj = read_torch_file(path, "--combiner")
    if isinstance(obj, torch.jit.ScriptModule):
        raise WeightsError(f"{path}: a TorchScript archive (an OpenAI CLIP release file?), not a combiner: "
                           "give it as --clip")
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: not a combiner file (it holds a {type(obj).__name__})")
    if CLIP_KEY in obj:
        raise WeightsError(f"{path}: a CLIP file (key '{CLIP_KEY}'), not a combiner: give it as --clip")
    if obj.get("format") == CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: an mlcl checkpoint already: serve or evaluate it as it is (--checkpoint)")
    epoch = obj.get("epoch") if isinstance(obj.get("epoch"), int) else None
    state = obj.get(COMBINER_KEY, obj)
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = ", ".join(map(repr, list(obj)[:6]))
        raise WeightsError(f"{path}: not a combiner file (expected a {{'{COMBINER_KEY}': state_dict}} file as the "
                           f"authors' save_model writes; it holds {keys})")
    if any(k.startswith(("visual.", "transformer.")) for k in state):
        raise WeightsError(f"{path}: CLIP weights, not a combiner: give it as --clip")
    return dict(state), epoch


def _rename(key: str, mapping: Mapping[str, str]) -> str:
    """`key` with its first matching prefix replaced (a prefix covers `prefix` and `prefix.*`)."""
    for src, dst in mapping.items():
        if key == src or key.startswith(src + "."):
            return dst + key[len(src):]
    return key


def _combiner_widths(state: Mapping[str, torch.Tensor], path: Path) -> tuple[int, int]:
    """P and H as the file has them (the authors' --projection-dim and --hidden-dim)."""
    for key in ("text_projection_layer.weight", "combiner_layer.weight"):
        if key not in state:
            raise WeightsError(f"{path}: missing key {key} (not a CLIP4Cir/MLCL combiner?)")
    return int(state["text_projection_layer.weight"].shape[0]), int(state["combiner_layer.weight"].shape[0])


def _check_source(source: str, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Catch the two sources swapped: only MLCL's combiner has the mid level (combiner_proj)."""
    has_mid = "combiner_proj.weight" in state
    if source == "clip4cir" and has_mid:
        raise WeightsError(f"{path}: an MLCL combiner (it has combiner_proj), not CLIP4Cir's: use --from mlcl-authors")
    if source == "mlcl-authors" and not has_mid and "output_layer.weight" in state:
        raise WeightsError(f"{path}: missing key combiner_proj.weight, MLCL's mid level "
                           "(a CLIP4Cir combiner? use --from clip4cir)")


def fit_combiner(
    source: str, state: Mapping[str, torch.Tensor], path: str, backbone: str, embed_dim: int,
) -> tuple[dict[str, torch.Tensor], int, int]:
    """A source's combiner state under our names, checked key by key and shape by shape against a
    combiner for `embed_dim` (P and H as the file has them). Returns (state, P, H)."""
    fmt = import_sources()[source]
    _check_source(source, state, Path(path))
    p, h = _combiner_widths(state, Path(path))
    mapping = fmt["combiner_keys"]
    mapped = {_rename(k, mapping): v for k, v in state.items()}  # names no prefix covers: reported as unexpected
    optional = tuple(mapping[k] for k in fmt.get("optional", []))
    keep = set(fmt.get("keep_initial", []))
    zero = tuple(fmt.get("zero", []))
    expected = {f"combiner.{k}": v for k, v in expected_shapes(lambda: MultiLevelCombiner(embed_dim, p, h)).items()}
    expected.update({k: torch.Size([]) for k in ("logit_scale", "logit_scale_sl", "w")})
    expected = {k: v for k, v in expected.items() if k not in keep and not k.startswith(zero)}
    for k, v in list(mapped.items()):  # their scalars are (1,) tensors, ours ()
        if k in expected and expected[k] == torch.Size([]) and v.numel() == 1:
            mapped[k] = v.reshape(())
    reverse = {dst: src for src, dst in mapping.items()}
    theirs = {k: _rename(k, reverse) for k in {*expected, *mapped}}  # messages name keys as the file does
    check_fit(mapped, expected, path, f"a {source} combiner for backbone {backbone} (D={embed_dim}, P={p}, H={h})",
              rename=theirs, optional=optional)
    return mapped, p, h


def import_weights(
    source: str,
    clip: str | Path,
    combiner: str | Path,
    backbone: str,
    clip_text: str | Path | None = None,
    transform: str = "targetpad",
    target_ratio: float = 1.25,
    inference_weighting: str | None = None,
) -> tuple[MLCLModel, dict[str, Any]]:
    """Build our model from a source's CLIP file(s) and combiner file; returns (model, provenance).

    Every file is checked before anything is built: its kind, each key, each
    shape against the named backbone (WeightsError names the key and both shapes).
    """
    sources = import_sources()
    if source not in sources:
        raise ValueError(f"unknown source {source!r}; choose from {', '.join(sources)}")
    fmt = sources[source]
    ratio = pad_ratio(transform, target_ratio)

    clip_w = read_clip_weights(clip, "--clip")
    text_w = read_clip_weights(clip_text, "--clip-text") if clip_text else None
    comb_state, comb_epoch = read_combiner(combiner)
    comb_path = Path(combiner).expanduser()

    # The sources run OpenAI's `clip` package: QuickGELU text towers, whatever the file kind.
    name = quick_gelu_name(backbone)
    clip_state = _clip_state(clip_w, text_w, backbone_shapes(name), backbone)

    d = int(backbone_config(name)["embed_dim"])
    mapped, p, h = fit_combiner(source, comb_state, str(comb_path), backbone, d)

    method = get_method(fmt["method"]).to_dict()
    if method["learnable_scale"] and not {"logit_scale", "logit_scale_sl"} <= set(mapped):
        method["learnable_scale"] = False  # trained with --learn_t 0: scales fixed at 100 (= our initial value)
    weighting = inference_weighting or fmt["inference_weighting"]

    model = build_model(name, method=method, proj_dim=p, hidden_dim=h, normalize_features=False,
                        inference_weighting=weighting, target_pad_ratio=ratio)
    own = model.state_dict()
    zero = tuple(fmt.get("zero", []))
    full = {f"backbone.{k}": v for k, v in clip_state.items()}
    full.update(mapped)
    full.update({k: torch.zeros_like(v) for k, v in own.items() if k.startswith(zero)})
    full.update({k: own[k] for k in own if k not in full})  # keep_initial and absent optional scales (checked above)
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in full.items()})
    model.eval()

    def describe(path: Path, kind: str, epoch: int | None) -> dict[str, Any]:
        return {"file": path.name, "kind": kind, "epoch": epoch, "model_id": checkpoint_id(path)}

    info = {
        "from": source,
        "source_code": fmt.get("description", ""),
        "clip": describe(clip_w.path, clip_w.kind, clip_w.epoch),
        "clip_text": describe(text_w.path, text_w.kind, text_w.epoch) if text_w else None,
        "combiner": describe(comb_path, "combiner", comb_epoch),
        "transform": transform,
        "target_pad_ratio": ratio,
        "inference_weighting": weighting,
        "backbone": name,
    }
    return model, info


__all__ = ["WeightsError", "fit_combiner", "import_weights", "read_combiner"]
