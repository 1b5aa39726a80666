"""Models trained with the MLCL authors' or CLIP4Cir's code, and OpenAI's CLIP files, in our format.

The source files are built here, offline, from random small CLIPs in OpenAI's layout (tests/foreign_formats.py
writes them as the authors' save_model and OpenAI's release files do), and the reference is the published
inference written from the facts in that module, not from our model code: our query vectors must equal it
(max abs difference <= 1e-5, both weightings) and our gallery vectors the normalised encode_image.
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from foreign_formats import (
    authors_transform, combiner_state, openai_rn50x4_layout, published_gallery, published_query, random_clip,
    reference_clip, register_small_backbones, save_model_file, save_openai_release,
)
from mlcl.model import WeightsError, build_model, load_checkpoint, read_checkpoint, resolve_backbone, save_checkpoint
from mlcl.model.clip_weights import backbone_shapes, fit_clip_state, quick_gelu_name
from mlcl.model.import_weights import fit_combiner, import_weights
from mlcl.model_id import checkpoint_id

TOL = 1e-5
D, P, H = 24, 40, 56  # the small backbones' width and a small combiner (the authors: 4D and 8D)
TEXTS = ["is red with shorter sleeves", "has a floral print", "is darker and longer"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Source files in every layout: {'CLIP'} and TorchScript CLIPs, MLCL and CLIP4Cir combiners."""
    root = tmp_path_factory.mktemp("foreign")
    register_small_backbones(root / "configs")
    rn, rn_text, vit = random_clip("oai-rn-micro", 1), random_clip("oai-rn-micro", 2), random_clip("oai-vit-micro", 3)
    return {
        "root": root,
        "rn": rn, "rn_text": rn_text, "vit": vit,
        "rn_clip": save_model_file("CLIP", rn.state_dict(), root / "tuned_clip_best.pt", epoch=41),
        "rn_text_clip": save_model_file("CLIP", rn_text.state_dict(), root / "tuned_text.pt"),
        "vit_release": save_openai_release(vit, root / "ViT-micro.pt"),
        "mlcl_combiner": save_model_file("Combiner", combiner_state(D, P, H, seed=4), root / "combiner.pt", epoch=300),
        "mlcl_fixed_t": save_model_file("Combiner", combiner_state(D, P, H, learn_t=False, seed=5), root / "c_t0.pt"),
        "c4c_combiner": save_model_file("Combiner", combiner_state(D, P, H, mlcl=False, seed=6), root / "c4c.pt"),
    }


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randn(len(TEXTS), 3, 32, 32, generator=g)


def _combiner(path):
    return torch.load(path, weights_only=True)["Combiner"]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# ----------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("weighting", ["released", "train"])
def test_mlcl_authors_model_computes_their_published_inference(files, images, tmp_path, weighting):
    model, info = import_weights("mlcl-authors", files["rn_clip"], files["mlcl_combiner"], "oai-rn-micro")
    assert model.inference_weighting == "released"  # their combine_features_weighted
    path = save_checkpoint(model, tmp_path / "model.pt", extra={"import": info})
    served = load_checkpoint(path)  # what mlcl serve / mlcl eval load
    served.set_inference_weighting(weighting)

    clip = reference_clip("oai-rn-micro", files["rn"].state_dict())
    want = published_query(clip, _combiner(files["mlcl_combiner"]), images, TEXTS, swap=weighting == "train")
    assert _max_diff(served.encode_query(images, TEXTS), want) <= TOL
    assert _max_diff(served.encode_image(images), published_gallery(clip, images)) <= TOL
    if weighting == "train":  # the two weightings differ on this combiner (2 sigmoid(w) != 1)
        released = published_query(clip, _combiner(files["mlcl_combiner"]), images, TEXTS)
        assert _max_diff(want, released) > 1e-3


def test_clip4cir_model_from_an_openai_release_file(files, images):
    model, info = import_weights("clip4cir", files["vit_release"], files["c4c_combiner"], "oai-vit-micro")
    assert info["clip"]["kind"] == "openai-torchscript" and model.method.name == "clip4cir"
    release = torch.jit.load(str(files["vit_release"])).state_dict()  # float16, as OpenAI ships them
    clip = reference_clip("oai-vit-micro", release)
    want = published_query(clip, _combiner(files["c4c_combiner"]), images, TEXTS, source="clip4cir")
    assert _max_diff(model.encode_query(images, TEXTS), want) <= TOL
    assert _max_diff(model.encode_image(images), published_gallery(clip, images)) <= TOL


