"""Pictures of retrieval results (Pillow only): the demo's contact sheet."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Callable, List, Sequence, Tuple

#: One row: the reference image's id, the modifier text, and the results as (gallery id, score), best first.
SheetRow = Tuple[str, str, Sequence[Tuple[str, float]]]


def _font(size: int) -> Any:
    """A scalable font where Pillow has one (its bitmap default font drops spaces)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def contact_sheet(rows: List[SheetRow], out: Path, load_image: Callable[[str], Any],
                  is_hit: Callable[[int, str], bool], top: int = 5, cell: int = 128) -> Path:
    """Each row: the reference image (framed blue) and its text, then the top `top` results with rank and
    score, hits (`is_hit(row_index, gallery_id)`) framed green. `load_image(id)` gives a PIL image."""
    from PIL import Image, ImageDraw

    pad, text_h = 12, 46
    width = pad + (top + 1) * (cell + pad) + pad
    sheet = Image.new("RGB", (width, pad + len(rows) * (cell + text_h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(12)
    for row, (reference, caption, results) in enumerate(rows):
        y = pad + row * (cell + text_h + pad)
        sheet.paste(load_image(reference).resize((cell, cell)), (pad, y))
        draw.rectangle([pad - 3, y - 3, pad + cell + 2, y + cell + 2], outline=(40, 90, 220), width=3)
        draw.multiline_text((pad, y + cell + 3), "\n".join(textwrap.wrap(caption, 24)[:3]), fill="black", font=font)
        for col, (match_id, score) in enumerate(list(results)[:top], 1):
            x = pad + col * (cell + pad) + pad
            sheet.paste(load_image(match_id).resize((cell, cell)), (x, y))
            hit = is_hit(row, match_id)
            draw.rectangle([x - 4, y - 4, x + cell + 3, y + cell + 3], outline=(20, 170, 40) if hit else (200, 200, 200),
                           width=5 if hit else 1)
            label = f"rank {col}  score {score:.3f}" + ("  HIT" if hit else "")
            draw.text((x, y + cell + 3), label, fill=(20, 120, 30) if hit else "black", font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


__all__ = ["SheetRow", "contact_sheet"]
