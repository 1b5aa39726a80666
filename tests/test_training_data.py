"""training/ data path: shapes preload + image cache, SSCL views, FashionIQ caption variants, feature cache rows."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("lavis")

import training  # noqa: E402,F401
from training.common import ImageSpec  # noqa: E402
from training.datasets.real import FashionIQTriplets  # noqa: E402
from training.datasets.shapes import ShapesTriplets  # noqa: E402
from training.features import FeatureCache  # noqa: E402

SPEC = ImageSpec(32, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711), 1.25)


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    from mlcl.data.shapes import generate_shapes

    return generate_shapes(tmp_path_factory.mktemp("sh"), sizes={"train": 24}, splits=["train"], progress=False,
                           workers=1)


def test_shapes_preload_cache_and_batches(shapes_root):
    from mlcl.data.shapes import ShapesDataset

    src = ShapesDataset(shapes_root, "train")
    ds = ShapesTriplets(src, "train", SPEC, "shapes", {"preload": True, "image_cache": True})
    px = ds.pixels(progress=False)
    assert px.dtype == torch.uint8 and px.shape == (len(ds.image_names()), 3, 32, 32)
    cached = list((Path(shapes_root) / ".mlcl_cache").glob("train-32px-*.npy"))
    assert len(cached) == 1
    again = ShapesTriplets(src, "train", SPEC, "shapes", {"preload": True})
    assert torch.equal(again.pixels(progress=False), px)  # read back from the .npy

    ds.return_aug = True
    b = ds.get_batch([0, 3, 7])
    assert set(b) == {"index", "ref", "tgt", "text", "ref_aug"}
    assert b["ref"].shape == (3, 3, 32, 32) and b["text"][1] == ds.triplets[3]["caption"]
    diff = (b["ref_aug"] - b["ref"]).abs()
    assert diff.mean() > 0  # a different view ...
    assert diff.mean() < 0.5  # ... of the same picture (normalised units)
    item = ds[3]
    assert torch.allclose(item["tgt"], b["tgt"][1]) and item["index"] == 3


def test_shapes_paraphrases(shapes_root):
    from mlcl.data.shapes import ShapesDataset

    src = ShapesDataset(shapes_root, "train")
    ds = ShapesTriplets(src, "train", SPEC, "shapes", {"paraphrases": True})
    variants = ds.captions_of(0)
    assert ds.triplets[0]["caption"] in variants and len(variants) > 1
    assert ds.train_caption(0) in variants
    plain = ShapesTriplets(src, "train", SPEC, "shapes", {})
    assert plain.identity()["content"] != ds.identity()["content"]


def test_fashioniq_four_caption_variants():
    src = SimpleNamespace(
        root=None,
        triplets=[{"id": "dress/0", "reference": "a", "target": "b", "captions": ["is red.", "has long sleeves "],
                   "caption": "Is red and has long sleeves"},
                  {"id": "dress/1", "reference": "b", "target": None, "captions": ["x", "y"], "caption": "X and y"}],
        image_path=lambda n: Path(f"/nowhere/{n}.jpg"),
    )
    ds = FashionIQTriplets(src, "train", SPEC, "fashion")
    assert len(ds) == 1  # the triplet without a target is dropped
    assert ds.captions_of(0) == ["Is red and has long sleeves", "Has long sleeves and is red", "Is red",
                                 "Has long sleeves"]
    seen = {ds.train_caption(0) for _ in range(200)}
    assert seen == set(ds.captions_of(0))


def test_feature_cache_draws_variants_and_views():
    d = 4
    cache = FeatureCache(
        f_img=torch.arange(3 * d, dtype=torch.float).view(3, d),
        f_txt=torch.arange(5 * d, dtype=torch.float).view(5, d) + 100,
        ref_rows=torch.tensor([0, 1]), tgt_rows=torch.tensor([1, 2]),
        txt_rows=torch.tensor([[0, 1, 2, 3], [4, 4, 4, 4]]),
        f_aug=torch.arange(2 * 3 * d, dtype=torch.float).view(2, 3, d) + 1000, aug_rows=torch.tensor([0, 1]),
    )
    texts, views = set(), set()
    for s in range(60):
        b = cache.batch(torch.tensor([0, 1]), generator=torch.Generator().manual_seed(s))
        assert torch.equal(b["f_ref"], cache.f_img[[0, 1]]) and torch.equal(b["f_tgt"], cache.f_img[[1, 2]])
        assert torch.equal(b["f_txt"][1], cache.f_txt[4])
        texts.add(int(b["f_txt"][0, 0]))
        views.add(int(b["f_ref_aug"][0, 0]))
    assert texts == {100, 104, 108, 112} and views == {1000, 1004, 1008}


class _VariantsDataset:
    """The TripletDataset interface build_feature_cache needs: 2 triplets with 3 and 4 caption variants."""

    dataset_name, split = "toy", "train"
    spec = ImageSpec(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), None)
    triplets = [{"reference": "a", "target": "b"}, {"reference": "b", "target": "c"}]

    def __len__(self):
        return 2

    def captions_of(self, i):
        return (["make it red", "paint it red", "turn it red"] if i == 0
                else ["remove it", "delete it", "take it away", "get rid of it"])

    def image_names(self):
        return ["a", "b", "c"]

    def reference_names(self):
        return ["a", "b"]

    def identity(self):
        return {"toy": 1}

    def image_batches(self, names, augment=False, batch_size=64, num_workers=0):
        yield torch.stack([torch.full((3, 32, 32), float(ord(n))) for n in names])


def test_feature_cache_draws_caption_variants_uniformly(tmp_path):
    # Defect 7: slots repeated vs[j % len(vs)], so with 3 variants in 4 slots the first was drawn twice as often.
    from mlcl.model import build_model
    from training.features import build_feature_cache

    model = build_model("mlcl-micro", method="clip4cir")
    cache = build_feature_cache(model, _VariantsDataset(), views=0, cache_dir=False, progress=False)
    g = torch.Generator().manual_seed(0)
    counts = {}
    for _ in range(3000):
        b = cache.batch(torch.tensor([0]), generator=g)
        key = int(torch.argmin((cache.f_txt - b["f_txt"][0]).abs().sum(dim=1)))
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 3  # the 3 variants of triplet 0 (4 slots: triplet 1 has 4)
    assert max(counts.values()) / min(counts.values()) < 1.2  # uniform, not 2:1:1


def test_rotate90_follows_the_seeded_torch_rng():
    # Defect 7: RandomRotate90 drew from Python's `random`, which the feature-cache build does not seed.
    import random

    from PIL import Image

    from training.datasets.augment import RandomRotate90

    img = Image.new("RGB", (4, 4))
    img.putpixel((0, 0), (255, 0, 0))
    op = RandomRotate90(0.75)

    def draws(py_seed):
        random.seed(py_seed)
        torch.manual_seed(7)
        return [op(img).getpixel((0, 0)) for _ in range(24)]

    assert draws(1) == draws(2)