def test_text_encoder_from_its_own_file(files, images):
    """The authors fine-tune each encoder in its own run: image tower from --clip, the rest from --clip-text."""
    model, info = import_weights("mlcl-authors", files["rn_clip"], files["mlcl_combiner"], "oai-rn-micro",
                                 clip_text=files["rn_text_clip"])
    merged = {**files["rn_text"].state_dict(),
              **{k: v for k, v in files["rn"].state_dict().items() if k.startswith("visual.")}}
    clip = reference_clip("oai-rn-micro", merged)
    want = published_query(clip, _combiner(files["mlcl_combiner"]), images, TEXTS)
    assert _max_diff(model.encode_query(images, TEXTS), want) <= TOL
    assert info["clip_text"]["file"] == "tuned_text.pt"


def test_combiner_trained_with_fixed_scales(files, images):
    model, _ = import_weights("mlcl-authors", files["rn_clip"], files["mlcl_fixed_t"], "oai-rn-micro")
    assert model.method.learnable_scale is False
    assert float(model.logit_scale.exp()) == pytest.approx(100.0)  # their fixed scale
    clip = reference_clip("oai-rn-micro", files["rn"].state_dict())
    want = published_query(clip, _combiner(files["mlcl_fixed_t"]), images, TEXTS)
    assert _max_diff(model.encode_query(images, TEXTS), want) <= TOL


@pytest.mark.parametrize("size", [(60, 30), (30, 70), (34, 30)])  # wide, tall, within the ratio (no padding)
def test_preprocessing_is_their_targetpad(files, size):
    model, info = import_weights("mlcl-authors", files["rn_clip"], files["mlcl_combiner"], "oai-rn-micro")
    assert info["target_pad_ratio"] == 1.25
    g = torch.Generator().manual_seed(size[0])
    image = Image.fromarray((torch.rand(size[1], size[0], 3, generator=g) * 255).byte().numpy())
    assert _max_diff(model.preprocess(image), authors_transform(image, 32)) <= 1e-6


def test_import_records_where_the_weights_came_from(files, tmp_path):
    model, info = import_weights("mlcl-authors", files["rn_clip"], files["mlcl_combiner"], "oai-rn-micro")
    payload = read_checkpoint(save_checkpoint(model, tmp_path / "m.pt", extra={"import": info}))
    cfg = payload["config"]
    assert cfg["backbone"]["model_name"] == "oai-rn-micro-quickgelu"  # OpenAI's clip package: QuickGELU
    assert cfg["normalize_features"] is False and cfg["inference_weighting"] == "released"
    assert cfg["target_pad_ratio"] == 1.25 and payload["stage"] == 2
    imp = payload["extra"]["import"]
    assert imp["clip"] == {"file": "tuned_clip_best.pt", "kind": "clip-package", "epoch": 41,
                           "model_id": checkpoint_id(files["rn_clip"])}
    assert imp["combiner"]["epoch"] == 300 and imp["from"] == "mlcl-authors"


# ----------------------------------------------------------------------------------- the full-size layout
def test_rn50x4_layout_names_and_shapes():
    """OpenAI's RN50x4 layout (from OpenAI's model.py) and the authors' RN50x4 combiner (640 / 2560 / 5120)
    are what the importer accepts for --backbone RN50x4; checked on shapes only (meta tensors, no weights)."""
    assert quick_gelu_name("RN50x4") == "RN50x4-quickgelu"
    assert resolve_backbone("RN50x4", "openai") == "RN50x4-quickgelu"  # open_clip's tag: no download to know
    layout = openai_rn50x4_layout()
    ours = {k: tuple(v) for k, v in backbone_shapes("RN50x4-quickgelu").items()}
    assert ours == layout
    fit_clip_state({k: torch.empty(s, device="meta") for k, s in layout.items()}, backbone_shapes("RN50x4-quickgelu"),
                   "RN50x4.pt", "backbone RN50x4")
    _, p, h = fit_combiner("mlcl-authors", combiner_state(640, 2560, 5120, meta=True), "combiner.pt", "RN50x4", 640)
    assert (p, h) == (2560, 5120)


def test_files_of_another_backbone_are_named_with_both_shapes():
    rn50 = {k: torch.empty(s, device="meta") for k, s in backbone_shapes("RN50-quickgelu").items()}
    with pytest.raises(WeightsError, match=r"^RN50\.pt does not fit backbone RN50x4: .*visual\.conv1\.weight has shape "
                                           r"\(32, 3, 3, 3\), backbone RN50x4 expects \(40, 3, 3, 3\)"):
        fit_clip_state(rn50, backbone_shapes("RN50x4-quickgelu"), "RN50.pt", "backbone RN50x4")
    with pytest.raises(WeightsError, match=r"text_projection_layer\.weight has shape \(4096, 1024\), .* expects "
                                           r"\(4096, 640\)"):
        fit_combiner("mlcl-authors", combiner_state(1024, 4096, 8192, meta=True), "c.pt", "RN50x4", 640)


