"""The MLCL model: shapes, norms, loss formulas, stages, checkpoints, backbones."""

from __future__ import annotations

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F

from mlcl.model import CheckpointError, build_model, get_method, load_checkpoint, save_checkpoint
from mlcl.model.losses import contrastive_ce

BACKBONE = "mlcl-micro"  # 32 px, D = 32: fast on 2 cores
B = 6


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(B, 3, 32, 32, generator=g)
    targets = torch.randn(B, 3, 32, 32, generator=g)
    texts = [f"make the {c} circle blue" for c in ["red", "green", "gray", "cyan", "brown", "yellow"]]
    return images, texts, targets


def _unit(x: torch.Tensor) -> bool:
    return torch.allclose(x.norm(dim=-1), torch.ones(x.shape[0]), atol=1e-5)


@pytest.mark.parametrize("method", ["mlcl", "mlcl_no_sscl", "mlcl_no_mid", "clip4cir", "sum"])
def test_encoders_shapes_and_unit_norm(method, batch):
    images, texts, _ = batch
    model = build_model(BACKBONE, method=method).eval()
    d = model.embed_dim
    for out in (model.encode_image(images), model.encode_text(texts), model.encode_query(images, texts),
                model.encode_query(images=images), model.encode_query(texts=texts)):
        assert out.shape == (B, d)
        assert _unit(out)


def test_image_only_and_text_only_queries_are_defined(batch):
    images, texts, _ = batch
    model = build_model(BACKBONE).eval()
    assert torch.allclose(model.encode_query(images=images), model.encode_image(images))
    assert torch.allclose(model.encode_query(texts=texts), model.encode_text(texts))
    with pytest.raises(ValueError, match="image, a text, or both"):
        model.encode_query()
    with pytest.raises(ValueError, match="6 images but 2 texts"):
        model.encode_query(images, texts[:2])


def test_combiner_levels_follow_the_formulas():
    model = build_model(BACKBONE).eval()
    comb = model.combiner
    g = torch.Generator().manual_seed(1)
    f_ref, f_txt = torch.randn(4, 32, generator=g), torch.randn(4, 32, generator=g)
    out = comb(f_ref, f_txt)
    assert torch.allclose(out["sum"], F.normalize(f_ref + f_txt, dim=-1))
    tp = F.relu(comb.text_projection(f_txt))
    ip = F.relu(comb.image_projection(f_ref))
    raw = torch.cat([tp, ip], -1)
    combined = F.relu(comb.combiner_layer(raw))
    assert torch.allclose(out["cat"], F.normalize(comb.cat_output(F.relu(combined)), dim=-1), atol=1e-6)
    lam = comb.dynamic_scalar(raw)
    expect = F.normalize(comb.hybrid_output(combined) + lam * f_txt + (1 - lam) * f_ref, dim=-1)
    assert torch.allclose(out["hybrid"], expect, atol=1e-6)
    assert comb.cat_output is not comb.hybrid_output
    assert (comb.proj_dim, comb.hidden_dim) == (4 * 32, 8 * 32)  # the authors' widths


def test_cross_entropy_near_zero_when_aligned_and_not_when_shuffled():
    x = F.normalize(torch.eye(8, 16), dim=-1)
    assert contrastive_ce(x, x, 100.0).item() < 1e-6
    shuffled = x[torch.tensor([1, 2, 3, 4, 5, 6, 7, 0])]
    assert contrastive_ce(x, shuffled, 100.0).item() > 50


def test_mlcl_loss_terms_equal_their_formulas(batch):
    torch.manual_seed(0)
    model = build_model(BACKBONE, method="mlcl").eval()  # eval: dropout off, so recomputation matches
    g = torch.Generator().manual_seed(2)
    f_ref, f_txt, f_tgt, f_aug = (torch.randn(B, 32, generator=g) for _ in range(4))
    out = model.loss_from_features(f_ref, f_txt, f_tgt, f_aug)
    s = model.logit_scale.exp()
    tgt = F.normalize(f_tgt, dim=-1)
    lv = model.combiner(f_ref, f_txt)
    la = model.combiner(f_aug, f_txt)
    sig = torch.sigmoid(model.w)
    ce = lambda q, k, sc: F.cross_entropy(sc * q @ k.t(), torch.arange(B))
    mccl = 2 * sig * ce(lv["hybrid"], tgt, s) + (2 - 2 * sig) * ce(lv["cat"], tgt, s) + ce(lv["sum"], tgt, s)
    sscl = ce(F.normalize(lv["raw"], dim=-1), F.normalize(la["raw"], dim=-1), model.logit_scale_sl.exp()) + ce(
        lv["hybrid"], la["hybrid"], model.logit_scale_sl.exp()
    )
    assert torch.allclose(out["mccl"], mccl, atol=1e-5)
    assert torch.allclose(out["sscl"], sscl, atol=1e-5)
    assert torch.allclose(out["loss"], mccl + sscl, atol=1e-5)
    assert math.isclose(model.logit_scale.exp().item(), 100.0, rel_tol=1e-5)
    assert math.isclose(torch.sigmoid(model.w).item(), 1 / 3, rel_tol=1e-5)  # w = log(0.5)


