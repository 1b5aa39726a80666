"""Turn a document's `image` value into a PIL image, under a safety policy.

A served encoder must not become a file reader or an HTTP proxy for its
clients, nor be knocked over by a decompression bomb, so:

- local paths are refused unless they resolve (symlinks followed) inside one
  of the configured `roots` (none by default);
- remote URLs are refused unless `allow_urls` is set (off by default), and then
  only http(s), with a timeout and a byte cap;
- encoded payloads are capped at `max_bytes`, decoded images at `max_pixels`
  (checked from the header, before any pixel is decoded).

Decoding itself is `mlcl.image_decode.open_image` (JPEG draft decoding to what
the image is used for, EXIF orientation, transparency on white).

Every refusal or failure raises `ImageSourceError` whose message says what the
value was and why it cannot be used; the encoder prefixes the document id.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from mlcl.image_decode import open_image, to_rgb
from mlcl.pixels import PixelSpec

# Formats PIL may open here: common raster formats only (PIL's plugin list also
# covers exotic formats with a history of parser bugs).
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")

# Why a server refuses an absolute path (clients such as `mlcl index --by-path` recognise them in an error).
PATHS_DISABLED = "local paths are disabled on this server (no image_roots configured)"
OUTSIDE_ROOTS = "path is outside the allowed image roots"
PATH_REFUSALS = (PATHS_DISABLED, OUTSIDE_ROOTS)

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*):")
_DRIVE = re.compile(r"^[a-zA-Z]:[\\/]")  # "C:\..." is a path, not a URL scheme


class ImageSourceError(ValueError):
    """An image value that cannot be used: the message says what and why."""


@dataclass(frozen=True)
class ImagePolicy:
    """Where images may come from and how large they may be."""

    roots: tuple[Path, ...] = ()
    allow_urls: bool = False
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000  # e.g. 8000 x 5000; PIL's own bomb guard is ~89 M
    url_timeout: float = 10.0
    formats: tuple[str, ...] = field(default=ALLOWED_FORMATS)

    @classmethod
    def create(
        cls,
        roots: Iterable[str | os.PathLike] | None = None,
        allow_urls: bool = False,
        max_bytes: int = 20 * 1024 * 1024,
        max_pixels: int = 40_000_000,
        url_timeout: float = 10.0,
    ) -> "ImagePolicy":
        """Build a policy; roots are resolved once (so later symlink tricks on the roots themselves do not count)."""
        resolved = tuple(Path(os.path.realpath(Path(r).expanduser())) for r in (roots or ()))
        if max_bytes <= 0 or max_pixels <= 0:
            raise ValueError("max_bytes and max_pixels must be positive")
        return cls(resolved, bool(allow_urls), int(max_bytes), int(max_pixels), float(url_timeout))


def describe(value: Any) -> str:
    """A short, log-safe description of an image value (never the payload itself)."""
    if isinstance(value, str):
        if value.startswith("data:"):
            return f"data URI ({len(value)} chars)"
        shown = value if len(value) <= 120 else value[:117] + "..."
        if _SCHEME.match(value) and not _DRIVE.match(value):
            return f"URL {shown!r}"
        return f"path {shown!r}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"bytes ({len(value)} B)"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"tensor of shape {tuple(shape)}"
    if isinstance(value, Image.Image):
        return f"PIL image {value.size[0]}x{value.size[1]}"
    return f"value of type {type(value).__name__}"


@dataclass(frozen=True)
class Uses:
    """What a decoded image is for, so that a JPEG decodes no larger than needed (`mlcl.image_decode`):
    the model input (`pixels`) and a thumbnail of `thumbnail` px a side (0: none). `draft`: False decodes
    every image at full size."""

    pixels: Optional[PixelSpec] = None
    thumbnail: int = 0
    draft: bool = True


FULL_SIZE = Uses()


def load_image(value: Any, policy: ImagePolicy, uses: Uses = FULL_SIZE) -> Image.Image:
    """Decode `value` (data URI, path, URL, bytes, tensor or PIL image) to an upright RGB PIL image
    (transparency on white; JPEGs at the smallest scale that serves `uses`)."""
    try:
        image = _load(value, policy, uses)
    except ImageSourceError as exc:
        raise ImageSourceError(f"{describe(value)}: {exc}") from None
    return image


def _load(value: Any, policy: ImagePolicy, uses: Uses) -> Image.Image:
    if isinstance(value, str):
        return _load_str(value.strip(), policy, uses)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(value), policy, uses)
    if isinstance(value, Image.Image):
        _check_pixels(*value.size, policy)
        return to_rgb(value)
    if hasattr(value, "shape"):
        return from_array(value, policy)
    raise ImageSourceError("unsupported image value (expected a data URI, path, URL, bytes or a tensor)")


def _load_str(value: str, policy: ImagePolicy, uses: Uses) -> Image.Image:
    if not value:
        raise ImageSourceError("empty string")
    if value.startswith("data:"):
        return decode_bytes(_data_uri_bytes(value, policy), policy, uses)
    m = _SCHEME.match(value)
    if m and not _DRIVE.match(value):
        scheme = m.group(1).lower()
        if scheme == "file":
            return _load_path(urllib.parse.unquote(urllib.parse.urlparse(value).path), policy, uses)
        if scheme in ("http", "https"):
            return decode_bytes(_fetch(value, policy), policy, uses)
        raise ImageSourceError(f"unsupported URL scheme {scheme!r} (use a data URI, a path, or http(s))")
    return _load_path(value, policy, uses)


def _data_uri_bytes(uri: str, policy: ImagePolicy) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep:
        raise ImageSourceError("malformed data URI (no ',' after the header)")
    if not header.endswith(";base64"):
        raise ImageSourceError("data URI must be base64-encoded ('data:image/png;base64,...')")
    mediatype = header[5:-7].split(";")[0].strip().lower()
    if mediatype and not mediatype.startswith("image/") and mediatype != "application/octet-stream":
        raise ImageSourceError(f"data URI media type {mediatype!r} is not an image")
    # Check the size before decoding: base64 is 4 chars per 3 bytes.
    if len(payload) * 3 // 4 > policy.max_bytes:
        raise ImageSourceError(f"payload larger than the {policy.max_bytes} byte cap")
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageSourceError(f"invalid base64 payload ({exc})") from None


def _load_path(raw: str, policy: ImagePolicy, uses: Uses) -> Image.Image:
    if not policy.roots:
        raise ImageSourceError(PATHS_DISABLED)
    path = Path(raw).expanduser()
    candidates = [path] if path.is_absolute() else [root / path for root in policy.roots]
    for candidate in candidates:
        real = Path(os.path.realpath(candidate))  # follows symlinks and '..'
        if not any(real == root or real.is_relative_to(root) for root in policy.roots):
            continue
        if real.is_file():
            size = real.stat().st_size
            if size > policy.max_bytes:
                raise ImageSourceError(f"file of {size} B is larger than the {policy.max_bytes} byte cap")
            return decode_bytes(real.read_bytes(), policy, uses)
        if path.is_absolute():
            raise ImageSourceError("no such file")
    if path.is_absolute():
        raise ImageSourceError(OUTSIDE_ROOTS)
    raise ImageSourceError("no such file under the allowed image roots (or it escapes them)")


def _fetch(url: str, policy: ImagePolicy) -> bytes:
    if not policy.allow_urls:
        raise ImageSourceError("remote URLs are disabled on this server (allow_urls: false)")
    request = urllib.request.Request(url, headers={"User-Agent": "mlcl-encoder"})
    try:
        with urllib.request.urlopen(request, timeout=policy.url_timeout) as response:  # noqa: S310 (scheme checked)
            data = response.read(policy.max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ImageSourceError(f"download failed ({exc})") from None
    if len(data) > policy.max_bytes:
        raise ImageSourceError(f"download larger than the {policy.max_bytes} byte cap")
    return data


def _check_pixels(width: int, height: int, policy: ImagePolicy) -> None:
    if width <= 0 or height <= 0:
        raise ImageSourceError(f"empty image ({width}x{height})")
    if width * height > policy.max_pixels:
        raise ImageSourceError(f"image of {width}x{height} pixels exceeds the cap of {policy.max_pixels} pixels")


def decode_bytes(data: bytes, policy: ImagePolicy, uses: Uses = FULL_SIZE) -> Image.Image:
    """Decode encoded image bytes (PNG, JPEG, ...), checking size caps before decoding pixels."""
    if not data:
        raise ImageSourceError("empty image data")
    if len(data) > policy.max_bytes:
        raise ImageSourceError(f"{len(data)} B is larger than the {policy.max_bytes} byte cap")
    try:
        return open_image(data, uses.pixels, uses.thumbnail, formats=policy.formats,
                          check_size=lambda w, h: _check_pixels(w, h, policy), draft=uses.draft)
    except ImageSourceError:
        raise
    except UnidentifiedImageError:
        raise ImageSourceError(
            f"not a decodable image (corrupt data or a format other than {', '.join(policy.formats)})"
        ) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageSourceError(f"corrupt image data ({exc})") from None


def from_array(value: Any, policy: ImagePolicy) -> Image.Image:
    """A tensor/array as an image: HxW, HxWxC or CxHxW; uint8, or float in [0, 1]."""
    if hasattr(value, "detach"):  # torch (incl. docarray's TorchTensor)
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        arr = np.transpose(arr, (1, 2, 0))  # CxHxW -> HxWxC
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ImageSourceError("tensor must be HxW, HxWxC or CxHxW with 1, 3 or 4 channels")
    _check_pixels(arr.shape[1], arr.shape[0], policy)
    if arr.dtype == np.uint8:
        pass
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageSourceError("tensor holds NaN or infinite values")
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer) and arr.size and arr.min() >= 0 and arr.max() <= 255:
        arr = arr.astype(np.uint8)
    else:
        raise ImageSourceError(f"tensor dtype {arr.dtype} is not uint8 or float in [0, 1]")
    return to_rgb(Image.fromarray(np.ascontiguousarray(arr)))


def to_data_uri(data: bytes, mediatype: str = "image/png") -> str:
    """Encode image bytes as a data URI (what an HTTP client sends)."""
    return f"data:{mediatype};base64,{base64.b64encode(data).decode('ascii')}"


def file_to_data_uri(path: str | os.PathLike) -> str:
    """Read an image file into a data URI, guessing the media type from its suffix."""
    suffix = Path(path).suffix.lower().lstrip(".")
    mediatype = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
                 "bmp": "image/bmp", "webp": "image/webp", "tif": "image/tiff", "tiff": "image/tiff"}
    return to_data_uri(Path(path).read_bytes(), mediatype.get(suffix, "application/octet-stream"))


def image_uri(value: Any) -> str | None:
    """The value to remember as a gallery document's `uri`: a path or URL string, never a payload."""
    if isinstance(value, str) and value and not value.startswith("data:"):
        return value
    return None


def is_server_path(uri: Any) -> bool:
    """Whether a stored `uri` is a file path (of the server's file system), not an http(s) URL."""
    if not isinstance(uri, str) or not uri:
        return False
    scheme = _SCHEME.match(uri)
    return not scheme or bool(_DRIVE.match(uri)) or scheme.group(1).lower() == "file"


__all__: Sequence[str] = [
    "ALLOWED_FORMATS", "FULL_SIZE", "OUTSIDE_ROOTS", "PATHS_DISABLED", "PATH_REFUSALS", "ImagePolicy", "ImageSourceError", "Uses", "decode_bytes", "describe", "file_to_data_uri",
    "from_array", "image_uri", "is_server_path", "load_image", "to_data_uri",
]
