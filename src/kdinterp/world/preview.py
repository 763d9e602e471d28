"""A PNG contact sheet of a generated concept world, read back from its files.

Top: the first training image of every class (one row per object type). Below: probe scenes,
each followed by its colour, object, part and material masks (false colours), then texture tiles.
"""

from __future__ import annotations

import colorsys
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from kdinterp.io import atomic_path, read_json
from kdinterp.world.broden_writer import decode_labels
from kdinterp.world.colors import PROTOTYPES

__all__ = ["write_preview"]

_MASKS = ("color", "object", "part", "material")


def _load(path: Path, size: int) -> np.ndarray:
    """An image file as (size, size, 3) uint8, nearest-neighbour resized."""
    return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.Resampling.NEAREST))


def _false_colors(labels: np.ndarray, category: str) -> np.ndarray:
    """Label map (H, W) -> (H, W, 3) uint8: colour names in their prototype, other labels spread over hues."""
    if category == "color":
        table = np.array([(0, 0, 0), *PROTOTYPES], dtype=np.uint8)
        return table[labels]
    hues = [(n * 0.618034) % 1.0 for n in range(int(labels.max()) + 1)]
    rgb = [tuple(round(255 * c) for c in colorsys.hsv_to_rgb(h, 0.75, 0.95)) for h in hues[1:]]
    table = np.array([(0, 0, 0), *rgb], dtype=np.uint8)
    return table[labels]


def _class_rows(world_dir: Path, world: dict, size: int) -> list[np.ndarray]:
    rows: dict[str, list[np.ndarray]] = {}
    for cls in world["classes"]:
        path = world_dir / "train" / cls["name"] / f"{cls['name']}_00000.png"
        rows.setdefault(cls["object_type"], []).append(_load(path, size))
    return [np.concatenate(r, axis=1) for r in rows.values()]


def _probe_rows(world_dir: Path, n_scenes: int, size: int) -> list[np.ndarray]:
    images = world_dir / "probe" / "images"
    with (world_dir / "probe" / "index.csv").open(newline="", encoding="utf-8") as f:
        index = list(csv.DictReader(f))
    rows = []
    for row in [r for r in index if r["material"]][:n_scenes]:
        tiles = [_load(images / row["image"], size)]
        for cat in _MASKS:
            labels = decode_labels(np.asarray(Image.open(images / row[cat]).convert("RGB")))
            shown = Image.fromarray(_false_colors(labels, cat)).resize((size, size), Image.Resampling.NEAREST)
            tiles.append(np.asarray(shown))
        rows.append(np.concatenate(tiles, axis=1))
    textures = [_load(images / r["image"], size) for r in index if r["texture"]][: len(_MASKS) + 1]
    if textures:
        rows.append(np.concatenate(textures, axis=1))
    return rows


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)


def write_preview(world_dir: str | Path, out_png: str | Path, *, probe_scenes: int = 6, tile: int = 96) -> Path:
    """Write a contact sheet of a generated world.

    Args:
        world_dir: the output directory of :func:`kdinterp.world.generate_world`.
        out_png: the PNG to write (atomically).
        probe_scenes: how many probe scenes to show with their masks.
        tile: side of each thumbnail in pixels.

    Returns:
        ``out_png`` as a Path.

    Raises:
        FileNotFoundError: ``world_dir`` has no ``world.json`` or misses an image it lists.
    """
    root = Path(world_dir)
    world = read_json(root / "world.json")
    sheet = _stack(_class_rows(root, world, tile) + _probe_rows(root, probe_scenes, tile))
    out = Path(out_png)
    with atomic_path(out) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG")
    return out
