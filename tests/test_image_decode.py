"""Decoding a user's image (mlcl/image_decode.py): JPEGs at the smallest draft scale that still serves the model
input and the thumbnail, EXIF orientation applied, transparency on white, other formats as before."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mlcl.image_decode import auto_decode_workers, draft_size, max_reduction, open_image
from mlcl.pixels import PixelSpec
from mlcl_executor.decoding import DecodeSpec, ImageDecoder, resolve_workers
from mlcl_executor.image_source import ImagePolicy


def photo(size=(2000, 1500), seed=0, exif_orientation=None, quality=90) -> bytes:
    """A photo-like JPEG: a smooth gradient plus pixel noise, left half reddish, right half bluish."""
    rng = np.random.default_rng(seed)
    w, h = size
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    base = np.concatenate([200 - 150 * x + 0 * y, 60 + 120 * y + 0 * x, 50 + 150 * x + 0 * y], axis=2)
    arr = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(arr)
    buf = io.BytesIO()
    exif = None
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
    image.save(buf, "JPEG", quality=quality, **({"exif": exif.tobytes()} if exif else {}))
    return buf.getvalue()


def full_decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def test_a_jpeg_decodes_at_the_smallest_scale_that_serves_model_and_thumbnail():
    data = photo((2000, 1500))
    # 64 px model (padded: long side 1.25 * 64 = 80 needed) and a 128 px thumbnail: 1/8 (250 x 188) serves both
    assert open_image(data, PixelSpec(64), thumbnail=128).size == (250, 188)
    # 288 px model: 1.25 * 288 = 360 px on the long side; 1/8 would give 250, so 1/4
    assert open_image(data, PixelSpec(288)).size == (500, 375)
    # a 600 px thumbnail needs more than the model: 1/2
    assert open_image(data, PixelSpec(64), thumbnail=600).size == (1000, 750)
    # not told what for, or draft off: full size
    assert open_image(data).size == (2000, 1500)
    assert open_image(data, PixelSpec(64), draft=False).size == (2000, 1500)


@pytest.mark.parametrize("size", [(2000, 1500), (1500, 2000), (1024, 1024), (3000, 800), (400, 300), (333, 2111)])
@pytest.mark.parametrize("image_size", [64, 224, 288])
def test_the_model_input_and_thumbnail_are_always_a_downscale_of_what_is_decoded(size, image_size):
    spec = PixelSpec(image_size)
    for target_ratio in (1.25, None):
        spec = PixelSpec(image_size, target_ratio)
        image = open_image(photo(size, quality=50), spec, thumbnail=128)
        assert spec.max_reduction(*image.size) >= 1.0 - 1e-9, (size, image.size)
        assert max(image.size) >= min(128, max(size))
        if max_reduction(size, spec, 128) < 2:
            assert image.size == size  # no draft scale fits: full size


def test_draft_size_never_asks_for_more_reduction_than_allowed():
    for w, h in [(4000, 3000), (4001, 2999), (640, 480), (17, 9000)]:
        for reduction in (1.0, 1.9, 2.0, 3.99, 4.0, 7.5, 8.0, 50.0):
            target = draft_size((w, h), reduction)
            if reduction < 2:
                assert target is None
                continue
            scale = min(w // target[0], h // target[1])  # what PIL's JPEG draft derives from the request
            assert scale <= reduction


def test_draft_pixels_stay_close_to_full_decode_pixels():
    data = photo((2000, 1500), seed=3)
    for size in (64, 288):
        spec = PixelSpec(size)
        draft = spec(open_image(data, spec)).astype(np.float32)
        full = spec(full_decode(data)).astype(np.float32)
        psnr = 10 * np.log10(255.0**2 / np.mean((draft - full) ** 2))
        assert psnr > 30, psnr


def test_png_is_decoded_at_full_size_bit_for_bit_as_before():
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    spec = PixelSpec(64)
    image = open_image(data, spec, thumbnail=128)
    assert image.size == (400, 300)
    np.testing.assert_array_equal(spec(image), spec(full_decode(data)))


def test_exif_orientation_is_applied_before_the_model_and_thumbnail_see_the_image():
    stored = photo((128, 64), seed=5, quality=95)
    rotated = photo((128, 64), seed=5, quality=95, exif_orientation=6)  # same pixels, "rotate 90 on display"
    upright = open_image(rotated)
    assert upright.size == (64, 128)
    # the same JPEG data, transposed as EXIF 6 says (rotate 270 = 90 clockwise)
    np.testing.assert_array_equal(np.asarray(upright), np.asarray(full_decode(stored).transpose(Image.Transpose.ROTATE_270)))
    spec = DecodeSpec(ImagePolicy.create(), PixelSpec(32), thumbnail_size=128, thumbnail_max_bytes=1 << 20)
    (pixels, thumb), = ImageDecoder(spec, workers=0).decode([rotated], thumbnails=True)
    assert Image.open(io.BytesIO(__import__("base64").b64decode(thumb.split(",", 1)[1]))).size == (64, 128)
    np.testing.assert_array_equal(pixels, PixelSpec(32)(upright))


def test_exif_orientation_also_after_a_draft_decode():
    data = photo((2000, 1000), seed=6, exif_orientation=8)
    image = open_image(data, PixelSpec(64))
    assert image.size == (125, 250)  # drafted to 1/8 (250 x 125), then turned upright


def test_transparent_pixels_are_white():
    rgba = np.zeros((20, 30, 4), np.uint8)  # fully transparent black...
    rgba[:, 15:] = (255, 0, 0, 255)  # ...beside opaque red
    rgba[0, 0] = (0, 0, 255, 128)  # half-transparent blue
    out = {}
    for mode, image in [("RGBA", Image.fromarray(rgba, "RGBA")), ("P", Image.fromarray(rgba, "RGBA").convert("P")),
                        ("LA", Image.fromarray(rgba, "RGBA").convert("LA"))]:
        buf = io.BytesIO()
        if mode == "P":
            image.info["transparency"] = image.getpixel((5, 5))
        image.save(buf, "PNG" if mode != "P" else "GIF", **({"transparency": image.getpixel((5, 5))} if mode == "P" else {}))
        out[mode] = np.asarray(open_image(buf.getvalue()))
    assert (out["RGBA"][5, 5] == 255).all() and tuple(out["RGBA"][5, 20]) == (255, 0, 0)
    assert tuple(out["RGBA"][0, 0]) == (127, 127, 255)  # blue over white, half and half
    assert (out["P"][5, 5] == 255).all()
    assert (out["LA"][5, 5] == 255).all()
    # an array with an alpha channel, in-process
    from mlcl_executor.image_source import from_array

    assert (np.asarray(from_array(rgba, ImagePolicy.create()))[5, 5] == 255).all()


def test_an_rgb_jpeg_is_not_copied_or_changed_by_the_colour_step():
    data = photo((64, 48))
    np.testing.assert_array_equal(np.asarray(open_image(data)), np.asarray(full_decode(data)))


def test_decode_workers_auto_is_the_cores_the_model_leaves_free():
    assert auto_decode_workers("cpu", 2, cpus=2) == 1  # at least one
    assert auto_decode_workers("cpu", 4, cpus=16) == 12
    assert auto_decode_workers("cuda", 16, cpus=16) == 15  # a GPU model keeps one core busy
    assert resolve_workers(3, "cpu", 1) == 3 and resolve_workers("0", "cpu", 1) == 0
    assert resolve_workers("auto", "cpu", 1) >= 1
    for bad in (-1, "many", 1.5, True):
        with pytest.raises(ValueError, match="decode_workers"):
            resolve_workers(bad, "cpu", 1)


def test_a_photo_gets_a_jpeg_thumbnail_a_drawing_a_png_one():
    from mlcl_executor.thumbnails import make_thumbnail

    jpeg = open_image(photo((1200, 900)), PixelSpec(64), thumbnail=128)
    uri = make_thumbnail(jpeg, 128, 32768)
    assert uri.startswith("data:image/jpeg;")
    thumb = Image.open(io.BytesIO(__import__("base64").b64decode(uri.split(",", 1)[1])))
    assert thumb.size == (128, 96)
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(buf, "PNG")
    assert make_thumbnail(open_image(buf.getvalue()), 128, 32768).startswith("data:image/png;")
