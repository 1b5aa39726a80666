"""Real-data dress rehearsal: the shipped `fashioniq` stage-1 and stage-2 configs, run as they are
except for size (a tiny ModifiedResNet backbone, a few steps, CPU), on a fixture in FashionIQ's
official layout, then evaluated with FashionIQ's protocol.

This covers what the shapes model never takes: a BatchNorm backbone (RN50x4's layout), stage 1 with
the image tower frozen (`train_image: false`), the fashion SSCL policy, four caption variants.
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("lavis")

from test_eval_fakes import write_fashioniq_fixture  # noqa: E402
from training.api import train  # noqa: E402


def test_fashioniq_stage1_stage2_and_protocol_on_a_fixture(tmp_path, monkeypatch):
    from mlcl.eval.evaluate import evaluate
    from mlcl.model import load_checkpoint, read_checkpoint

    monkeypatch.setenv("MLCL_HOME", str(tmp_path / "home"))
    root = write_fashioniq_fixture(tmp_path, "train")
    write_fashioniq_fixture(tmp_path, "val")
    common = [
        "model.model_type=rn-micro", "model.pretrained=null", f"datasets.fashioniq.root={root}",
        "run.device=cpu", "run.num_workers=0", "run.batch_size_train=2", "run.batch_size_eval=8",
        "run.progress=false", f"run.feature_cache_dir={tmp_path / 'features'}",
    ]
    s1 = train("fashioniq/stage1", common + [f"run.output_dir={tmp_path / 's1'}", "run.max_steps=2"])
    assert s1["steps"] == 2 and s1["stage"] == 1 and s1["method"] == "sum"
    assert set(s1["metrics"]) >= {"R@10", "R@50", "headline"}

    # The config fine-tunes the text encoder only: the ResNet's BatchNorm statistics stay as built.
    state = read_checkpoint(s1["checkpoint"])["state_dict"]
    tracked = [v for k, v in state.items() if k.startswith("backbone.visual.") and k.endswith("num_batches_tracked")]
    assert tracked and all(int(v) == 0 for v in tracked)
    means = [v for k, v in state.items() if k.startswith("backbone.visual.") and k.endswith("running_mean")]
    assert all(torch.count_nonzero(v) == 0 for v in means)

    s2 = train("fashioniq/stage2", common + [f"run.output_dir={tmp_path / 's2'}", "run.max_steps=2",
                                             f"model.init_from={s1['checkpoint']}", "run.sscl_cached_views=1",
                                             "run.evaluate=false"])
    assert s2["steps"] == 2 and s2["stage"] == 2 and s2["method"] == "mlcl"
    assert s2["feature_cache"]["views"] == 1 and s2["augment"]["name"] == "fashion"

    model = load_checkpoint(s2["checkpoint"])
    res = evaluate(model, "fashioniq", root=root, split="val", batch_size=8, num_workers=0, progress=False)
    assert [t["name"] for t in res.tasks] == ["dress", "shirt", "toptee"]
    assert all(not t["exclude_reference"] for t in res.tasks)  # FashionIQ keeps the reference
    assert set(res.metrics) >= {"dress/R@10", "R@10", "R@50", "headline"}
    assert all(math.isfinite(v) and 0 <= v <= 100 for v in res.metrics.values())
