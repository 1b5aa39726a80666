"""The torch-free geometric preprocessing (`mlcl.pixels`) equals torchvision's, and the batched
normalisation equals the per-image eval transform: serving's decode workers and the model's own
`preprocess` must feed the model the same numbers."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from mlcl.model.transforms import TargetPad, eval_transform, pixels_to_batch
from mlcl.pixels import PixelSpec, center_crop

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
SIZES = [(64, 64), (63, 64), (200, 120), (120, 200), (37, 300), (300, 37), (1, 5), (640, 480), (64, 200), (81, 65)]


def _image(w: int, h: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed + w * 1000 + h)
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def _torchvision_reference(size: int, ratio):
    """The eval transform as it was written with torchvision's own Resize / CenterCrop (the trained models' input)."""
    steps = [lambda im: im.convert("RGB")]
    if ratio:
        steps.append(TargetPad(ratio))
    steps += [T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size), T.ToTensor(), T.Normalize(MEAN, STD)]
    return T.Compose(steps)


@pytest.mark.parametrize("ratio", [1.25, None])
@pytest.mark.parametrize("size", [64, 224])
def test_eval_transform_equals_torchvision(size, ratio):
    ours, ref = eval_transform(size, MEAN, STD, ratio), _torchvision_reference(size, ratio)
    for i, (w, h) in enumerate(SIZES):
        for mode in ("RGB", "L", "RGBA", "P"):
            im = _image(w, h, mode, seed=i)
            assert torch.equal(ours(im), ref(im)), f"{w}x{h} {mode}: differs from torchvision"


def test_batched_pixels_equal_the_per_image_transform():
    spec = PixelSpec(64, 1.25)
    images = [_image(w, h, seed=i) for i, (w, h) in enumerate(SIZES)]
    pixels = [spec(im) for im in images]
    assert all(p.dtype == np.uint8 and p.shape == (64, 64, 3) for p in pixels)
    batch = pixels_to_batch(pixels, MEAN, STD)
    expected = torch.stack([eval_transform(64, MEAN, STD, 1.25)(im) for im in images])
    assert batch.is_contiguous() and batch.shape == (len(images), 3, 64, 64)
    assert torch.equal(batch, expected)


def test_pixel_spec_pickles_and_center_crop_refuses_small_images():
    import pickle

    spec = PixelSpec(32, None)
    assert pickle.loads(pickle.dumps(spec)) == spec
    with pytest.raises(ValueError, match="smaller than the crop"):
        center_crop(_image(10, 40), 32)