# ------------------------------------------------------------------------------------------------ errors
def test_wrong_files_are_named(files, tmp_path):
    rn, comb, c4c = files["rn_clip"], files["mlcl_combiner"], files["c4c_combiner"]
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    cases = [
        (dict(clip=comb, combiner=comb), "a combiner file .* give it as --combiner"),
        (dict(clip=rn, combiner=rn), "a CLIP file .* give it as --clip"),
        (dict(clip=rn, combiner=files["vit_release"]), "a TorchScript archive .* not a combiner"),
        (dict(clip=text, combiner=comb), "notes.txt: not a PyTorch weights file"),
        (dict(clip=rn, combiner=tmp_path / "absent.pt"), "--combiner .*absent.pt' does not exist"),
        (dict(clip=files["vit_release"], combiner=comb), r"ViT-micro.pt does not fit backbone oai-rn-micro: .* has shape"),
    ]
    for kwargs, message in cases:
        with pytest.raises((WeightsError, FileNotFoundError), match=message):
            import_weights("mlcl-authors", backbone="oai-rn-micro", **kwargs)
    with pytest.raises(WeightsError, match="an MLCL combiner .* use --from mlcl-authors"):
        import_weights("clip4cir", rn, comb, "oai-rn-micro")
    with pytest.raises(WeightsError, match="missing key combiner_proj.weight.* use --from clip4cir"):
        import_weights("mlcl-authors", rn, c4c, "oai-rn-micro")
    broken = _combiner(comb)
    del broken["dynamic_scalar.3.bias"]
    with pytest.raises(WeightsError, match="missing key dynamic_scalar.3.bias"):
        import_weights("mlcl-authors", rn, save_model_file("Combiner", broken, tmp_path / "b.pt"), "oai-rn-micro")
    mlcl_ckpt = save_checkpoint(build_model("mlcl-micro"), tmp_path / "ours.pt")
    with pytest.raises(WeightsError, match="an mlcl checkpoint"):
        import_weights("mlcl-authors", mlcl_ckpt, comb, "oai-rn-micro")


