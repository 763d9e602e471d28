"""Procedural patterns: material surfaces, texture tiles and object-surface patterns.

* A **material pattern** ``f(rng, grid, scale)`` returns a float32 (H, W) field in about [-1, 1];
  the material's colour is ``colour + f * delta`` (see :class:`kdinterp.world.specs.Material`).
* A **texture pattern** ``f(rng, u, v)`` returns a bool (H, W) foreground mask from rotated,
  scaled tile coordinates (one pattern period is about one unit of ``u``).
* A **surface pattern** marks the pixels of an object part painted with the pattern colour,
  from object-frame coordinates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kdinterp.world.draw import Grid, fbm, noise

__all__ = ["MATERIAL_PATTERNS", "TEXTURE_PATTERNS", "surface_mask"]

TAU = np.float32(2 * np.pi)


def _frac(a: np.ndarray) -> np.ndarray:
    return a - np.floor(a)


# ---------------------------------------------------------------- material patterns


def _gradient(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    return np.tanh(5 * g.frame_y - 1.2) + 0.15 * noise(rng, g, 3 * s)


def _clouds(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    return np.tanh(2.5 * fbm(rng, g, 3 * s))


def _waves(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    warp = 0.15 * noise(rng, g, 3 * s)
    return 0.7 * np.sin(TAU * (g.y * 8 * s + warp)) + 0.3 * noise(rng, g, 12 * s)


def _caustics(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    net = 1 - 2 * np.abs(noise(rng, g, 6 * s))
    return 0.5 * (1 - 2 * g.frame_y) + 0.5 * net


def _ripples(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    phase = TAU * (0.3 * g.x + g.y) * 10 * s + 2 * noise(rng, g, 2 * s)
    return 0.5 * np.sin(phase) + 0.3 * noise(rng, g, 16 * s)


def _streaks(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    return 0.6 * noise(rng, g, 30 * s, 3 * s) + 0.3 * noise(rng, g, 10 * s)


def _noise(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    return 0.8 * fbm(rng, g, 4 * s)


def _cracks(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    base = 0.6 * fbm(rng, g, 4 * s)
    return np.where(np.abs(noise(rng, g, 5 * s)) < 0.06, -1.0, base)


def _sheets(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    bands = np.sin(TAU * (g.x + g.y) * 3 * s + 2 * noise(rng, g, 2 * s))
    return 0.4 * bands + 0.3 * noise(rng, g, 8 * s)


def _speckle(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    return 0.8 * noise(rng, g, 40 * s)


def _pebbles(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    return np.tanh(3 * noise(rng, g, 16 * s))


def _bricks(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    rows = g.y * 9 * s
    row = np.floor(rows).astype(np.int32)
    cols = g.x * 4.5 * s + 0.5 * (row % 2)
    col = np.floor(cols).astype(np.int32)
    shade = rng.uniform(-0.25, 0.25, size=(row.max() + 1, col.max() + 1)).astype(np.float32)
    mortar = (_frac(rows) < 0.14) | (_frac(cols) < 0.07)
    return np.where(mortar, -1.0, shade[row, col])


def _blotches(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    return 0.6 * fbm(rng, g, 3 * s) + 0.2 * noise(rng, g, 20 * s)


def _tiles(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    ty, tx = g.y * 5 * s, g.x * 5 * s
    row, col = np.floor(ty).astype(np.int32), np.floor(tx).astype(np.int32)
    shade = rng.uniform(-0.15, 0.15, size=(row.max() + 1, col.max() + 1)).astype(np.float32)
    grout = (_frac(ty) < 0.1) | (_frac(tx) < 0.1)
    return np.where(grout, -1.0, shade[row, col])


def _grain(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    rings = 0.5 * np.sin(TAU * (g.y * 14 * s + 0.8 * noise(rng, g, 2 * s, 4 * s)))
    return np.where(_frac(g.y * 3 * s) < 0.05, -1.0, rings)


def _fine(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    return 0.7 * noise(rng, g, 48 * s)


def _stripes(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    return 0.8 * np.sign(np.sin(TAU * g.x * 6 * s)) + 0.1 * noise(rng, g, 10 * s)


def _veins(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    wave = np.abs(np.sin(TAU * (g.x + g.y) * 1.5 * s + 3 * fbm(rng, g, 2 * s)))
    return np.where(wave < 0.1, -1.0, 0.3 + 0.2 * noise(rng, g, 6 * s))


def _brushed(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    return 0.5 * noise(rng, g, 2 * s, 40 * s) + 0.3 * (2 * g.x / g.extent - 1)


def _blobs(rng: np.random.Generator, g: Grid, s: float) -> np.ndarray:
    return np.tanh(3 * fbm(rng, g, 6 * s))


MaterialPattern = Callable[[np.random.Generator, Grid, float], np.ndarray]

#: Material pattern name -> function; names are referenced by ``Material.pattern``.
MATERIAL_PATTERNS: dict[str, MaterialPattern] = {
    "gradient": _gradient, "clouds": _clouds, "waves": _waves, "caustics": _caustics, "ripples": _ripples,
    "streaks": _streaks, "noise": _noise, "cracks": _cracks, "sheets": _sheets, "speckle": _speckle,
    "pebbles": _pebbles, "bricks": _bricks, "blotches": _blotches, "tiles": _tiles, "grain": _grain,
    "fine": _fine, "stripes": _stripes, "veins": _veins, "brushed": _brushed, "blobs": _blobs,
}


# ---------------------------------------------------------------- texture tiles


def _striped(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _frac(u) < 0.5


def _dotted(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (_frac(u) - 0.5) ** 2 + (_frac(v) - 0.5) ** 2 < 0.09


def _chequered(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.floor(u) + np.floor(v)) % 2 == 0


def _zigzagged(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _frac(v + np.abs(_frac(u) - 0.5)) < 0.5


def _grid_lines(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (_frac(u) < 0.2) | (_frac(v) < 0.2)


def _wavy(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _frac(v + 0.3 * np.sin(TAU * u * 0.5)) < 0.5


def _crosshatched(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (_frac(u + v) < 0.18) | (_frac(u - v) < 0.18)


def _honeycombed(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    h = np.float32(np.sqrt(3.0))
    da = (_frac(u) - 0.5) ** 2 + ((_frac(v / h) - 0.5) * h) ** 2
    db = (_frac(u + 0.5) - 0.5) ** 2 + ((_frac(v / h + 0.5) - 0.5) * h) ** 2
    return np.abs(np.sqrt(da) - np.sqrt(db)) < 0.1


def _spiralled(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    cu, cv = rng.uniform(u.min(), u.max()), rng.uniform(v.min(), v.max())
    r = np.sqrt((u - cu) ** 2 + (v - cv) ** 2)
    theta = np.arctan2(v - cv, u - cu) / TAU
    return _frac(r + theta) < 0.5


def _bubbly(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    out = np.zeros(u.shape, dtype=bool)
    for _ in range(int(u.max() - u.min()) * 2 + 4):
        cu, cv = rng.uniform(u.min(), u.max()), rng.uniform(v.min(), v.max())
        r = rng.uniform(0.3, 1.2)
        ring = np.abs(np.sqrt((u - cu) ** 2 + (v - cv) ** 2) - r)
        out |= ring < 0.12
    return out


TexturePattern = Callable[[np.random.Generator, np.ndarray, np.ndarray], np.ndarray]

#: Texture name -> function returning a boolean foreground mask of the tile; names match TEXTURES.
TEXTURE_PATTERNS: dict[str, TexturePattern] = {
    "striped": _striped, "dotted": _dotted, "chequered": _chequered, "zigzagged": _zigzagged,
    "grid": _grid_lines, "wavy": _wavy, "crosshatched": _crosshatched, "honeycombed": _honeycombed,
    "spiralled": _spiralled, "bubbly": _bubbly,
}


# ---------------------------------------------------------------- object surfaces


def surface_mask(pattern: str, u: np.ndarray, v: np.ndarray, freq: float) -> np.ndarray:
    """Which part pixels get the pattern colour.

    Args:
        pattern: ``plain``, ``hstripes`` (stripes along u), ``vstripes`` (bands across u) or ``spots``.
        u, v: object-frame coordinates of the part's pixels, float32, shape (K,).
        freq: pattern periods per object unit.

    Returns:
        bool array of shape (K,).

    Raises:
        ValueError: unknown pattern name.
    """
    if pattern == "plain":
        return np.zeros(u.shape, dtype=bool)
    if pattern == "hstripes":
        return _frac(v * freq) < 0.5
    if pattern == "vstripes":
        return _frac(u * freq) < 0.3
    if pattern == "spots":
        return (_frac(u * freq) - 0.5) ** 2 + (_frac(v * freq + 0.5 * np.floor(u * freq)) - 0.5) ** 2 < 0.07
    raise ValueError(f"unknown surface pattern {pattern!r}; expected plain, hstripes, vstripes or spots")
