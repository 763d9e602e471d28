"""Drawing primitives: coordinate grids, smooth noise, object placement and polygon rasterising.

Everything is resolution independent: coordinates are fractions of the frame (or world units,
see :class:`Grid`), and pixel sizes only enter when rasterising.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from kdinterp.world.specs import Polygon

__all__ = ["Grid", "grid", "noise", "fbm", "Placement", "rasterize", "local_coords", "downsample"]


@dataclass(frozen=True)
class Grid:
    """Pixel-centre coordinates of a square canvas.

    ``x``, ``y`` are float32 arrays of shape (H, W) in world units: 0 at the top-left edge and
    ``extent`` at the bottom-right edge. One world unit is the side of a classification image, so
    a probe canvas twice as large (in pixels) spans ``extent = 2`` and its material patterns have
    the same pixel scale as in classification images.
    """

    x: np.ndarray
    y: np.ndarray
    extent: float

    @property
    def size(self) -> int:
        """Side of the canvas in pixels."""
        return self.x.shape[0]

    @property
    def frame_y(self) -> np.ndarray:
        """Vertical position as a fraction of the frame, in [0, 1], shape (H, W)."""
        return self.y / self.extent


@functools.cache
def grid(size: int, extent: float) -> Grid:
    """A cached, read-only :class:`Grid` of ``size`` x ``size`` pixels spanning ``extent`` world units."""
    axis = ((np.arange(size, dtype=np.float32) + 0.5) * (extent / size)).astype(np.float32)
    y, x = np.meshgrid(axis, axis, indexing="ij")
    x.flags.writeable = False
    y.flags.writeable = False
    return Grid(x, y, extent)


def noise(rng: np.random.Generator, g: Grid, cells_x: float, cells_y: float | None = None) -> np.ndarray:
    """Smooth value noise in about [-1, 1]: random values on a lattice, bicubically interpolated.

    Args:
        rng: the image's random generator.
        g: the canvas.
        cells_x: lattice cells per world unit along x (higher = finer).
        cells_y: cells per world unit along y; defaults to ``cells_x``.

    Returns:
        float32 array of shape (H, W).
    """
    cy = cells_x if cells_y is None else cells_y
    nx = max(1, round(cells_x * g.extent))
    ny = max(1, round(cy * g.extent))
    lattice = rng.uniform(-1.0, 1.0, size=(ny + 1, nx + 1)).astype(np.float32)
    out = Image.fromarray(lattice).resize((g.size, g.size), Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.float32)


def fbm(rng: np.random.Generator, g: Grid, cells: float, octaves: int = 3) -> np.ndarray:
    """Fractal noise: ``octaves`` layers of :func:`noise`, each twice as fine and half as strong.

    Returns:
        float32 array of shape (H, W), in about [-1, 1].
    """
    total = np.zeros((g.size, g.size), dtype=np.float32)
    for k in range(octaves):
        total += noise(rng, g, cells * 2**k) * (0.5**k)
    return total / (2.0 - 0.5 ** (octaves - 1))


@dataclass(frozen=True)
class Placement:
    """Where an object's unit box lands in the frame.

    ``cx``, ``cy``: centre as fractions of the frame side; ``scale``: side of the unit box as a
    fraction of the frame side; ``angle``: rotation in degrees (clockwise on screen);
    ``flip``: +1, or -1 to mirror the object left-right.
    """

    cx: float
    cy: float
    scale: float
    angle: float
    flip: int

    def to_pixels(self, shape: Polygon, size: int) -> list[tuple[float, float]]:
        """Map a polygon from the object frame to pixel coordinates of a ``size``-pixel canvas."""
        c, s = math.cos(math.radians(self.angle)), math.sin(math.radians(self.angle))
        out = []
        for u, v in shape:
            u = u * self.flip
            x = self.cx + self.scale * (c * u - s * v)
            y = self.cy + self.scale * (s * u + c * v)
            out.append((x * size - 0.5, y * size - 0.5))
        return out


def rasterize(shapes: list[tuple[int, list[tuple[float, float]]]], size: int) -> np.ndarray:
    """Paint polygons in order (later ones on top) into an index map.

    Args:
        shapes: ``(value, pixel_polygon)`` pairs; ``value`` in 1..255.
        size: canvas side in pixels.

    Returns:
        uint8 array of shape (size, size): the value of the last polygon covering each pixel
        centre, 0 where none does.
    """
    canvas = Image.new("L", (size, size), 0)
    pen = ImageDraw.Draw(canvas)
    for value, points in shapes:
        pen.polygon(points, fill=value)
    return np.asarray(canvas)


def local_coords(place: Placement, rows: np.ndarray, cols: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Object-frame coordinates ``(u, v)`` of the given pixels (inverse of :meth:`Placement.to_pixels`).

    Args:
        place: the object's placement.
        rows, cols: int arrays of pixel indices, shape (K,).
        size: canvas side in pixels.

    Returns:
        Two float32 arrays of shape (K,).
    """
    c, s = math.cos(math.radians(place.angle)), math.sin(math.radians(place.angle))
    dx = ((cols + 0.5) / size - place.cx) / place.scale
    dy = ((rows + 0.5) / size - place.cy) / place.scale
    u = (c * dx + s * dy) * place.flip
    v = -s * dx + c * dy
    return u.astype(np.float32), v.astype(np.float32)


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` x ``factor`` pixel blocks.

    Args:
        image: float32 array of shape (H*factor, W*factor, C).
        factor: integer >= 1.

    Returns:
        float32 array of shape (H, W, C).
    """
    if factor == 1:
        return image
    h, w, ch = image.shape
    return image.reshape(h // factor, factor, w // factor, factor, ch).mean(axis=(1, 3), dtype=np.float32)
