"""Files in the layouts other code writes, and the inference that code publishes, written from the facts.

Not a conftest: imported by tests/test_import_weights.py and bench/import_weights.py.

The facts (issue 21, checked against the public sources; see docs/training.md):
- OpenAI's release files are TorchScript archives of a CLIP whose state dict, in OpenAI's layout,
  also holds `input_resolution`, `context_length` and `vocab_size`; weights in float16;
- the MLCL authors' and CLIP4Cir's utils.save_model writes torch.save({'epoch': n, NAME: state_dict}),
  NAME the class name: 'CLIP' (OpenAI's layout) or 'Combiner';
- the combiner's keys: text_projection_layer, image_projection_layer (D -> P), combiner_layer (2P -> H),
  output_layer (H -> D), dynamic_scalar.0 (2P -> H), dynamic_scalar.3 (H -> 1), and for MLCL also
  combiner_proj (H -> D), logit_scale, logit_scale_sl, loss_weight (each of shape (1,));
- MLCL's published inference: normalize((2 - 2 sigmoid(w)) * normalize(output) + 2 sigmoid(w) *
  normalize(mix) + normalize(image + text)); CLIP4Cir's: normalize(output); gallery: normalize(encode_image);
- their images: "targetpad" (pad to aspect ratio 1.25 with black), bicubic resize of the short side,
  centre crop, RGB, ToTensor, Normalize with OpenAI's mean and std.

Nothing here uses our model code (mlcl.model): only torch, torchvision and open_clip's CLIP, which has
OpenAI's layout in its `-quickgelu` configs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

# Small CLIPs in OpenAI's layout (a ModifiedResNet and a ViT), each with its "-quickgelu" twin as open_clip
# names them: fast on 2 cores.
_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
SMALL_BACKBONES: Dict[str, dict] = {
    "oai-rn-micro": {"embed_dim": 24, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8,
                                                      "head_width": 32}, "text_cfg": _TEXT},
    "oai-vit-micro": {"embed_dim": 24, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                                                       "patch_size": 8, "mlp_ratio": 2.0}, "text_cfg": _TEXT},
}


def register_small_backbones(folder: Path) -> None:
    """Make the small configs (and their -quickgelu twins) known to open_clip in this process."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, cfg in SMALL_BACKBONES.items():
        (folder / f"{name}.json").write_text(json.dumps(cfg))
        (folder / f"{name}-quickgelu.json").write_text(json.dumps({**cfg, "quick_gelu": True}))
    open_clip.add_model_config(folder)


def random_clip(name: str, seed: int = 0) -> nn.Module:
    """An open_clip CLIP with OpenAI's layout and QuickGELU (`name` + "-quickgelu"), every weight and
    BatchNorm statistic random (open_clip zero-initialises some, which would hide a mix-up)."""
    torch.manual_seed(seed)
    model = open_clip.create_model(name if name.endswith("-quickgelu") else name + "-quickgelu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if not value.is_floating_point():
                continue
            if key.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=g) + 0.5)
            elif key == "logit_scale":
                value.fill_(4.0)
            else:
                value.add_(0.05 * torch.randn(value.shape, generator=g))
    return model.eval()


def _module_tree(state: Dict[str, torch.Tensor]) -> nn.Module:
    """A module whose state dict is exactly `state` (nested submodules named by the key's dots)."""
    root = nn.Module()
    for key, tensor in state.items():
        *path, leaf = key.split(".")
        module = root
        for part in path:
            if part not in module._modules:
                module.add_module(part, nn.Module())
            module = module._modules[part]
        module.register_buffer(leaf, tensor.clone())
    return root


