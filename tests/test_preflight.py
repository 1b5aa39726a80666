"""Training and evaluation check the data root and `pretrained` first, and say what is missing in one line."""

from __future__ import annotations

import pytest
import torch

import mlcl.preflight as preflight
from mlcl.preflight import PreflightError, check_data_root, check_pretrained, check_training_inputs
from test_eval_fakes import write_fashioniq_fixture


@pytest.fixture
def no_network(monkeypatch):
    """A machine that reaches no hub (and has nothing in the download cache)."""
    probes = []
    monkeypatch.setattr(preflight, "host_reachable", lambda host, *a, **k: probes.append(host) or False)
    monkeypatch.setattr(preflight, "_cached_download", lambda cfg: None)
    for var in preflight.PROXY_VARIABLES + ("HF_HUB_OFFLINE",):
        monkeypatch.delenv(var, raising=False)
    return probes


def test_data_root(tmp_path):
    with pytest.raises(PreflightError, match=r"^fashioniq: data root /nonexistent does not exist"):
        check_data_root("fashioniq", "/nonexistent")
    with pytest.raises(PreflightError, match="cirr: no data root given"):
        check_data_root("cirr", None)
    with pytest.raises(PreflightError, match="CIRR: no cirr/captions/ folder"):
        check_data_root("cirr", tmp_path)
    with pytest.raises(PreflightError, match="Shoes: no relative_captions_shoes.json"):
        check_data_root("shoes", tmp_path)
    root = write_fashioniq_fixture(tmp_path)
    check_data_root("fashioniq", root)
    check_data_root("fashioniq", root.parent)  # the folder that holds fashionIQ_dataset/
    check_data_root("shapes", None)  # generated on demand


def test_a_tag_that_needs_an_unreachable_hub_is_named_at_once(no_network):
    with pytest.raises(PreflightError) as err:
        check_pretrained("RN50x4", "openai")
    message = str(err.value)
    assert "model.pretrained='openai' needs a download of RN50x4's weights" in message
    assert "huggingface.co cannot be reached" in message and "--options model.pretrained=/path/to/RN50x4.pt" in message
    assert no_network == ["huggingface.co"]


def test_hub_offline_setting_and_reachable_hub(no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PreflightError, match="HF_HUB_OFFLINE is set"):
        check_pretrained("RN50x4", "openai")
    assert no_network == []  # nothing probed
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(preflight, "host_reachable", lambda host, *a, **k: True)
    check_pretrained("RN50x4", "openai")  # the download may run


def test_cached_weights_need_no_network(no_network, monkeypatch):
    monkeypatch.setattr(preflight, "_cached_download", lambda cfg: "/cache/open_clip_model.safetensors")
    check_pretrained("RN50x4", "openai")
    assert no_network == []


def test_files_and_unknown_tags(tmp_path, no_network):
    with pytest.raises(PreflightError, match=r"model.pretrained='/x/RN50x4.pt': no such file"):
        check_pretrained("RN50x4", "/x/RN50x4.pt")
    weights = tmp_path / "RN50x4.pt"
    torch.save({}, weights)
    check_pretrained("RN50x4", str(weights))
    with pytest.raises(PreflightError, match=r"'laion9' is neither a file nor an open_clip tag of RN50x4 \(its tags: openai"):
        check_pretrained("RN50x4", "laion9")
    check_pretrained("mlcl-tiny", None)


def test_training_config_checks_data_first_and_skips_pretrained_when_weights_come_from_a_checkpoint(tmp_path, no_network):
    root = write_fashioniq_fixture(tmp_path)
    model = {"backbone": "RN50x4", "pretrained": "openai"}
    with pytest.raises(PreflightError, match="data root /nowhere does not exist"):
        check_training_inputs({"model": model, "datasets": {"fashioniq": {"root": "/nowhere"}}})
    assert no_network == []  # the data came first
    with pytest.raises(PreflightError, match="huggingface.co cannot be reached"):
        check_training_inputs({"model": model, "datasets": {"fashioniq": {"root": str(root)}}})
    # Stage 2 from a stage-1 checkpoint: the backbone's weights are in that checkpoint, nothing is downloaded.
    check_training_inputs({"model": {**model, "init_from": "s1/model.pt"}, "datasets": {"fashioniq": {"root": str(root)}}})


def test_mlcl_train_stops_before_building_anything(tmp_path, no_network, monkeypatch):
    pytest.importorskip("lavis")
    import training.api

    monkeypatch.setattr(training.api, "build", lambda cfg: pytest.fail("built a model before the checks"))
    with pytest.raises(PreflightError, match="fashioniq: data root /nonexistent does not exist"):
        training.api.train("fashioniq/stage1", ["datasets.fashioniq.root=/nonexistent",
                                                f"run.output_dir={tmp_path / 'out'}"])


def test_mlcl_eval_names_a_missing_data_root_in_one_line(capsys):
    from mlcl_cli.cli import main

    assert main(["eval", "--dataset", "fashioniq", "--data-root", "/nonexistent"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "mlcl eval: fashioniq: data root /nonexistent does not exist (--data-root DIR; layouts in docs/evaluation.md)"


def test_an_unknown_host_is_unreachable():
    assert preflight.host_reachable("hub.invalid", timeout=1.0) is False  # .invalid never resolves (RFC 2606)
