"""The unit strips of the HTML report: each unit's top probe images with the pixels outside its mask dimmed.

As in NetDissect-Lite (``visualize/report.py``), the mask of unit u on an image is its activation map
upsampled bilinearly (``align_corners=False``) to the image size and thresholded at ``T_u``; pixels
outside the mask are dimmed to 20%. Images taller than the tile height (96 px) are stored at it
(bicubic; mask by nearest neighbour), smaller ones at their own size, pixel for pixel, and shown at
the tile height by the browser. Written as ``images/<key>/unit_<u>.png`` under the report folder.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from kdinterp.core.io import write_bytes
from kdinterp.core.progress import progress_bar
from kdinterp.dissection.broden import Broden
from kdinterp.dissection.upsample import unit_masks
from kdinterp.reporting.dissections import ModelDissection
from kdinterp.reporting.html import strip_path

__all__ = ["DIM", "GAP", "PICTURE_CACHE", "TILE", "masked_tile", "read_picture", "stored_height", "unit_mask",
           "unit_strip", "write_strips"]

#: Displayed height in pixels of one probe image in a strip (its width follows the aspect ratio).
#: Larger probe images are stored at this height; smaller ones at their own, scaled up by the browser.
TILE = 96
#: White pixels between the images of a strip.
GAP = 2
#: Brightness of the pixels outside a unit's mask (NetDissect-Lite: ``(0.8 * mask + 0.2) * image``).
DIM = 0.2
#: Probe images kept in memory, at the strip height, while the strips are drawn.
PICTURE_CACHE = 4096
#: zlib level of the strip PNGs: 1 encodes about 4x faster than Pillow's default 6, for somewhat larger files.
PNG_LEVEL = 1


def _open_rgb(path: Path) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: probe image not found (listed in index.csv of dissection.broden_dir)")
    with Image.open(path) as img:
        return img.convert("RGB")


def read_picture(path: Path, height: int) -> tuple[tuple[int, int], np.ndarray]:
    """A probe image, resized (bicubic) to ``height`` keeping its aspect ratio; unchanged at its own height.

    Returns:
        ``((ih, iw), tile)``: the file's size and uint8 ``tile (height, round(height * iw / ih), 3)``.

    Raises:
        FileNotFoundError: the image file is missing.
    """
    rgb = _open_rgb(path)
    width = max(1, round(height * rgb.width / rgb.height))
    return (rgb.height, rgb.width), np.asarray(rgb.resize((width, height), Image.Resampling.BICUBIC))


def stored_height(broden: Broden, tile: int) -> int:
    """Strip height in the PNGs: ``tile``, or the first probe image's height when smaller (no upscaled bytes)."""
    return min(tile, _open_rgb(broden.root / "images" / broden.rows[0].image).height)


def unit_mask(activations: np.ndarray, threshold: float, size: tuple[int, int]) -> np.ndarray:
    """Where a unit fires on images of one size: bool ``(k, ih, iw)``.

    Args:
        activations: ``(k, h, w)`` raw activation maps of the unit on ``k`` images.
        threshold: the unit's threshold ``T_u``.
        size: ``(ih, iw)`` size shared by the ``k`` images.

    Returns:
        each map upsampled bilinearly (``align_corners=False``) to ``size``, ``> threshold``:
        the dissection's own masks (:func:`kdinterp.dissection.upsample.unit_masks`), at image resolution.
    """
    acts = torch.from_numpy(np.asarray(activations, dtype=np.float32))[:, None]
    return unit_masks(acts, torch.tensor([threshold], dtype=torch.float32), size).reshape(-1, *size).numpy()


def masked_tile(picture: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``picture`` with the pixels outside ``mask`` dimmed to :data:`DIM`.

    Args:
        picture: uint8 ``(th, tw, 3)``.
        mask: bool ``(ih, iw)``, resized to ``(th, tw)`` by nearest neighbour.

    Returns:
        uint8 ``(th, tw, 3)``.
    """
    th, tw = picture.shape[:2]
    inside = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((tw, th), Image.Resampling.NEAREST)) > 0
    dimmed = np.rint(picture * DIM).astype(np.uint8)
    return np.where(inside[..., None], picture, dimmed)


def unit_strip(tiles: Sequence[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Tiles of equal height side by side, ``gap`` white pixels apart: uint8 ``(th, sum(tw) + gaps, 3)``."""
    width = sum(tile.shape[1] for tile in tiles) + gap * (len(tiles) - 1)
    strip = np.full((tiles[0].shape[0], width, 3), 255, dtype=np.uint8)
    x = 0
    for tile in tiles:
        strip[:, x:x + tile.shape[1]] = tile
        x += tile.shape[1] + gap
    return strip


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue()


def write_strips(model: ModelDissection, broden: Broden, out: Path,
                  picture: Callable[[Path], tuple[tuple[int, int], np.ndarray]],
                  tile: int) -> dict[int, tuple[int, int]]:
    """Write every unit's strip under ``out``.

    Args:
        model: the model's dissection.
        broden: the probe set.
        out: the report directory.
        picture: :func:`read_picture` at the strip height (cached).
        tile: displayed height of the strips.

    Returns:
        ``{unit: (width, height)}``, the size at which to display each strip.
    """
    sizes = {}
    with progress_bar(f"report ({model.key})", total=len(model.thresholds)) as advance:
        for unit, threshold in enumerate(model.thresholds):
            pictures = [picture(broden.root / "images" / broden.rows[row].image) for row in model.image_index[unit]]
            masks: list[np.ndarray | None] = [None] * len(pictures)
            for size in dict.fromkeys(size for size, _ in pictures):  # one upsampling per image size
                same = [i for i, (other, _) in enumerate(pictures) if other == size]
                for i, mask in zip(same, unit_mask(model.maps[unit][same], float(threshold), size), strict=True):
                    masks[i] = mask
            strip = unit_strip([masked_tile(pixels, mask) for (_, pixels), mask in zip(pictures, masks, strict=True)])
            write_bytes(out / strip_path(model.key, unit), _png(strip))
            sizes[unit] = (round(strip.shape[1] * tile / strip.shape[0]), tile)
            advance(1, "")
    return sizes