def save_openai_release(model: nn.Module, path: Path) -> Path:
    """A TorchScript archive holding `model`'s weights as OpenAI's release files do: float16, plus the
    three non-weight entries."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    vision = model.visual.image_size
    state["input_resolution"] = torch.tensor(vision[0] if isinstance(vision, (tuple, list)) else vision)
    state["context_length"] = torch.tensor(model.positional_embedding.shape[0])
    state["vocab_size"] = torch.tensor(model.token_embedding.weight.shape[0])
    torch.jit.script(_module_tree(state)).save(str(path))
    return path


def save_model_file(name: str, state: Dict[str, torch.Tensor], path: Path, epoch: int = 7) -> Path:
    """utils.save_model of the authors' and CLIP4Cir's code: {'epoch': n, <class name>: state_dict}."""
    torch.save({"epoch": epoch, name: state}, path)
    return path


def combiner_state(d: int, p: int, h: int, mlcl: bool = True, learn_t: bool = True, seed: int = 0,
                   meta: bool = False) -> Dict[str, torch.Tensor]:
    """A combiner state dict with the authors' names and shapes (mlcl=False: CLIP4Cir's)."""
    shapes = {
        "text_projection_layer.weight": (p, d), "text_projection_layer.bias": (p,),
        "image_projection_layer.weight": (p, d), "image_projection_layer.bias": (p,),
        "combiner_layer.weight": (h, 2 * p), "combiner_layer.bias": (h,),
        "output_layer.weight": (d, h), "output_layer.bias": (d,),
        "dynamic_scalar.0.weight": (h, 2 * p), "dynamic_scalar.0.bias": (h,),
        "dynamic_scalar.3.weight": (1, h), "dynamic_scalar.3.bias": (1,),
    }
    if mlcl:
        shapes.update({"combiner_proj.weight": (d, h), "combiner_proj.bias": (d,), "loss_weight": (1,)})
        if learn_t:
            shapes.update({"logit_scale": (1,), "logit_scale_sl": (1,)})
    if meta:
        return {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(s, generator=g) / max(s[-1], 1) ** 0.5 for k, s in shapes.items()}
    if mlcl:
        state["loss_weight"] = torch.tensor([0.7])  # 2 sigmoid(w) != 1: the two weightings differ
        if learn_t:
            state["logit_scale"] = state["logit_scale_sl"] = torch.log(torch.tensor([100.0]))
    return state


def authors_transform(image, size: int, target_ratio: Optional[float] = 1.25) -> torch.Tensor:
    """targetpad_transform of the authors' data_utils.py: pad, bicubic resize, centre crop, RGB, normalise."""
    import PIL.Image
    import torchvision.transforms.functional as TF
    from torchvision.transforms import CenterCrop, Compose, Normalize, Resize, ToTensor

    def target_pad(img):
        w, h = img.size
        if target_ratio is None or max(w, h) / min(w, h) < target_ratio:
            return img
        scaled = max(w, h) / target_ratio
        hp, vp = max(int((scaled - w) / 2), 0), max(int((scaled - h) / 2), 0)
        return TF.pad(img, [hp, vp, hp, vp], 0, "constant")

    return Compose([target_pad, Resize(size, interpolation=PIL.Image.BICUBIC), CenterCrop(size),
                    lambda img: img.convert("RGB"), ToTensor(), Normalize(OPENAI_MEAN, OPENAI_STD)])(image)


def reference_clip(name: str, state: Dict[str, torch.Tensor]) -> nn.Module:
    """OpenAI's CLIP forward (open_clip's -quickgelu twin) with `state` loaded as float32."""
    model = open_clip.create_model(name if name.endswith("-quickgelu") else name + "-quickgelu")
    state = {k: v for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval()


@torch.no_grad()
def published_query(clip: nn.Module, combiner: Dict[str, torch.Tensor], images: torch.Tensor,
                    texts: Sequence[str], source: str = "mlcl-authors", swap: bool = False) -> torch.Tensor:
    """The query vector of the sources' inference code (dropout off), from the raw CLIP features.

    mlcl-authors: combine_features_weighted, summed and normalised as validate.py does; `swap=True`
    gives the training weights instead (our "train" weighting). clip4cir: combine_features.
    """
    tokens = open_clip.tokenize(list(texts), context_length=clip.positional_embedding.shape[0])
    image, text = clip.encode_image(images), clip.encode_text(tokens)

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, combiner[f"{name}.weight"].float(), combiner[f"{name}.bias"].float())

    raw = torch.cat([F.relu(linear(text, "text_projection_layer")), F.relu(linear(image, "image_projection_layer"))], -1)
    combined = F.relu(linear(raw, "combiner_layer"))
    lam = torch.sigmoid(linear(F.relu(linear(raw, "dynamic_scalar.0")), "dynamic_scalar.3"))
    output = linear(combined, "output_layer") + lam * text + (1 - lam) * image
    if source == "clip4cir":
        return F.normalize(output, dim=-1)
    mix = linear(F.relu(combined), "combiner_proj")
    s = torch.sigmoid(combiner["loss_weight"].float())
    high, mid = (2 - 2 * s, 2 * s) if not swap else (2 * s, 2 - 2 * s)
    total = high * F.normalize(output, dim=-1) + mid * F.normalize(mix, dim=-1) + F.normalize(image + text, dim=-1)
    return F.normalize(total, dim=-1)


