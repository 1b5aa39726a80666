"""MLCLModel: a CLIP backbone plus the multi-level combiner, in plain PyTorch."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import create_backbone, create_tokenizer, image_size, image_stats
from .combiner import MultiLevelCombiner
from .inference import Inference
from .losses import contrastive_ce, level_weights
from .method import MethodConfig, get_method
from ..pixels import PixelSpec
from .transforms import eval_transform, pixels_to_batch

INFERENCE_WEIGHTINGS = ("train", "released")
STAGE1_SCALE = 100.0  # the authors' fixed logit scale for the sum-fusion fine-tune


class MLCLModel(nn.Module):
    """Composed retrieval model: query = fusion(reference image, text), gallery = image.

    Build with `mlcl.model.build_model`; the config dict it keeps (`self.config`)
    is what a checkpoint stores to rebuild the model.
    """

    def __init__(self, config: dict[str, Any], pretrained: str | None = None):
        super().__init__()
        self.config = config
        bb = config["backbone"]
        self.backbone, _ = create_backbone(bb["model_name"], pretrained=pretrained, model_config=bb.get("model_config"))
        self.tokenizer = create_tokenizer(bb["model_name"])
        self.method: MethodConfig = get_method(config["method"])
        self.embed_dim = int(bb["model_config"]["embed_dim"])
        comb = config.get("combiner", {})
        self.combiner = MultiLevelCombiner(
            self.embed_dim, comb.get("proj_dim"), comb.get("hidden_dim"), comb.get("dropout", 0.5)
        )
        init = math.log(100.0)
        self.logit_scale = nn.Parameter(torch.tensor(init), requires_grad=self.method.learnable_scale)
        self.logit_scale_sl = nn.Parameter(torch.tensor(init), requires_grad=self.method.learnable_scale)
        self.w = nn.Parameter(torch.tensor(math.log(0.5)), requires_grad=self.method.level_weights == "learned")
        # Raw encoder outputs feed the sum and the combiner (CLIP4Cir, the authors); True = L2-normalised
        # first (an option; configs written before the key existed were normalised, hence that default).
        self.normalize_features = bool(config.get("normalize_features", True))
        self.inference_weighting = "train"
        self.set_inference_weighting(config.get("inference_weighting", "train"))
        mean, std = image_stats(self.backbone)
        self.image_size = image_size(self.backbone)
        self.image_mean, self.image_std = mean, std
        # Per image: PIL -> normalised tensor. Batched alternative: `pixels` per image (PIL/numpy only, e.g. in
        # a decode worker process), then `images_from_pixels` on the batch; both give the same values.
        self.pixels = PixelSpec(self.image_size, config.get("target_pad_ratio", 1.25))
        self.preprocess = eval_transform(self.image_size, mean, std, self.pixels.target_ratio)
        self.inference = Inference()  # precision / memory format of the backbone (`inference.prepare_for_inference`)
        self.stage = self.method.stage
        self.train_text_encoder = self.train_image_encoder = True
        self.set_stage(self.stage)

    # ----------------------------------------------------------------- set-up
    def set_inference_weighting(self, name: str) -> None:
        """"train": the level weights used in training; "released": hybrid/cat weights swapped, as the authors' code."""
        if name not in INFERENCE_WEIGHTINGS:
            raise ValueError(f"inference weighting must be one of {INFERENCE_WEIGHTINGS}, got {name!r}")
        self.inference_weighting = name

    def set_stage(self, stage: int, train_text: bool = True, train_image: bool = True) -> None:
        """Stage 1 trains the backbone (text and/or image encoder) with sum fusion;
        stage 2 freezes the backbone and trains the combiner."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        if stage == 1 and not (train_text or train_image):
            raise ValueError("stage 1 must train the text encoder, the image encoder, or both")
        self.stage, self.train_text_encoder, self.train_image_encoder = stage, train_text, train_image
        visual = set(id(p) for p in self.backbone.visual.parameters())
        for p in self.backbone.parameters():
            is_visual = id(p) in visual
            p.requires_grad_(stage == 1 and (train_image if is_visual else train_text))
        for p in self.combiner.parameters():
            p.requires_grad_(stage == 2)
        learnable = stage == 2 and self.method.learnable_scale
        self.logit_scale.requires_grad_(learnable)
        self.logit_scale_sl.requires_grad_(learnable)
        self.w.requires_grad_(stage == 2 and self.method.level_weights == "learned")
        self.train(self.training)  # re-apply the frozen towers' eval mode

    def train(self, mode: bool = True) -> "MLCLModel":
        super().train(mode)
        if self.stage == 2:
            self.backbone.eval()  # frozen: no dropout, fixed features
        elif mode:
            # Stage 1: a tower that is not fine-tuned is frozen, in eval mode too (as CLIP4Cir keeps CLIP):
            # otherwise a ResNet's BatchNorm normalises with batch statistics and its running statistics drift.
            if not self.train_image_encoder:
                self.backbone.visual.eval()
            if not self.train_text_encoder:
                for name, child in self.backbone.named_children():
                    if name != "visual":
                        child.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    # -------------------------------------------------------------- encoders
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    def _features(self, f: torch.Tensor) -> torch.Tensor:
        if self.inference.precision != "fp32":
            f = f.float()  # the backbone ran under autocast; the fusion runs in fp32
        return F.normalize(f, dim=-1) if self.normalize_features else f

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone image features as the combiner consumes them: [B,3,H,W] -> [B,D]."""
        images = images.to(self.device, memory_format=self.inference.memory_format)
        with self.inference.autocast(self.device):
            f = self.backbone.encode_image(images)
        return self._features(f)

    def text_features(self, texts: Sequence[str] | torch.Tensor) -> torch.Tensor:
        tokens = texts.to(self.device) if isinstance(texts, torch.Tensor) else self.tokenize(texts)
        with self.inference.autocast(self.device):
            f = self.backbone.encode_text(tokens)
        return self._features(f)

    @staticmethod
    def gallery_vectors(f: torch.Tensor) -> torch.Tensor:
        """Gallery vector = normalize(f_tgt)."""
        return F.normalize(f, dim=-1)

    def compose(self, f_ref: torch.Tensor, f_txt: torch.Tensor) -> torch.Tensor:
        """The fused query: normalize(sum over the method's levels of weight * level)."""
        levels = self.combiner(f_ref, f_txt, self.method.levels)
        weights = level_weights(
            self.method.levels, self.method.level_weights, self.w, swap=self.inference_weighting == "released"
        )
        query = sum(weights[level] * levels[level] for level in self.method.levels)
        return F.normalize(query, dim=-1)

    def images_from_pixels(self, pixels: Sequence[Any], device: str | torch.device | None = None) -> torch.Tensor:
        """uint8 arrays from `self.pixels` (H, W, 3 each) -> the normalised batch `encode_*` take (= `preprocess`)."""
        device = device if device is not None else next(self.parameters()).device
        return pixels_to_batch(pixels, self.image_mean, self.image_std, device)

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm gallery vectors for a batch of preprocessed images."""
        return self.gallery_vectors(self.image_features(images))

    @torch.no_grad()
    def encode_gallery(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`encode_image` and the norm of each image's features: norm x vector is the `f_ref` a query by that
        image fuses (a server stores the norm to search by gallery id without the image)."""
        f = self.image_features(images)
        return self.gallery_vectors(f), f.norm(dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str] | torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_features(texts), dim=-1)

    @torch.no_grad()
    def encode_query(self, images: torch.Tensor | None = None, texts: Sequence[str] | None = None) -> torch.Tensor:
        """Unit-norm query vectors.

        image + text: the fused MLCL query. Image only: the image's gallery
        vector (find similar images). Text only: the text vector (CLIP
        text-to-image retrieval). All rows of one call are of one kind.
        """
        if images is None and texts is None:
            raise ValueError("a query needs an image, a text, or both")
        if images is None:
            return self.encode_text(texts)
        if texts is None:
            return self.encode_image(images)
        if len(texts) != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {len(texts)} texts")
        return self.compose(self.image_features(images), self.text_features(texts))

    @torch.no_grad()
    def encode_query_levels(self, images: torch.Tensor, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Unit-norm query vectors of each fusion level alone, beside the fused query.

        Keys: the method's levels ("sum" low, "cat" mid, "hybrid" high) and
        "fused" (equal to `encode_query(images, texts)`). For inspection: which
        level ranks a target where; retrieval uses the fused query.
        """
        if len(texts) != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {len(texts)} texts")
        return self.query_levels(self.image_features(images), self.text_features(texts))

    def query_levels(self, f_ref: torch.Tensor, f_txt: torch.Tensor) -> dict[str, torch.Tensor]:
        """`encode_query_levels` from features (`image_features`, `text_features`): a reference image
        given by its stored features is fused without its pixels."""
        levels = self.combiner(f_ref, f_txt, self.method.levels)
        out = {level: F.normalize(levels[level], dim=-1) for level in self.method.levels}
        out["fused"] = self.compose(f_ref, f_txt)
        return out

    # ---------------------------------------------------------------- losses
    def forward(
        self,
        ref_images: torch.Tensor,
        texts: Sequence[str] | torch.Tensor,
        tgt_images: torch.Tensor,
        ref_images_aug: torch.Tensor | None = None,
        neg_images: torch.Tensor | None = None,
        ref_index: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Training loss on a batch of (reference, text, target[, augmented reference]).

        neg_images: extra gallery images, negatives for every query (hard negatives).
        ref_index: row of each query's reference in `ref_images` (queries sharing a
        reference encode it once); None = one reference per query.
        """
        # One encoder pass over every image of the batch (one BatchNorm batch, one big matmul on CPU).
        parts = [ref_images, tgt_images] + ([neg_images] if neg_images is not None else [])
        feats = self.image_features(torch.cat(parts)).split([p.shape[0] for p in parts])
        f_ref, f_tgt = feats[0], feats[1]
        f_neg = feats[2] if neg_images is not None else None
        if ref_index is not None:
            f_ref = f_ref[ref_index.to(f_ref.device)]
        f_txt = self.text_features(texts)
        f_aug = None
        if ref_images_aug is not None and self.stage == 2 and self.method.sscl:
            f_aug = self.image_features(ref_images_aug)
        return self.loss_from_features(f_ref, f_txt, f_tgt, f_aug, f_neg)

    def loss_from_features(
        self,
        f_ref: torch.Tensor,
        f_txt: torch.Tensor,
        f_tgt: torch.Tensor,
        f_ref_aug: torch.Tensor | None = None,
        f_neg: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss from backbone features (stage 2 can feed cached features here).

        f_neg: features of extra gallery images [N, D], negatives for every query
        (columns after the batch's targets). Returns {"loss": total, "<term>": each term}.
        """
        tgt = self.gallery_vectors(f_tgt)
        if f_neg is not None and f_neg.shape[0]:
            tgt = torch.cat([tgt, self.gallery_vectors(f_neg)])
        if self.stage == 1:
            loss = contrastive_ce(F.normalize(f_ref + f_txt, dim=-1), tgt, STAGE1_SCALE)
            return {"loss": loss, "sum": loss}
        s = self.logit_scale.exp() if self.method.learnable_scale else torch.tensor(100.0, device=f_ref.device)
        s_sl = self.logit_scale_sl.exp() if self.method.learnable_scale else s
        levels = self.combiner(f_ref, f_txt, self.method.levels)
        weights = level_weights(self.method.levels, self.method.level_weights, self.w)
        terms: dict[str, torch.Tensor] = {}
        for level in self.method.levels:
            terms[level] = contrastive_ce(levels[level], tgt, s)
        mccl = sum(weights[level] * terms[level] for level in self.method.levels)
        out: dict[str, torch.Tensor] = {"mccl": mccl}
        total = mccl
        if self.method.sscl:
            if f_ref_aug is None:
                raise ValueError(f"method {self.method.name!r} uses SSCL: pass the augmented reference view")
            aug = self.combiner(f_ref_aug, f_txt, self.method.levels)
            sscl_raw = contrastive_ce(F.normalize(levels["raw"], dim=-1), F.normalize(aug["raw"], dim=-1), s_sl)
            sscl_hybrid = contrastive_ce(levels["hybrid"], aug["hybrid"], s_sl)
            out.update(sscl_raw=sscl_raw, sscl_hybrid=sscl_hybrid, sscl=sscl_raw + sscl_hybrid)
            total = total + out["sscl"]
        out.update({f"ce_{k}": v for k, v in terms.items()})
        out["loss"] = total
        return out

    def parameter_groups(self, lr: float, w_lr: float = 1e-3, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """Optimizer groups: w gets its own learning rate (authors: 1e-3)."""
        w_params = [self.w] if self.w.requires_grad else []
        others = [p for n, p in self.named_parameters() if p.requires_grad and p is not self.w]
        groups = [{"params": others, "lr": lr, "weight_decay": weight_decay}]
        if w_params:
            groups.append({"params": w_params, "lr": w_lr, "weight_decay": 0.0})
        return groups