def test_their_files_given_where_a_checkpoint_is_expected(files, tmp_path, capsys):
    from mlcl.model import CheckpointError
    from mlcl_cli.cli import main

    with pytest.raises(CheckpointError, match="a TorchScript archive .* mlcl import-weights"):
        load_checkpoint(files["vit_release"])
    with pytest.raises(CheckpointError, match="not an mlcl checkpoint .* CLIP4Cir's files to mlcl import-weights"):
        load_checkpoint(files["rn_clip"])
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    assert main(["info", str(text)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mlcl info: checkpoint {text} is not a PyTorch checkpoint") and "\n" not in err


# ------------------------------------------------------------------------------ OpenAI files as `pretrained`
def test_openai_files_as_pretrained(files, tmp_path):
    for path in (files["vit_release"], files["rn_clip"]):
        name = "oai-vit-micro" if path == files["vit_release"] else "oai-rn-micro"
        model = build_model(name, pretrained=str(path))
        assert model.config["backbone"]["model_name"] == f"{name}-quickgelu"  # OpenAI's code: QuickGELU
    release = torch.jit.load(str(files["vit_release"])).state_dict()
    own = build_model("oai-vit-micro", pretrained=str(files["vit_release"])).backbone.state_dict()
    assert all(torch.equal(own[k], v.float()) for k, v in release.items() if k in own)
    plain = tmp_path / "plain.pt"  # a plain state dict cannot say which activation it was trained with
    torch.save(files["vit"].state_dict(), plain)
    assert build_model("oai-vit-micro-quickgelu", pretrained=str(plain)).config["backbone"]["model_name"] == \
        "oai-vit-micro-quickgelu"
    with pytest.raises(WeightsError, match=r"plain.pt does not fit backbone oai-rn-micro"):
        build_model("oai-rn-micro", pretrained=str(plain))


def test_stage2_training_takes_the_import(files, tmp_path):
    pytest.importorskip("lavis")
    from mlcl.model import get_method, load_state
    from training.models.mlcl_lavis import copy_backbone

    model, info = import_weights("mlcl-authors", files["rn_clip"], files["mlcl_combiner"], "oai-rn-micro")
    path = save_checkpoint(model, tmp_path / "imported.pt", extra={"import": info})
    fresh = build_model("oai-rn-micro", pretrained=str(files["rn_clip"]), method="mlcl", proj_dim=P, hidden_dim=H)
    copy_backbone(fresh, path)  # model.init_from: stage 2 starts from the imported backbone
    load_state(fresh, read_checkpoint(path))  # model.load_from: every weight, to train the combiner further
    assert get_method(fresh.config["method"]).name == "mlcl"


# ------------------------------------------------------------------------------------------- command line
def test_cli_import_then_info(files, tmp_path, capsys):
    from mlcl_cli.cli import main

    out = tmp_path / "model.pt"
    args = ["import-weights", "--from", "mlcl-authors", "--clip", str(files["rn_clip"]), "--combiner",
            str(files["mlcl_combiner"]), "--backbone", "oai-rn-micro", "--out", str(out)]
    assert main(args) == 0
    assert f"model id {checkpoint_id(out)}" in capsys.readouterr().out
    assert main(["info", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["model_id"] == checkpoint_id(out) and shown["inference_weighting"] == "released"
    assert shown["import"]["from"] == "mlcl-authors" and shown["target_pad_ratio"] == 1.25

    assert main(args) == 2  # --out exists
    assert "exists (--force overwrites it)" in capsys.readouterr().err
    bad = args[:6] + [str(files["rn_clip"])] + args[7:-1] + [str(tmp_path / "x.pt")]  # a CLIP as --combiner
    assert main(bad) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlcl import-weights: ") and "a CLIP file" in err and "\n" not in err


def test_mlcl_eval_scores_the_import_with_fashioniqs_protocol(files, tmp_path, capsys):
    from mlcl_cli.cli import main
    from test_eval_fakes import write_fashioniq_fixture

    model, info = import_weights("mlcl-authors", files["rn_clip"], files["mlcl_combiner"], "oai-rn-micro")
    path = save_checkpoint(model, tmp_path / "fiq.pt", extra={"import": info})
    root = write_fashioniq_fixture(tmp_path)
    assert main(["eval", "--checkpoint", str(path), "--dataset", "fashioniq", "--data-root", str(root),
                 "--num-workers", "0", "--no-progress", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"dress/R@10", "R@10", "R@50", "headline"} <= set(metrics)


# ------------------------------------------------------------------------------------------ through a Flow
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_running_flow_encodes_as_the_authors_code(files, tmp_path):
    """The imported checkpoint served by flows/flow.yml: /encode of one composed query (a PNG that needs
    target padding) and of one gallery image equals the published inference on the same file."""
    import io

    from helpers import REPO_ROOT, running_flow
    from docarray import DocList

    from mlcl_executor.schemas import QueryDoc
    from mlcl_cli.client import grpc_client

    model, info = import_weights("mlcl-authors", files["rn_clip"], files["mlcl_combiner"], "oai-rn-micro")
    path = save_checkpoint(model, tmp_path / "imported.pt", extra={"import": info})
    g = torch.Generator().manual_seed(7)
    image = Image.fromarray((torch.rand(30, 70, 3, generator=g) * 255).byte().numpy())  # ratio 2.3: padded
    buf = io.BytesIO()
    image.save(buf, "PNG")
    png = buf.getvalue()

    clip = reference_clip("oai-rn-micro", files["rn"].state_dict())
    pixels = authors_transform(Image.open(io.BytesIO(png)), 32).unsqueeze(0)
    want_query = published_query(clip, _combiner(files["mlcl_combiner"]), pixels, TEXTS[:1])[0]
    want_gallery = published_gallery(clip, pixels)[0]

    with running_flow(REPO_ROOT / "flows" / "flow.yml", tmp_path / "ws", encoder_with={"checkpoint": str(path)}) as flow:
        client = grpc_client(port=flow["grpc"])
        query = client.post("/encode", DocList[QueryDoc]([QueryDoc(image=png, text=TEXTS[0])]),
                            return_type=DocList[QueryDoc])[0]
        gallery = client.post("/encode", DocList[QueryDoc]([QueryDoc(image=png)]), parameters={"as": "gallery"},
                              return_type=DocList[QueryDoc])[0]
    assert query.error is None and gallery.error is None
    assert _max_diff(torch.as_tensor(query.embedding, dtype=torch.float32), want_query) <= TOL
    assert _max_diff(torch.as_tensor(gallery.embedding, dtype=torch.float32), want_gallery) <= TOL


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_benchmark_script_quick(tmp_path):
    """bench/import_weights.py (--quick: a small backbone) runs the command and writes the fields the docs cite."""
    from bench import import_weights as bench

    out = bench.main(["--quick", "--images", "2", "--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "import_weights.quick.json").read_text())
    assert len(data["results"]) == 4 and out["results"] == data["results"]
    for row in data["results"]:
        assert row["import_s"] > 0 and row["out_mb"] > 0
        if not row["half"]:
            assert max(row["query_max_abs_diff_released"], row["query_max_abs_diff_train"],
                       row["gallery_max_abs_diff"]) <= TOL
