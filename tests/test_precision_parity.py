"""The precision parity check (mlcl/eval/precision_parity.py), run on the CPU with bf16: the bundled model's
gallery and composed-query vectors under bf16 autocast stay within cosine 0.999 of fp32 and keep >= 0.95 of
each query's top 10 on a fixed shapes query set; the model's own precision is left as it was."""

from __future__ import annotations

import pytest
import torch

from helpers import default_checkpoint_or_tiny, shapes_test_split
from mlcl.eval.precision_parity import precision_parity
from mlcl.model import load_checkpoint
from mlcl.model.inference import Inference, prepare_for_inference


@pytest.fixture(scope="module")
def inputs():
    model = prepare_for_inference(load_checkpoint(default_checkpoint_or_tiny()), "cpu", "fp32", "auto")
    ds = shapes_test_split(n=50)
    gallery = torch.stack([model.preprocess(ds.load_image(name)) for name in ds.gallery[:200]])
    triplets = ds.triplets[:48]
    queries = torch.stack([model.preprocess(ds.load_image(t["reference"])) for t in triplets])
    return model, gallery, queries, [t["caption"] for t in triplets]


def test_bf16_on_the_cpu_keeps_vectors_and_rankings(inputs):
    model, gallery, queries, texts = inputs
    report = precision_parity(model, gallery, queries, texts, "bf16")
    assert report["ok"], report
    assert report["gallery_cosine_min"] >= 0.999 and report["query_cosine_min"] >= 0.999
    assert report["topk_overlap_mean"] >= 0.95 and report["k"] == 10
    assert report["gallery_cosine_min"] < 1.0  # bf16 did run: its vectors are not bit-equal to fp32's
    assert model.inference == Inference("fp32", model.inference.channels_last)  # restored


def test_fp32_against_itself_is_exact_and_a_wrong_threshold_fails(inputs):
    model, gallery, queries, texts = inputs
    same = precision_parity(model, gallery[:40], queries[:8], texts[:8], "fp32")
    assert same["gallery_cosine_min"] > 0.99999 and same["topk_overlap_min"] == 1.0 and same["ok"]
    strict = precision_parity(model, gallery[:40], queries[:8], texts[:8], "bf16", min_cosine=0.9999999)
    assert not strict["ok"]
    with pytest.raises(ValueError, match="8 query images but 7 texts"):
        precision_parity(model, gallery, queries[:8], texts[:7], "bf16")
