"""Image decoding and its safety policy (no Jina, no model)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import data_uri, png_bytes
from mlcl_executor.image_source import ImagePolicy, ImageSourceError, describe, image_uri, load_image

OPEN = ImagePolicy.create()


def test_data_uri_bytes_and_pil_decode_to_rgb():
    raw = png_bytes((10, 20, 30), (12, 8))
    for value in (data_uri(raw), raw, bytearray(raw), Image.open(io.BytesIO(raw))):
        im = load_image(value, OPEN)
        assert im.mode == "RGB" and im.size == (12, 8)
        assert im.getpixel((0, 0)) == (10, 20, 30)


@pytest.mark.parametrize(
    "value",
    [
        np.full((8, 12, 3), 7, np.uint8),               # HWC uint8
        np.full((3, 8, 12), 7 / 255, np.float32),       # CHW float in [0, 1]
        torch.full((3, 8, 12), 7 / 255),                # torch CHW
        np.full((8, 12), 7, np.uint8),                  # gray
    ],
)
def test_tensors(value):
    im = load_image(value, OPEN)
    assert im.size == (12, 8) and im.getpixel((3, 3)) == (7, 7, 7)


@pytest.mark.parametrize(
    "value, reason",
    [
        (b"definitely not an image", "not a decodable image"),
        (png_bytes()[:40], "corrupt"),
        ("data:image/png;base64,@@@", "invalid base64"),
        ("data:text/plain;base64,aGVsbG8=", "not an image"),
        ("data:image/png,rawdata", "base64"),
        ("ftp://example.com/a.png", "unsupported URL scheme"),
        ("http://example.com/a.png", "remote URLs are disabled"),
        ("/etc/passwd", "local paths are disabled"),
        ("", "empty"),
        (np.zeros((8, 8, 3), np.int64) - 1, "dtype"),
        (np.zeros((2, 8, 8, 3), np.uint8), "HxW"),
        (12345, "unsupported image value"),
    ],
)
def test_refusals_say_why(value, reason):
    with pytest.raises(ImageSourceError, match=reason):
        load_image(value, OPEN)


def test_svg_is_an_unsupported_type():
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    with pytest.raises(ImageSourceError, match="not a decodable image"):
        load_image(data_uri(svg, "image/svg+xml"), OPEN)


def test_pixel_cap_checked_before_decoding():
    policy = ImagePolicy.create(max_pixels=100)
    with pytest.raises(ImageSourceError, match="exceeds the cap of 100 pixels"):
        load_image(png_bytes(size=(11, 10)), policy)
    assert load_image(png_bytes(size=(10, 10)), policy).size == (10, 10)
    with pytest.raises(ImageSourceError, match="exceeds"):
        load_image(np.zeros((20, 20, 3), np.uint8), policy)


def test_byte_cap():
    policy = ImagePolicy.create(max_bytes=50)
    with pytest.raises(ImageSourceError, match="byte cap"):
        load_image(data_uri(png_bytes(size=(64, 64)) + b"\0" * 100), policy)


def test_paths_only_inside_roots(tmp_path):
    root = tmp_path / "gallery"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(png_bytes())
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes())
    (root / "link.png").symlink_to(outside)
    policy = ImagePolicy.create(roots=[root])

    assert load_image(str(root / "sub" / "a.png"), policy).size == (40, 30)
    assert load_image("sub/a.png", policy).size == (40, 30)                 # relative to a root
    assert load_image((root / "sub" / "a.png").as_uri(), policy).size == (40, 30)  # file:// URL
    for escape in (str(outside), "../secret.png", str(root / "sub" / ".." / ".." / "secret.png"), str(root / "link.png")):
        with pytest.raises(ImageSourceError, match="outside the allowed image roots|escapes them"):
            load_image(escape, policy)
    with pytest.raises(ImageSourceError, match="no such file"):
        load_image(str(root / "missing.png"), policy)


def test_urls_when_enabled_are_fetched_with_caps(tmp_path):
    # A file:// URL is a path; an http URL needs a server: use a local one.
    import http.server
    import threading

    (tmp_path / "a.png").write_bytes(png_bytes(size=(5, 4)))
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/a.png"
        assert load_image(url, ImagePolicy.create(allow_urls=True)).size == (5, 4)
        with pytest.raises(ImageSourceError, match="byte cap"):
            load_image(url, ImagePolicy.create(allow_urls=True, max_bytes=20))
        with pytest.raises(ImageSourceError, match="download failed"):
            load_image(url.replace("a.png", "missing.png"), ImagePolicy.create(allow_urls=True))
    finally:
        server.shutdown()


def test_descriptions_never_echo_payloads():
    assert describe(data_uri(png_bytes())).startswith("data URI (")
    assert describe(b"x" * 10) == "bytes (10 B)"
    assert "tensor of shape (3, 4)" == describe(np.zeros((3, 4)))
    assert image_uri("data:image/png;base64,xx") is None and image_uri("/a/b.png") == "/a/b.png"
    assert image_uri(b"x") is None


def test_policy_resolves_roots(tmp_path):
    link = tmp_path / "link"
    os.symlink(tmp_path, link)
    assert ImagePolicy.create(roots=[link]).roots == (tmp_path.resolve(),)
    with pytest.raises(ValueError):
        ImagePolicy.create(max_pixels=0)
