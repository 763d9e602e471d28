"""Per-concept coverage of a probe set: the share of all probe pixels each concept labels.

A dissected unit is active on about ``quantile`` (0.5%) of probe pixels, so its IoU with a concept
covering a share ``c`` of them is at most ``0.005 / c``: a concept above 10% can never reach the
0.05 IoU threshold. An image-level label (scene, texture) covers every pixel of its image.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from kdinterp.world.broden_writer import PIXEL_CATEGORIES, decode_labels

__all__ = ["COLUMNS", "coverage_table", "concept_coverage"]

COLUMNS: tuple[str, ...] = ("concept", "number", "category", "pixels", "fraction")
_CATEGORY = re.compile(r"^([^(]*)\(([^)]*)\)$")


def coverage_table(labels: list[tuple[int, str, str]], pixels: np.ndarray, total: int) -> pd.DataFrame:
    """The coverage table from label pixel counts.

    Args:
        labels: ``(number, name, category)`` per concept, in number order.
        pixels: int (L + 1,) labelled pixels per global label number, summed over the probe set.
        total: number of pixels in the probe set (sum of sh·sw over its images).

    Returns:
        DataFrame with columns ``concept, number, category, pixels, fraction`` (fraction = pixels / total).
    """
    rows = [(name, number, cat, int(pixels[number]), int(pixels[number]) / total) for number, name, cat in labels]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _labels(probe_dir: Path) -> list[tuple[int, str, str]]:
    out = []
    for row in _read_csv(probe_dir / "label.csv"):
        match = _CATEGORY.match(row["category"].split(";")[0])
        if match is None:
            raise ValueError(f"{probe_dir / 'label.csv'}: bad category field {row['category']!r}")
        out.append((int(row["number"]), row["name"], match.group(1)))
    return out


def _add_row(pixels: np.ndarray, row: dict[str, str], images: Path) -> None:
    side = int(row["sh"]) * int(row["sw"])
    for cat, field in row.items():
        if cat not in (*PIXEL_CATEGORIES, "scene", "texture") or not field:
            continue
        for item in field.split(";"):
            if item.isdigit():
                pixels[int(item)] += side
            else:
                labels = decode_labels(np.asarray(Image.open(images / item).convert("RGB")))
                if labels.max() >= len(pixels):
                    raise ValueError(f"{images / item}: label {labels.max()} is not in label.csv")
                pixels += np.bincount(labels.ravel(), minlength=len(pixels))


def concept_coverage(probe_dir: str | Path) -> pd.DataFrame:
    """Recompute the per-concept coverage of a Broden-layout probe set from its files.

    Args:
        probe_dir: directory with ``index.csv``, ``label.csv`` and ``images/``.

    Returns:
        DataFrame with one row per label of ``label.csv`` (in its order) and columns
        ``concept`` (name), ``number`` (global label), ``category``, ``pixels`` (labelled pixels
        at segmentation size, an image-level label counting sh·sw) and ``fraction`` (pixels / all
        probe pixels).

    Raises:
        FileNotFoundError: a table or a referenced PNG is missing.
        ValueError: ``label.csv`` has a malformed category field, or a PNG holds an unknown label.
    """
    probe = Path(probe_dir)
    labels = _labels(probe)
    pixels = np.zeros(max(n for n, _, _ in labels) + 1, dtype=np.int64)
    total = 0
    for row in _read_csv(probe / "index.csv"):
        _add_row(pixels, row, probe / "images")
        total += int(row["sh"]) * int(row["sw"])
    pixels[0] = 0
    return coverage_table(labels, pixels, total)
