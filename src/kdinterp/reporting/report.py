"""Stage ``report``: static HTML pages of every model's dissection, in the spirit of NetDissect's.

Inputs, per model and seed of the study (:func:`kdinterp.core.study.models`; ``<key>`` is
:attr:`kdinterp.core.study.Model.key`, ``kd-0``), in ``layout.dissection(model)`` =
``outputs/dissection/<key>/`` (stage ``dissect_*@<key>``):

* ``summary.json``: detectors and unique concepts, overall and per category.
* ``units.csv``: one row per unit (0-based): its concept, category, IoU and whether it is a detector.
* ``thresholds.npy``: ``(U,)`` float32 per-unit activation thresholds ``T_u``.
* ``top_images.npz``: ``image_index (U, k)`` int64 (rows of :func:`kdinterp.dissection.broden.load_broden`),
  ``max_activation (U, k)`` float32 and ``maps (U, k, h, w)`` float32, the unit's raw activation
  map on each of its top-k probe images.

and the probe images under ``dissection.broden_dir``. Outputs, in ``out``:

* ``index.html``: every (model, seed) side by side, grouped by model: detectors / units, unique
  concepts, detectors per category (table; bar chart of each model's mean over seeds), detectors
  per concept seed by seed, strongest units; links to the pages.
* ``<key>.html``: one model at one seed: summary and bar chart of detectors per category, then
  every unit by IoU (highest first): concept, category, IoU, detector badge and a strip of its
  top-k probe images.
* ``images/<key>/unit_<u>.png``: the strips. As in NetDissect-Lite (``visualize/report.py``), the mask
  of unit u on an image is its activation map upsampled bilinearly (``align_corners=False``) to the
  image size and thresholded at ``T_u``; pixels outside the mask are dimmed to 20%. Images taller
  than the tile height (96 px) are stored at it (bicubic; mask by nearest neighbour), smaller ones
  at their own size, pixel for pixel, and shown at the tile height by the browser.

The pages (:mod:`kdinterp.reporting.html`) are plain HTML and CSS with inline SVG charts: no script, no
network, relative links only, so the directory opens from disk. Same inputs, same bytes.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from kdinterp.core import study
from kdinterp.dissection.broden import Broden, load_broden
from kdinterp.dissection.engine import unit_masks
from kdinterp.core.errors import KdinterpError
from kdinterp.core.io import read_json, write_bytes, write_text
from kdinterp.core.params import Params
from kdinterp.core.progress import log, progress_bar
from kdinterp.reporting.html import Series, bar_chart_svg, index_page, model_page, strip_path
from kdinterp.reporting.results import ROLES, model_colors, ordered_models, require_input

__all__ = ["ModelDissection", "ReportInputError", "Series", "bar_chart_svg", "index_page", "load_dissection",
           "masked_tile", "model_page", "read_picture", "unit_mask", "unit_strip", "write_report"]

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
SUMMARY_KEYS = ("seed", "layer", "num_units", "num_images", "quantile", "iou_threshold", "num_detectors",
                "num_unique_concepts", "detectors", "unique_concepts")
UNIT_COLUMNS = ("unit", "concept", "category", "iou", "detector")
TOP_ARRAYS = ("image_index", "max_activation", "maps")


class ReportInputError(KdinterpError, ValueError):
    """A dissection output is malformed or stale; the message names the file and the stage to rerun."""


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ModelDissection:
    """One model's dissection outputs at one seed.

    Attributes:
        key: :attr:`kdinterp.core.study.Model.key` (``kd-0``; ``teacher`` for a teacher): page and image names.
        name: the model (a key of teachers / students / distilled / self_distilled).
        seed: its seed.
        role: its role in the paper (``teacher``, ``scratch``, ``ls``, ``kd``) or None.
        color: its colour in the charts (the paper figures' colour for its role; shared by its seeds).
        summary: ``summary.json``.
        units: ``units.csv`` sorted by IoU, highest first (ties: lower unit first).
        thresholds: ``(U,)`` float32 per-unit thresholds.
        image_index: ``(U, k)`` int64 probe-set rows of each unit's top images, best first.
        max_activation: ``(U, k)`` float32 maximum of the unit's map on those images.
        maps: ``(U, k, h, w)`` float32 raw activation maps on those images.
    """

    key: str
    name: str
    seed: int
    role: str | None
    color: str
    summary: dict
    units: pd.DataFrame
    thresholds: np.ndarray
    image_index: np.ndarray
    max_activation: np.ndarray
    maps: np.ndarray


def _existing(path: Path, stage: str) -> Path:
    return require_input(path, stage, "report")


def _stale(path: Path, stage: str, problem: str) -> ReportInputError:
    return ReportInputError(f"{path}: {problem}; rerun stage {stage} (`dvc repro -f -s {stage}`)")


def _read_summary(path: Path, stage: str) -> dict:
    summary = read_json(_existing(path, stage))
    missing = [key for key in SUMMARY_KEYS if key not in summary]
    if missing:
        raise _stale(path, stage, f"missing key(s) {missing}")
    return summary


def _read_units(path: Path, stage: str) -> pd.DataFrame:
    """``units.csv`` sorted by IoU (descending, stable); empty concept names stay ``''``."""
    units = pd.read_csv(_existing(path, stage), keep_default_na=False, dtype={"concept": str, "category": str})
    missing = [column for column in UNIT_COLUMNS if column not in units.columns]
    if missing:
        raise _stale(path, stage, f"missing column(s) {missing}")
    if not np.array_equal(units["unit"].to_numpy(), np.arange(len(units))) or units["detector"].dtype != bool:
        raise _stale(path, stage, "expected units 0..U-1 in order and a True/False detector column")
    return units.sort_values("iou", ascending=False, kind="stable").reset_index(drop=True)


def _read_top_images(path: Path, stage: str, num_units: int, num_images: int) -> dict[str, np.ndarray]:
    """The arrays of ``top_images.npz``, checked against ``U`` units and the probe set's size."""
    with np.load(_existing(path, stage)) as npz:
        missing = [key for key in TOP_ARRAYS if key not in npz.files]
        if missing:
            raise _stale(path, stage, f"missing array(s) {missing} (has {npz.files})")
        top = {key: npz[key] for key in TOP_ARRAYS}
    index, maps = top["image_index"], top["maps"]
    if (index.ndim != 2 or index.shape[0] != num_units or index.shape[1] < 1
            or top["max_activation"].shape != index.shape or maps.ndim != 4 or maps.shape[:2] != index.shape):
        shapes = {key: value.shape for key, value in top.items()}
        raise _stale(path, stage, f"array shapes {shapes} do not fit {num_units} units "
                                  "(expected image_index (U, k), max_activation (U, k), maps (U, k, h, w))")
    if index.min() < 0 or index.max() >= num_images:
        raise _stale(path, stage, f"image_index outside the probe set's {num_images} images "
                                  "(was it dissected on another probe set?)")
    return top


def load_dissection(layout: study.Layout, model: study.Model, num_images: int, *,
                    color: str = "#4d4d4d") -> ModelDissection:
    """Read and check one model's dissection outputs at one seed.

    Args:
        layout: where the outputs are; reads ``layout.dissection(model)``.
        model: the study model (its stage ``model.stage("dissect")`` is named in errors).
        num_images: probe images in the probe set (``len(load_broden(...).rows)``).
        color: its chart colour.

    Returns:
        The dissection; ``units`` sorted by IoU, highest first.

    Raises:
        FileNotFoundError: a file is missing; the message names it and the stage that writes it.
        ReportInputError: a file lacks a key, column or array, was written for another seed, or its
            sizes disagree with the others or with the probe set.
    """
    stage = model.stage("dissect")
    summary_path = layout.dissection(model, study.Layout.SUMMARY)
    summary = _read_summary(summary_path, stage)
    if summary["seed"] != model.seed:
        raise _stale(summary_path, stage, f"seed {summary['seed']} differs from {model.key}'s seed {model.seed}")
    units = _read_units(layout.dissection(model, study.Layout.UNITS), stage)
    thresholds_path = _existing(layout.dissection(model, study.Layout.THRESHOLDS), stage)
    thresholds = np.load(thresholds_path)
    if thresholds.shape != (len(units),):
        raise _stale(thresholds_path, stage, f"shape {thresholds.shape} differs from the {len(units)} units "
                                             "of units.csv")
    top = _read_top_images(layout.dissection(model, study.Layout.TOP_IMAGES), stage, len(units), num_images)
    role = model.role if model.role in ROLES else None
    return ModelDissection(model.key, model.name, model.seed, role, color, summary, units, thresholds, **top)


def _load_models(params: Params, layout: study.Layout, num_images: int) -> list[ModelDissection]:
    """Every (model, seed), grouped by model in the figures' order (roles first), seeds in params order."""
    colors = model_colors(params)
    return [load_dissection(layout, model, num_images, color=colors[model.name]) for model in ordered_models(params)]


# --------------------------------------------------------------------------- strips


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


def _stored_height(broden: Broden, tile: int) -> int:
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
        the dissection's own masks (:func:`kdinterp.dissection.unit_masks`), at image resolution.
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


def _write_strips(model: ModelDissection, broden: Broden, out: Path,
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


def write_report(params: Params, layout: study.Layout, out: Path, *, tile: int = TILE) -> None:
    """Stage ``report``: write ``index.html``, one page per (model, seed) and the unit strips under ``out``.

    The dissection outputs of every model and seed are read and checked before anything is
    written; then come the strips, the pages (``<key>.html``) and ``index.html`` last, each file
    written atomically. Files of an earlier report that this one does not rewrite are left alone
    (DVC removes the stage's output directory before it runs).

    Args:
        params: the run's parameters (models, seeds, roles, probe set, categories).
        layout: where the dissection outputs are (``layout.dissection(model)`` per study model).
        out: the report directory (``outputs/report``).
        tile: displayed height in pixels of one probe image in a strip.

    Raises:
        FileNotFoundError: a dissection output or a probe image is missing.
        ReportInputError: a dissection output is malformed, stale (another seed) or does not fit the probe set.
        BrodenError: the probe set is malformed.
        ParamsError: the params fail :func:`kdinterp.core.study.check`.
    """
    broden = load_broden(params.dissection.broden_dir, params.dissection.categories)
    models = _load_models(params, layout, len(broden.rows))
    height = _stored_height(broden, tile)
    picture = functools.lru_cache(maxsize=PICTURE_CACHE)(functools.partial(read_picture, height=height))
    for model in models:
        strips = _write_strips(model, broden, out, picture, tile)
        write_text(out / f"{model.key}.html", model_page(params, models, model, strips))
    write_text(out / "index.html", index_page(params, models))
    log(f"report: {out / 'index.html'} ({len(models)} dissections of {len({m.name for m in models})} models)")
