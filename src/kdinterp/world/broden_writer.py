"""Writers for the probe set in the exact Broden layout (``research/dissection.md`` §2).

``probe/index.csv`` lists one row per image with paths relative to ``probe/images/``; pixel
categories (color, object, part, material) point to RGB PNGs that encode the global label number
as ``R + 256 * G``; image-level categories (scene, texture) hold plain integer strings.
``category.csv``, ``label.csv`` and ``c_<category>.csv`` describe the labels.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from kdinterp.core.io import write_bytes, write_text
from kdinterp.world.catalog import BRODEN_ORDER, Concept
from kdinterp.world.compose import Rendered

__all__ = [
    "INDEX_HEADER",
    "PIXEL_CATEGORIES",
    "ProbeRecord",
    "png_bytes",
    "encode_labels",
    "decode_labels",
    "write_image",
    "write_probe_image",
    "write_tables",
]

INDEX_HEADER: tuple[str, ...] = ("image", "split", "ih", "iw", "sh", "sw", *BRODEN_ORDER)
PIXEL_CATEGORIES: tuple[str, ...] = ("color", "object", "part", "material")
_PNG_LEVEL = 6  # fixed zlib level: same bytes on every run


@dataclass(frozen=True)
class ProbeRecord:
    """What one written probe image contributes to the tables.

    ``row``: index.csv field -> value. ``counts``: int64 (L + 1,) labelled pixels per global label
    number (an image-level label counts every pixel of the image).
    """

    row: dict[str, str]
    counts: np.ndarray


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an (H, W, 3) uint8 array as a lossless RGB PNG without metadata."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=_PNG_LEVEL)
    return buf.getvalue()


def encode_labels(labels: np.ndarray) -> np.ndarray:
    """Global label numbers (H, W) int -> Broden segmentation pixels (H, W, 3) uint8: R + 256·G, B = 0.

    Raises:
        ValueError: a label is negative or above 65535.
    """
    if labels.min() < 0 or labels.max() > 0xFFFF:
        raise ValueError(f"label numbers must be in 0..65535, got {labels.min()}..{labels.max()}")
    out = np.zeros((*labels.shape, 3), dtype=np.uint8)
    out[..., 0] = labels % 256
    out[..., 1] = labels // 256
    return out


def decode_labels(rgb: np.ndarray) -> np.ndarray:
    """Broden segmentation pixels (H, W, 3) uint8 -> global label numbers (H, W) int32 (R + 256·G)."""
    return rgb[..., 0].astype(np.int32) + 256 * rgb[..., 1].astype(np.int32)


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB image as PNG, atomically."""
    write_bytes(path, png_bytes(rgb))


def write_probe_image(probe_dir: Path, index: int, rendered: Rendered, n_labels: int) -> ProbeRecord:
    """Write one probe image and its segmentation PNGs; return its index row and label counts.

    Args:
        probe_dir: the ``probe/`` directory.
        index: the image's position in the probe set (names the files ``<index:05d>*.png``).
        rendered: the image; scene images (which have a scene label) go to ``images/scenes/``,
            texture tiles (a texture label) to ``images/textures/``, close-ups (neither) to
            ``images/closeups/``.
        n_labels: L, the number of labels (counts have L + 1 entries).

    Returns:
        The :class:`ProbeRecord`.
    """
    group = "textures" if "texture" in rendered.scalars else "scenes" if "scene" in rendered.scalars else "closeups"
    stem = f"{group}/{index:05d}"
    write_image(probe_dir / "images" / f"{stem}.png", rendered.image)
    h, w = rendered.image.shape[:2]
    row = {"image": f"{stem}.png", "split": "train" if index % 10 < 7 else "val",
           "ih": str(h), "iw": str(w), "sh": str(h), "sw": str(w)}
    counts = np.zeros(n_labels + 1, dtype=np.int64)
    for cat in BRODEN_ORDER:
        row[cat] = ""
        if cat in rendered.masks:
            write_image(probe_dir / "images" / f"{stem}_{cat}.png", encode_labels(rendered.masks[cat]))
            row[cat] = f"{stem}_{cat}.png"
            counts += np.bincount(rendered.masks[cat].ravel(), minlength=n_labels + 1)
        elif cat in rendered.scalars:
            row[cat] = str(int(rendered.scalars[cat]))
            counts[rendered.scalars[cat]] += h * w
    counts[0] = 0
    return ProbeRecord(row, counts)


def _csv(header: tuple[str, ...], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _decimal(x: float) -> str:
    return f"{x:.6f}"


def write_tables(probe_dir: Path, records: list[ProbeRecord], concepts: tuple[Concept, ...]) -> None:
    """Write ``index.csv``, ``category.csv``, ``label.csv`` and every ``c_<category>.csv``.

    Args:
        probe_dir: the ``probe/`` directory.
        records: one per probe image, in index order.
        concepts: every label, numbered 1..L in Broden category order.
    """
    write_text(probe_dir / "index.csv", _csv(INDEX_HEADER, [[r.row[k] for k in INDEX_HEADER] for r in records]))
    pixels = np.sum([r.counts for r in records], axis=0)
    freq = np.sum([r.counts > 0 for r in records], axis=0)
    side = int(records[0].row["sh"]) * int(records[0].row["sw"])
    label_rows, cat_rows = [], []
    for cat in BRODEN_ORDER:
        members = [c for c in concepts if c.category == cat]
        rows = [[str(code), str(c.number), c.name, str(freq[c.number]), _decimal(pixels[c.number] / side)]
                for code, c in enumerate(members, start=1)]
        write_text(probe_dir / f"c_{cat}.csv", _csv(("code", "number", "name", "frequency", "coverage"), rows))
        label_rows += [[str(c.number), c.name, f"{cat}({freq[c.number]})", str(freq[c.number]),
                        _decimal(pixels[c.number] / side), ""] for c in members]
        cat_rows.append([cat, str(members[0].number), str(members[-1].number), str(len(members)),
                         str(sum(int(freq[c.number]) for c in members))])
    label_header = ("number", "name", "category", "frequency", "coverage", "syns")
    write_text(probe_dir / "label.csv", _csv(label_header, label_rows))
    write_text(probe_dir / "category.csv", _csv(("name", "first", "last", "count", "frequency"), cat_rows))
