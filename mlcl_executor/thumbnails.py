"""Small, size-capped thumbnails of gallery images, kept with each gallery document.

The encoder makes one at `/index` and `/update` (from the image it decoded
anyway) and puts it in the document's tags under `thumbnail`, as a data URI;
the indexer stores tags as they are and returns them with matches. So a
client (the search page) can show results without reading any file: no path
or URL is ever served. Matches carry the thumbnail only when a search asks
for it (`parameters: {"thumbnails": true}`): other clients' answers stay small.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Dict, Mapping, Optional

from PIL import Image

from .reference import NORM_TAG

THUMBNAIL_TAG = "thumbnail"


def make_thumbnail(image: Image.Image, max_side: int, max_bytes: int) -> Optional[str]:
    """A data URI of `image` shrunk to at most `max_side` px a side: PNG, else JPEG, else None past `max_bytes`.

    PNG first: lossless, and small for flat synthetic images (a shapes scene is
    under 1 KB). An image decoded from a JPEG (a photo) goes straight to JPEG: a
    lossless copy of a lossy source buys nothing, and its PNG is several times
    larger. PNG's `optimize` is not used: it cost 30 ms a photo thumbnail for 0.3 % fewer bytes.
    """
    if max_side <= 0:
        return None
    photo = getattr(image, "format", None) == "JPEG"
    thumb = image.convert("RGB")
    if max(thumb.size) > max_side:
        thumb = thumb.copy()
        thumb.thumbnail((max_side, max_side), Image.BICUBIC)
    formats = (("PNG", "image/png", {}), ("JPEG", "image/jpeg", {"quality": 85}))
    for fmt, mediatype, options in formats[1:] if photo else formats:
        buf = io.BytesIO()
        thumb.save(buf, fmt, **options)
        data = buf.getvalue()
        if len(data) * 4 // 3 + 32 <= max_bytes:  # the data URI's size, base64 included
            return f"data:{mediatype};base64,{base64.b64encode(data).decode('ascii')}"
    return None


def match_tags(tags: Optional[Mapping[str, Any]], keep_thumbnail: bool) -> Dict[str, Any]:
    """A stored document's tags as a match returns them (the thumbnail only when asked for; never the
    feature norm, which is the server's own, `reference.py`)."""
    out = dict(tags or {})
    out.pop(NORM_TAG, None)
    if not keep_thumbnail:
        out.pop(THUMBNAIL_TAG, None)
    return out


__all__ = ["THUMBNAIL_TAG", "make_thumbnail", "match_tags"]