def test_learnable_scales_and_w_get_gradients(batch):
    images, texts, targets = batch
    model = build_model(BACKBONE, method="mlcl").train()
    out = model(images, texts, targets, images.flip(-1))
    out["loss"].backward()
    for p in (model.logit_scale, model.logit_scale_sl, model.w):
        assert p.grad is not None and p.grad.abs().item() > 0


def test_clip4cir_uses_fixed_scale_and_single_loss(batch):
    images, texts, targets = batch
    model = build_model(BACKBONE, method="clip4cir").train()
    out = model(images, texts, targets)
    assert set(k for k in out if k.startswith("ce_")) == {"ce_hybrid"}
    assert "sscl" not in out
    assert not model.logit_scale.requires_grad and not model.w.requires_grad


def test_sscl_requires_the_augmented_view(batch):
    model = build_model(BACKBONE, method="mlcl")
    f = torch.randn(B, 32)
    with pytest.raises(ValueError, match="augmented reference"):
        model.loss_from_features(f, f, f)


def test_stage2_freezes_backbone(batch):
    images, texts, targets = batch
    model = build_model(BACKBONE, method="mlcl").train()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    out = model(images, texts, targets, images.flip(-1))
    out["loss"].backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert any(p.grad is not None for p in model.combiner.parameters())
    opt.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.backbone.training  # frozen backbone stays in eval mode (no dropout)


def test_stage1_trains_backbone_without_the_combiner(batch):
    images, texts, targets = batch
    model = build_model(BACKBONE, method="mlcl")
    model.set_stage(1, train_text=True, train_image=False)
    model.train()
    out = model(images, texts, targets)
    assert set(out) == {"loss", "sum"}
    out["loss"].backward()
    assert all(p.grad is None for p in model.combiner.parameters())
    assert all(p.grad is None for p in model.backbone.visual.parameters())
    assert model.backbone.token_embedding.weight.grad is not None
    with pytest.raises(ValueError):
        model.set_stage(1, train_text=False, train_image=False)


def test_inference_weighting_switch(batch):
    images, texts, _ = batch
    model = build_model(BACKBONE, method="mlcl").eval()
    with torch.no_grad():
        model.w.fill_(1.0)  # sigmoid(w) != 1/2, so swapping the weights matters
    train = model.encode_query(images, texts)
    model.set_inference_weighting("released")
    released = model.encode_query(images, texts)
    assert not torch.allclose(train, released)
    lv = model.combiner(model.image_features(images), model.text_features(texts))
    sig = torch.sigmoid(model.w)
    expect = F.normalize((2 - 2 * sig) * lv["hybrid"] + 2 * sig * lv["cat"] + lv["sum"], dim=-1)
    assert torch.allclose(released, expect, atol=1e-5)
    with pytest.raises(ValueError, match="inference weighting"):
        model.set_inference_weighting("random")


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, batch):
    images, texts, _ = batch
    model = build_model(BACKBONE, method="mlcl").eval()
    with torch.no_grad():
        model.w.fill_(0.3)
    path = save_checkpoint(model, tmp_path / "m.pt")
    loaded = load_checkpoint(path)
    assert loaded.config == model.config
    assert torch.equal(loaded.encode_query(images, texts), model.encode_query(images, texts))
    assert torch.equal(loaded.encode_image(images), model.encode_image(images))


def test_checkpoint_of_another_width_or_method_fails_clearly(tmp_path):
    from mlcl.model import load_state, read_checkpoint

    path = save_checkpoint(build_model(BACKBONE, method="mlcl"), tmp_path / "m.pt")
    payload = read_checkpoint(path)
    with pytest.raises(CheckpointError, match="method: model has 'clip4cir', .* has 'mlcl'"):
        load_state(build_model(BACKBONE, method="clip4cir"), payload)
    with pytest.raises(CheckpointError, match="backbone: model has 'mlcl-tiny'.*embedding width: model has 128, .* has 32"):
        load_state(build_model("mlcl-tiny", method="mlcl"), payload)
    with pytest.raises(CheckpointError, match="combiner hidden width"):
        load_state(build_model(BACKBONE, method="mlcl", hidden_dim=64), payload)


def test_foreign_files_are_rejected(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    torch.save({"state_dict": {}}, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="not an mlcl checkpoint"):
        load_checkpoint(tmp_path / "bare.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_half_precision_checkpoint_loads_as_float32(tmp_path, batch):
    images, texts, _ = batch
    model = build_model(BACKBONE).eval()
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "h.pt", half=True))
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert torch.allclose(loaded.encode_query(images, texts), model.encode_query(images, texts), atol=5e-2)


