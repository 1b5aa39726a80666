"""The bundled default model still reaches its recall on a fixed part of the shapes test split.

A change that breaks the model code, the checkpoint, the preprocessing or the
data generator fails here instead of landing silently. The thresholds sit a
few points under what the committed checkpoint measures on the same queries
(see mlcl/weights/MODEL_CARD.md).
"""

from __future__ import annotations

import pytest

from mlcl.paths import DEFAULT_CHECKPOINT

QUERIES = 500  # the first 500 queries of each split; the gallery stays whole (~7,500 images)
# Measured on these queries with the committed checkpoint, minus a margin.
MIN_RECALL = {
    "test": {"R@1": 93.0, "R@10": 99.0},  # measured (fp16 checkpoint, 2026-11-28): R@1 97.0, R@10 100.0
    "novel": {"R@1": 91.0, "R@10": 99.0},  # measured: R@1 95.0, R@10 100.0 (unseen colour-shape pairs)
}


@pytest.fixture(scope="module")
def default_model():
    from mlcl.model import load_checkpoint

    assert DEFAULT_CHECKPOINT.is_file(), f"the bundled model is missing: {DEFAULT_CHECKPOINT}"
    return load_checkpoint(DEFAULT_CHECKPOINT)


def test_bundled_checkpoint_is_small_and_complete(default_model):
    assert DEFAULT_CHECKPOINT.stat().st_size <= 25 * 1024 * 1024
    assert default_model.method.name == "mlcl"
    assert default_model.config["backbone"]["model_name"] == "mlcl-rn-tiny"
    assert default_model.normalize_features is False  # raw encoder outputs to the fusion (CLIP4Cir, the authors)


@pytest.mark.slow  # a whole evaluation per split: too long for the edit loop (make test-fast)
@pytest.mark.timeout(600)
@pytest.mark.parametrize("split", ["test", "novel"])
def test_bundled_model_reaches_its_recall_on_shapes(default_model, tmp_path_factory, split):
    from mlcl.data.shapes import ensure_shapes
    from mlcl.eval.evaluate import evaluate

    root = ensure_shapes(tmp_path_factory.mktemp("shapes"), split=split, seed=0)
    result = evaluate(default_model, "shapes", root=root, split=split, limit=QUERIES, batch_size=256,
                      num_workers=0, progress=False)
    for key, floor in MIN_RECALL[split].items():
        assert result.metrics[key] >= floor, f"{split} {key} {result.metrics[key]:.1f} < {floor} ({result.metrics})"