@torch.no_grad()
def published_gallery(clip: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return F.normalize(clip.encode_image(images), dim=-1)


def openai_rn50x4_layout() -> Dict[str, tuple]:
    """Names and shapes of OpenAI's RN50x4 state dict, from OpenAI's model.py (ModifiedResNet, layers
    (4, 6, 10, 6), width 80, 288 px; text: width 640, 12 layers, 77 tokens, vocabulary 49408; D = 640)."""
    layout: Dict[str, tuple] = {}

    def bn(prefix: str, c: int) -> None:
        layout.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                       f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

    w = 80
    layout["visual.conv1.weight"] = (w // 2, 3, 3, 3)
    bn("visual.bn1", w // 2)
    layout["visual.conv2.weight"] = (w // 2, w // 2, 3, 3)
    bn("visual.bn2", w // 2)
    layout["visual.conv3.weight"] = (w, w // 2, 3, 3)
    bn("visual.bn3", w)
    inplanes = w
    for i, (blocks, planes) in enumerate(zip((4, 6, 10, 6), (w, 2 * w, 4 * w, 8 * w)), start=1):
        for b in range(blocks):
            pre = f"visual.layer{i}.{b}"
            layout[f"{pre}.conv1.weight"] = (planes, inplanes, 1, 1)
            bn(f"{pre}.bn1", planes)
            layout[f"{pre}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{pre}.bn2", planes)
            layout[f"{pre}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{pre}.bn3", planes * 4)
            if b == 0:  # stride or width change: OpenAI's downsample (AvgPool, conv, bn)
                layout[f"{pre}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                bn(f"{pre}.downsample.1", planes * 4)
            inplanes = planes * 4
    embed, d = w * 32, 640  # the attention pool works on 32 * width channels of a (288/32)^2 grid
    layout["visual.attnpool.positional_embedding"] = ((288 // 32) ** 2 + 1, embed)
    for proj in ("k_proj", "q_proj", "v_proj"):
        layout[f"visual.attnpool.{proj}.weight"] = (embed, embed)
        layout[f"visual.attnpool.{proj}.bias"] = (embed,)
    layout["visual.attnpool.c_proj.weight"] = (d, embed)
    layout["visual.attnpool.c_proj.bias"] = (d,)
    t = 640
    layout.update({"positional_embedding": (77, t), "text_projection": (t, d), "logit_scale": (),
                   "token_embedding.weight": (49408, t), "ln_final.weight": (t,), "ln_final.bias": (t,)})
    for i in range(12):
        pre = f"transformer.resblocks.{i}"
        layout.update({
            f"{pre}.attn.in_proj_weight": (3 * t, t), f"{pre}.attn.in_proj_bias": (3 * t,),
            f"{pre}.attn.out_proj.weight": (t, t), f"{pre}.attn.out_proj.bias": (t,),
            f"{pre}.ln_1.weight": (t,), f"{pre}.ln_1.bias": (t,), f"{pre}.ln_2.weight": (t,), f"{pre}.ln_2.bias": (t,),
            f"{pre}.mlp.c_fc.weight": (4 * t, t), f"{pre}.mlp.c_fc.bias": (4 * t,),
            f"{pre}.mlp.c_proj.weight": (t, 4 * t), f"{pre}.mlp.c_proj.bias": (t,),
        })
    return layout