def test_backbone_loads_a_local_pretrained_file(tmp_path):
    donor = open_clip.create_model(BACKBONE)
    with torch.no_grad():
        donor.logit_scale.fill_(1.234)
    path = tmp_path / "clip.pt"
    torch.save({"state_dict": donor.state_dict()}, path)
    model = build_model(BACKBONE, pretrained=str(path))
    for k, v in donor.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v), k
    with pytest.raises(FileNotFoundError):
        build_model(BACKBONE, pretrained=str(tmp_path / "nope.pt"))


def test_open_clip_names_and_unknown_names():
    model = build_model("RN50", method="clip4cir")  # any open_clip architecture, random init
    assert model.embed_dim == 1024 and model.image_size == 224
    with pytest.raises(ValueError, match="unknown backbone 'no-such-net'"):
        build_model("no-such-net")


def test_methods_are_configurations():
    assert get_method("mlcl").levels == ("sum", "cat", "hybrid")
    assert get_method("mlcl_no_mid").levels == ("sum", "hybrid")
    with pytest.raises(KeyError, match="unknown method"):
        get_method("nope")
    with pytest.raises(ValueError, match="add the hybrid level"):
        get_method({"name": "x", "levels": ["sum", "cat"], "sscl": True, "level_weights": "equal"})


def test_stage1_frozen_image_tower_keeps_its_batchnorm_statistics():
    # Defect 1: stage 1 with train_image=False left the visual tower in train mode, so a
    # ModifiedResNet's BatchNorm used batch statistics and its running statistics drifted.
    torch.manual_seed(0)
    model = build_model("mlcl-rn-micro", method="sum")
    model.set_stage(1, train_text=True, train_image=False)
    model.train()
    before = {k: v.clone() for k, v in model.backbone.visual.state_dict().items()}
    assert any("running_mean" in k for k in before)  # the BatchNorm path is exercised
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(1)
    out = model(torch.randn(4, 3, 32, 32, generator=g) * 3 + 1, ["a", "b", "c", "d"],
                torch.randn(4, 3, 32, 32, generator=g))
    out["loss"].backward()
    opt.step()
    after = model.backbone.visual.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []
    assert not model.backbone.visual.training and model.backbone.transformer.training
    # training the image tower does update them
    model.set_stage(1, train_text=True, train_image=True)
    model.train()
    model(torch.randn(4, 3, 32, 32, generator=g) * 3 + 1, ["a", "b", "c", "d"], torch.randn(4, 3, 32, 32, generator=g))
    assert not torch.equal(before["bn1.running_mean"], model.backbone.visual.state_dict()["bn1.running_mean"])


def test_raw_features_feed_the_fusion_by_default_normalised_as_an_option(batch):
    # Defect 4: CLIP4Cir (and the authors) feed raw encoder outputs to the sum and the combiner.
    images, texts, _ = batch
    raw = build_model(BACKBONE, method="sum").eval()
    assert raw.config["normalize_features"] is False
    f = raw.backbone.encode_image(images)
    assert torch.allclose(raw.image_features(images), f)
    normed = build_model(BACKBONE, method="sum", normalize_features=True).eval()
    assert _unit(normed.image_features(images))
    # a checkpoint config without the key (written before it existed) keeps its normalised behaviour
    from mlcl.model import MLCLModel

    cfg = {k: v for k, v in raw.config.items() if k != "normalize_features"}
    assert MLCLModel(cfg).normalize_features is True


def test_extra_negatives_join_every_query_s_gallery(batch):
    # Hard negatives (procedural shapes): extra gallery columns after the batch's targets.
    torch.manual_seed(0)
    model = build_model(BACKBONE, method="sum").eval()
    g = torch.Generator().manual_seed(3)
    f_ref, f_txt, f_tgt, f_neg = (torch.randn(n, 32, generator=g) for n in (B, B, B, 5))
    out = model.loss_from_features(f_ref, f_txt, f_tgt, f_neg=f_neg)
    q = F.normalize(f_ref + f_txt, dim=-1)
    keys = F.normalize(torch.cat([f_tgt, f_neg]), dim=-1)
    assert torch.allclose(out["loss"], F.cross_entropy(100.0 * q @ keys.t(), torch.arange(B)), atol=1e-5)
    # shared references: ref_index gathers each query's reference
    images, texts, targets = batch
    a = model(images[:2], texts, targets, ref_index=torch.tensor([0, 0, 0, 1, 1, 1]))
    b = model(images[[0, 0, 0, 1, 1, 1]], texts, targets)
    assert torch.allclose(a["loss"], b["loss"], atol=1e-5)
