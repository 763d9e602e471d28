"""Broden's 11 colour names, and the deterministic colour naming that derives colour masks.

A pixel is named only when the mean colour of its 3x3 neighbourhood is confidently close to one
prototype: within a radius of the nearest prototype and clearly nearer to it than to the second
nearest. Most pixels stay unnamed, which keeps every colour concept small on the probe set. All
arithmetic is on integers, so naming a stored (lossless PNG) image reproduces its colour mask
exactly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["COLOR_NAMES", "PROTOTYPES", "name_colors"]

#: Broden's colour concepts, in Broden's order; ``name_colors`` returns 1 + the index in this tuple.
COLOR_NAMES: tuple[str, ...] = (
    "black-c", "blue-c", "brown-c", "green-c", "grey-c", "orange-c",
    "pink-c", "purple-c", "red-c", "white-c", "yellow-c",
)

#: RGB prototype of each colour name, same order as ``COLOR_NAMES``.
PROTOTYPES: tuple[tuple[int, int, int], ...] = (
    (25, 25, 25), (40, 75, 200), (115, 72, 35), (50, 140, 50), (128, 128, 128), (235, 135, 25),
    (235, 145, 185), (125, 50, 160), (205, 30, 35), (240, 240, 240), (235, 212, 40),
)

_WEIGHTS = np.array([3, 4, 2], dtype=np.int32)  # per-channel weights of the squared distance (R, G, B)
_RADIUS_SQ = 9 * 17**2  # weighted squared distance: about 17 levels per channel
_RATIO_SQ = 4  # the second-nearest prototype must be at least 2x farther (4x in squared distance)
_PROTOS = np.array(PROTOTYPES, dtype=np.int32)


def _box_sum(rgb: np.ndarray) -> np.ndarray:
    """Sum of each pixel's 3x3 neighbourhood (edges replicated), int32 (H, W, 3)."""
    padded = np.pad(rgb.astype(np.int32), ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = rgb.shape[:2]
    return sum(padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))


def name_colors(rgb: np.ndarray) -> np.ndarray:
    """Name the colour of every pixel that is confidently close to one Broden colour prototype.

    A pixel's colour is the mean of its 3x3 neighbourhood (so pixel noise does not fragment
    the masks); it is named when that mean lies within ``RADIUS`` of the nearest prototype and
    the second-nearest prototype is at least twice as far. Integer arithmetic throughout.

    Args:
        rgb: image, shape (H, W, 3), dtype uint8, RGB.

    Returns:
        int32 array of shape (H, W): 0 where no name is confident, else 1 + the index of the
        name in ``COLOR_NAMES`` (1 = black-c, ..., 11 = yellow-c).

    Raises:
        ValueError: ``rgb`` is not an (H, W, 3) uint8 array.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"name_colors expects an (H, W, 3) uint8 array, got {rgb.dtype} {rgb.shape}")
    diff = _box_sum(rgb)[:, :, None, :] - 9 * _PROTOS[None, None, :, :]  # 9 x (mean - prototype)
    dist = (diff * diff * _WEIGHTS).sum(axis=-1)  # (H, W, 11): 81 x weighted squared distance
    two = np.partition(dist, 1, axis=-1)
    nearest = dist.argmin(axis=-1)
    confident = (two[..., 0] <= 81 * _RADIUS_SQ) & (two[..., 0] * _RATIO_SQ <= two[..., 1])
    return np.where(confident, nearest + 1, 0).astype(np.int32)
