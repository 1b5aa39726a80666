"""Renders scenes with Pillow: pure functions of (scene, image size), so the
same scene always gives the same pixels and PNG bytes."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw

from .config import load_config
from .scene import Obj, Scene


@dataclass(frozen=True)
class Geometry:
    """Pixel layout of the grid for one canvas size."""

    image_size: int

    def __post_init__(self) -> None:
        cfg = load_config()
        if self.image_size < cfg.min_image_size:
            raise ValueError(
                f"image_size={self.image_size} is too small for the shapes benchmark "
                f"(minimum {cfg.min_image_size} px)"
            )

    def centre(self, cell: int) -> tuple[int, int]:
        g = load_config().grid
        row, col = divmod(cell, g)
        step = self.image_size / g
        return int((col + 0.5) * step), int((row + 0.5) * step)

    def half(self, size: str) -> int:
        cfg = load_config()
        # Scale CSS's half sides (given for a 64 px canvas) to this canvas.
        return max(1, round(cfg.half_sizes[size] * self.image_size / cfg.reference_canvas))

    def cell_box(self, cell: int) -> tuple[int, int, int, int]:
        """Pixel bounds [x0, x1) x [y0, y1) of a grid cell."""
        g = load_config().grid
        row, col = divmod(cell, g)
        step = self.image_size / g
        return int(col * step), int((col + 1) * step), int(row * step), int((row + 1) * step)

    def object_box(self, obj: Obj) -> tuple[int, int, int, int]:
        """Inclusive pixel box (x0, y0, x1, y1) that the object fills: 2h x 2h."""
        cx, cy = self.centre(obj.cell)
        h = self.half(obj.size)
        return cx - h, cy - h, cx + h - 1, cy + h - 1


def _draw(draw: ImageDraw.ImageDraw, geo: Geometry, obj: Obj) -> None:
    colour = load_config().colours[obj.colour]
    x0, y0, x1, y1 = geo.object_box(obj)
    if obj.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=colour)
    elif obj.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=colour)
    elif obj.shape == "triangle":
        # Apex up; bottom corners filled, top corners empty, centre pixel inside.
        draw.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=colour)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")


def render(scene: Scene, image_size: int = 64) -> Image.Image:
    """The scene as an RGB image (no anti-aliasing: every pixel is a palette colour)."""
    geo = Geometry(image_size)
    img = Image.new("RGB", (image_size, image_size), load_config().background)
    draw = ImageDraw.Draw(img)
    for obj in scene:
        _draw(draw, geo, obj)
    return img


def render_png(scene: Scene, image_size: int = 64) -> bytes:
    """PNG bytes of `render(scene)`; fixed encoder settings keep bytes reproducible."""
    buf = io.BytesIO()
    render(scene, image_size).save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()
