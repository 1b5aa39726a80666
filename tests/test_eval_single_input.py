"""`mlcl eval --query image|text`: single-input baselines use the model's own single-input queries."""

from __future__ import annotations

import pytest
import torch

from mlcl.eval.single_input import with_query_mode
from mlcl.model import build_model


def test_single_input_queries_match_encode_query():
    model = build_model("mlcl-micro").eval()
    images = torch.randn(3, 3, 32, 32)
    texts = ["make the red circle blue", "remove the square", "add a small gray triangle in the center"]
    f_ref, f_txt = model.image_features(images), model.text_features(texts)
    image_only = with_query_mode(model, "image")
    text_only = with_query_mode(model, "text")
    assert torch.allclose(image_only.compose(f_ref, f_txt), model.encode_query(images=images), atol=1e-6)
    assert torch.allclose(text_only.compose(f_ref, f_txt), model.encode_query(texts=texts), atol=1e-6)
    assert image_only.embed_dim == model.embed_dim  # everything else is the model's
    assert with_query_mode(model, "composed") is model
    with pytest.raises(ValueError, match="query mode"):
        with_query_mode(model, "both")
