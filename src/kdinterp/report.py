"""Stage ``report``: static HTML pages of every model's dissection, in the spirit of NetDissect's.

Inputs, per model ``<m>`` of params.yaml, in ``<dissections>/<m>/`` (stage ``dissect_*@<m>``):

* ``summary.json``: detectors and unique concepts, overall and per category.
* ``units.csv``: one row per unit (0-based): its concept, category, IoU and whether it is a detector.
* ``thresholds.npy``: ``(U,)`` float32 per-unit activation thresholds ``T_u``.
* ``top_images.npz``: ``image_index (U, k)`` int64 (rows of :func:`kdinterp.broden.load_broden`),
  ``max_activation (U, k)`` float32 and ``maps (U, k, h, w)`` float32, the unit's raw activation
  map on each of its top-k probe images.

and the probe images under ``dissection.broden_dir``. Outputs, in ``out``:

* ``index.html``: the models side by side: detectors / units, unique concepts, detectors per
  category (table and bar chart), detectors per concept, strongest units; links to the model pages.
* ``<m>.html``: the model's summary and bar chart of detectors per category, then every unit by IoU
  (highest first): concept, category, IoU, detector badge and a strip of its top-k probe images.
* ``images/<m>/unit_<u>.png``: the strips. As in NetDissect-Lite (``visualize/report.py``), the mask
  of unit u on an image is its activation map upsampled bilinearly (``align_corners=False``) to the
  image size and thresholded at ``T_u``; pixels outside the mask are dimmed to 20%. Images taller
  than the tile height (96 px) are stored at it (bicubic; mask by nearest neighbour), smaller ones
  at their own size, pixel for pixel, and shown at the tile height by the browser.

The pages are plain HTML and CSS with inline SVG charts: no script, no network, relative links only,
so the directory opens from disk. Same inputs, same bytes.
"""

from __future__ import annotations

import functools
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from kdinterp.broden import Broden, load_broden
from kdinterp.dissection import unit_masks
from kdinterp.results import ROLE_LABELS, ROLES, model_colors, require_input, stage_name
from kdinterp.io import read_json, write_bytes, write_text
from kdinterp.params import CATEGORIES, Params
from kdinterp.progress import log, progress_bar

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
TOP_IMAGES = "top_images.npz"
SUMMARY_KEYS = ("layer", "num_units", "num_images", "quantile", "iou_threshold", "num_detectors",
                "num_unique_concepts", "detectors", "unique_concepts")
UNIT_COLUMNS = ("unit", "concept", "category", "iou", "detector")
TOP_ARRAYS = ("image_index", "max_activation", "maps")


class ReportInputError(ValueError):
    """A dissection output is malformed or stale; the message names the file and the stage to rerun."""


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ModelDissection:
    """One model's dissection outputs.

    Attributes:
        name: the model (a key of teachers / students / distilled).
        role: its role in the paper (``teacher``, ``scratch``, ``ls``, ``kd``) or None.
        color: its colour in the charts (the paper figures' colour for its role).
        summary: ``summary.json``.
        units: ``units.csv`` sorted by IoU, highest first (ties: lower unit first).
        thresholds: ``(U,)`` float32 per-unit thresholds.
        image_index: ``(U, k)`` int64 probe-set rows of each unit's top images, best first.
        max_activation: ``(U, k)`` float32 maximum of the unit's map on those images.
        maps: ``(U, k, h, w)`` float32 raw activation maps on those images.
    """

    name: str
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


def load_dissection(directory: Path, name: str, stage: str, num_images: int, *, role: str | None = None,
                    color: str = "#4d4d4d") -> ModelDissection:
    """Read and check one model's dissection outputs.

    Args:
        directory: ``<dissections>/<name>``.
        name: the model.
        stage: the DVC stage that writes ``directory`` (named in errors).
        num_images: probe images in the probe set (``len(load_broden(...).rows)``).
        role: the model's paper role, if any.
        color: its chart colour.

    Raises:
        FileNotFoundError: a file is missing; the message names it and the stage that writes it.
        ReportInputError: a file lacks a key, column or array, or its sizes disagree with the others
            or with the probe set.
    """
    summary = _read_summary(directory / "summary.json", stage)
    units = _read_units(directory / "units.csv", stage)
    thresholds_path = _existing(directory / "thresholds.npy", stage)
    thresholds = np.load(thresholds_path)
    if thresholds.shape != (len(units),):
        raise _stale(thresholds_path, stage, f"shape {thresholds.shape} differs from the {len(units)} units "
                                             "of units.csv")
    top = _read_top_images(directory / TOP_IMAGES, stage, len(units), num_images)
    return ModelDissection(name, role, color, summary, units, thresholds, **top)


def _load_models(params: Params, dissections: Path, num_images: int) -> list[ModelDissection]:
    role_of = {name: role for role, name in params.paper_models.items() if role in ROLES}
    return [load_dissection(dissections / name, name, stage_name(params, name, "dissect"), num_images,
                            role=role_of.get(name), color=color)
            for name, color in model_colors(params).items()]


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


def unit_mask(activation: np.ndarray, threshold: float, size: tuple[int, int]) -> np.ndarray:
    """Where a unit fires on an image: bool ``(ih, iw)``.

    Args:
        activation: ``(h, w)`` raw activation map of the unit on the image.
        threshold: the unit's threshold ``T_u``.
        size: ``(ih, iw)`` image size.

    Returns:
        ``activation`` upsampled bilinearly (``align_corners=False``) to ``size``, ``> threshold``:
        the dissection's own mask (:func:`kdinterp.dissection.unit_masks`), at image resolution.
    """
    acts = torch.from_numpy(np.asarray(activation, dtype=np.float32))[None, None]
    return unit_masks(acts, torch.tensor([threshold], dtype=torch.float32), size).reshape(size).numpy()


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
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _strip_path(model: str, unit: int) -> str:
    """The strip of ``unit``, relative to the report directory."""
    return f"images/{model}/unit_{unit:04d}.png"


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
    with progress_bar(f"report ({model.name})", total=len(model.thresholds)) as advance:
        for unit, threshold in enumerate(model.thresholds):
            tiles = []
            for row, activation in zip(model.image_index[unit], model.maps[unit], strict=True):
                size, pixels = picture(broden.root / "images" / broden.rows[row].image)
                tiles.append(masked_tile(pixels, unit_mask(activation, float(threshold), size)))
            strip = unit_strip(tiles)
            write_bytes(out / _strip_path(model.name, unit), _png(strip))
            sizes[unit] = (round(strip.shape[1] * tile / strip.shape[0]), tile)
            advance(1, "")
    return sizes


# --------------------------------------------------------------------------- charts


@dataclass(frozen=True)
class Series:
    """One coloured set of bars: ``values`` has one count per category."""

    label: str
    color: str
    values: tuple[int, ...]


def _e(value: object) -> str:
    """HTML/XML-escaped text (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def bar_chart_svg(categories: Sequence[str], series: Sequence[Series], title: str) -> str:
    """An inline SVG bar chart: one group of bars per category, one bar per series, counts on top.

    A chart whose counts are all zero draws empty groups (NetDissect-Lite's bar graph crashes there).
    """
    bar, group_gap, plot_height, top, bottom = max(18, 48 // len(series)), 22, 150, 18, 24
    legend = 22 if len(series) > 1 else 0
    group = max(bar * len(series), 64)  # room for the category name
    width = group_gap + len(categories) * (group + group_gap)
    base = legend + top + plot_height
    peak = max([1, *(value for s in series for value in s.values)])
    svg = [f'<svg class="chart" width="{width}" height="{base + bottom}" '
           f'viewBox="0 0 {width} {base + bottom}" role="img" aria-label="{_e(title)}">', f"<title>{_e(title)}</title>"]
    for c, category in enumerate(categories):
        x0 = group_gap + c * (group + group_gap) + (group - bar * len(series)) / 2
        for i, s in enumerate(series):
            value = s.values[c]
            height = plot_height * value / peak
            x, y = x0 + i * bar, base - height
            svg.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 2}" height="{height:.1f}" fill="{_e(s.color)}">'
                       f"<title>{_e(s.label)}, {_e(category)}: {value}</title></rect>")
            svg.append(f'<text class="value" x="{x + (bar - 2) / 2:.1f}" y="{y - 4:.1f}">{value}</text>')
        svg.append(f'<text class="category" x="{x0 + (bar * len(series) - 2) / 2:.1f}" y="{base + 16}">'
                   f"{_e(category)}</text>")
    svg.append(f'<line class="axis" x1="{group_gap / 2}" y1="{base}" x2="{width - group_gap / 2}" y2="{base}"/>')
    if legend:
        x = group_gap
        for s in series:
            svg.append(f'<rect x="{x}" y="4" width="12" height="12" fill="{_e(s.color)}"/>'
                       f'<text class="legend" x="{x + 16}" y="14">{_e(s.label)}</text>')
            x += 16 + 8 * len(s.label) + 18  # about 8 px per character at 12 px
    svg.append("</svg>")
    return "\n".join(svg)


# --------------------------------------------------------------------------- pages

CSS = """
:root { color-scheme: light; --ink: #1d1d1f; --muted: #6e6e73; --rule: #d9d9de; --good: #1a7f37; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1280px; padding: 24px 32px 64px; color: var(--ink); background: #f6f6f8;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 26px; margin: 8px 0 4px; } h2 { font-size: 19px; margin: 32px 0 10px; }
a { color: #1f5fa8; } code { font-size: 13px; }
nav { font-size: 14px; color: var(--muted); } nav .current { font-weight: 600; color: var(--ink); }
.lede { color: var(--muted); margin: 4px 0 0; }
.role { font-size: 14px; font-weight: 600; color: #fff; padding: 2px 8px; border-radius: 10px; vertical-align: middle; }
table { border-collapse: collapse; background: #fff; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 12px; border-bottom: 1px solid var(--rule); text-align: right; vertical-align: top; }
th { font-size: 13px; color: var(--muted); font-weight: 600; }
th:first-child, td:first-child, td.text { text-align: left; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
.chart { background: #fff; display: block; max-width: 100%; height: auto; }
.chart text { font-size: 12px; text-anchor: middle; fill: var(--ink); }
.chart .category { fill: var(--muted); } .chart .legend { text-anchor: start; }
.chart .axis { stroke: #8e8e93; stroke-width: 1; }
.note { color: var(--muted); font-size: 13px; max-width: 900px; }
.units { display: flex; flex-wrap: wrap; gap: 12px; }
.unit { background: #fff; padding: 8px 10px 10px; border-radius: 6px; box-shadow: 0 1px 4px rgba(0, 0, 0, .12);
  max-width: 100%; }
.unit h3 { font-size: 18px; margin: 0; }
.unit .meta { margin: 2px 0 6px; font-size: 13px; color: var(--muted); font-variant-numeric: tabular-nums; }
.unit .iou { color: var(--ink); font-weight: 600; }
.unit img { display: block; max-width: 100%; height: auto; }
.unit .acts { margin: 4px 0 0; font-size: 12px; color: var(--muted); }
.badge { font-size: 12px; font-weight: 600; padding: 1px 7px; border-radius: 9px; color: #fff;
  background: var(--good); }
.low h3 { color: #a1a1a6; } .low .badge { background: #a1a1a6; }
"""


def _page(title: str, body: str) -> str:
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _categories(params: Params) -> list[str]:
    """The dissected categories in the paper's order (the order of summary.json)."""
    return [c for c in CATEGORIES if c in params.dissection.categories]


def _role_badge(model: ModelDissection) -> str:
    if model.role is None:
        return ""
    return f' <span class="role" style="background:{_e(model.color)}">{_e(ROLE_LABELS[model.role])}</span>'


def _settings_line(summary: dict, params: Params) -> str:
    return (f"Layer <code>{_e(summary['layer'])}</code> on the probe set "
            f"<code>{_e(params.dissection.broden_dir)}</code> ({summary['num_images']} images). Unit threshold: "
            f"the top {100 * summary['quantile']:g}% of its activations; detector: IoU &ge; "
            f"{summary['iou_threshold']:g}. Units are numbered from 0.")


def _headline(summary: dict) -> str:
    """NetDissect's line: ``X/N units covering Y concepts with IoU >= t``."""
    return (f"{summary['num_detectors']}/{summary['num_units']} units are detectors, covering "
            f"{summary['num_unique_concepts']} concepts with IoU &ge; {summary['iou_threshold']:g}")


def _concept(name: str) -> str:
    return _e(name) if name else "&mdash;"


def _strongest(model: ModelDissection, count: int = 3) -> str:
    """Links to the ``count`` units with the highest IoU among the detectors."""
    detectors = model.units[model.units["detector"]].head(count)
    links = [f'<a href="{_e(model.name)}.html#unit-{row.unit}">{_concept(row.concept)}</a> {row.iou:.3f}'
             for row in detectors.itertuples()]
    return ", ".join(links) or "&mdash;"


def _comparison_table(models: Sequence[ModelDissection], categories: Sequence[str]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in categories)
    rows = []
    for m in models:
        s = m.summary
        cells = "".join(f"<td>{s['detectors'].get(c, 0)} ({s['unique_concepts'].get(c, 0)})</td>" for c in categories)
        rows.append(f'<tr><td><span class="swatch" style="background:{_e(m.color)}"></span>'
                    f'<a href="{_e(m.name)}.html">{_e(m.name)}</a></td>'
                    f'<td class="text">{_e(ROLE_LABELS[m.role]) if m.role else ""}</td>'
                    f"<td>{s['num_detectors']} / {s['num_units']}</td><td>{s['num_unique_concepts']}</td>{cells}"
                    f'<td class="text">{_strongest(m)}</td></tr>')
    return ("<table>\n<thead><tr><th>model</th><th>role</th><th>detectors / units</th><th>unique concepts</th>"
            f"{head}<th>strongest detectors (IoU)</th></tr></thead>\n<tbody>\n"
            + "\n".join(rows) + "\n</tbody>\n</table>")


def _concept_table(models: Sequence[ModelDissection], categories: Sequence[str]) -> str:
    """Detector units per concept (rows: concepts any model detects, by category) and model (columns)."""
    counts = {m.name: m.units[m.units["detector"]].groupby(["category", "concept"]).size() for m in models}
    concepts = sorted({key for series in counts.values() for key in series.index},
                      key=lambda key: (categories.index(key[0]) if key[0] in categories else len(categories), key[1]))
    if not concepts:
        return '<p class="note">No model has a detector.</p>'
    head = "".join(f'<th><a href="{_e(m.name)}.html">{_e(m.name)}</a></th>' for m in models)
    rows = [f'<tr><td>{_e(concept)}</td><td class="text">{_e(category)}</td>'
            + "".join(f"<td>{int(counts[m.name].get((category, concept), 0)) or ''}</td>" for m in models) + "</tr>"
            for category, concept in concepts]
    return (f"<table>\n<thead><tr><th>concept</th><th>category</th>{head}</tr></thead>\n<tbody>\n"
            + "\n".join(rows) + "\n</tbody>\n</table>")


def index_page(params: Params, models: Sequence[ModelDissection]) -> str:
    """``index.html``: every model's detectors side by side, with links to the model pages."""
    categories = _categories(params)
    series = [Series(m.name, m.color, tuple(m.summary["detectors"].get(c, 0) for c in categories)) for m in models]
    body = "\n".join([
        "<header>",
        f"<h1>Network Dissection: {len(models)} models</h1>",
        f'<p class="lede">{_settings_line(models[0].summary, params)}</p>',
        "</header>",
        "<h2>Detectors per model</h2>",
        '<p class="note">A unit is a detector when its best concept reaches the IoU threshold; category cells: '
        "detectors (unique concepts). Model names open the model's units and their top probe images.</p>",
        _comparison_table(models, categories),
        "<h2>Detectors per category</h2>",
        bar_chart_svg(categories, series, "Detectors per category and model"),
        "<h2>Detectors per concept</h2>",
        '<p class="note">Detector units per concept; concepts that no model detects are left out.</p>',
        _concept_table(models, categories),
    ])
    return _page("Network Dissection report", body)


def _nav(models: Sequence[ModelDissection], current: str) -> str:
    links = [f'<span class="current">{_e(m.name)}</span>' if m.name == current
             else f'<a href="{_e(m.name)}.html">{_e(m.name)}</a>' for m in models]
    return f'<nav><a href="index.html">All models</a> &middot; {" &middot; ".join(links)}</nav>'


def _unit_card(model: ModelDissection, row, size: tuple[int, int]) -> str:
    """One unit: concept, unit id, category, IoU, detector badge, strip and activations."""
    unit = int(row.unit)
    badge = "detector" if row.detector else f"IoU &lt; {model.summary['iou_threshold']:g}"
    acts = model.max_activation[unit]
    return (f'<article class="unit{"" if row.detector else " low"}" id="unit-{unit}">'
            f"<h3>{_concept(row.concept)}</h3>"
            f'<p class="meta">unit {unit} &middot; {_e(row.category) or "no concept"} &middot; '
            f'<span class="iou">IoU {row.iou:.3f}</span> <span class="badge">{badge}</span></p>'
            f'<img src="{_e(_strip_path(model.name, unit))}" width="{size[0]}" height="{size[1]}" loading="lazy" '
            f'alt="Top {len(acts)} probe images of unit {unit}; outside the unit\'s mask dimmed">'
            f'<p class="acts">threshold {model.thresholds[unit]:.3g} &middot; peak activations '
            f'{" ".join(f"{a:.3g}" for a in acts)}</p></article>')


def model_page(params: Params, models: Sequence[ModelDissection], model: ModelDissection,
               strips: dict[int, tuple[int, int]]) -> str:
    """``<model>.html``: summary, bar chart of detectors per category, units sorted by IoU."""
    categories = _categories(params)
    s = model.summary
    series = [Series(model.name, model.color, tuple(s["detectors"].get(c, 0) for c in categories))]
    unique = " &middot; ".join(f"{_e(c)} {s['unique_concepts'].get(c, 0)}" for c in categories)
    cards = "\n".join(_unit_card(model, row, strips[int(row.unit)]) for row in model.units.itertuples())
    body = "\n".join([
        _nav(models, model.name),
        "<header>",
        f"<h1>{_e(model.name)}{_role_badge(model)}</h1>",
        f"<p><strong>{_headline(s)}</strong>.</p>",
        f'<p class="lede">{_settings_line(s, params)}</p>',
        "</header>",
        "<h2>Detectors per category</h2>",
        bar_chart_svg(categories, series, f"Detectors per category of {model.name}"),
        f'<p class="note">Unique concepts among the detectors: {unique}.</p>',
        "<h2>Units by IoU</h2>",
        '<p class="note">Each strip shows the probe images on which the unit fires most, highest first. Bright: '
        "the unit's mask (its activation map upsampled bilinearly to the image and above the unit's threshold); "
        "dimmed: the rest. Grey titles: IoU below the detector threshold.</p>",
        f'<div class="units">\n{cards}\n</div>',
    ])
    return _page(f"{model.name}: Network Dissection", body)


def write_report(params: Params, dissections: Path, out: Path, *, tile: int = TILE) -> None:
    """Stage ``report``: write ``index.html``, one page per model and the unit strips under ``out``.

    The dissection outputs of every model are read and checked before anything is written; then
    come the strips, the model pages and ``index.html`` last, each file written atomically. Files
    of an earlier report that this one does not rewrite are left alone (DVC removes the stage's
    output directory before it runs).

    Args:
        params: the run's parameters (models, roles, probe set, categories).
        dissections: directory of ``<model>/`` dissection outputs (``outputs/dissection``).
        out: the report directory (``outputs/report``).
        tile: displayed height in pixels of one probe image in a strip.

    Raises:
        FileNotFoundError: a dissection output or a probe image is missing.
        ReportInputError: a dissection output is malformed or does not fit the probe set.
        BrodenError: the probe set is malformed.
    """
    broden = load_broden(params.dissection.broden_dir, params.dissection.categories)
    models = _load_models(params, dissections, len(broden.rows))
    height = _stored_height(broden, tile)
    picture = functools.lru_cache(maxsize=PICTURE_CACHE)(functools.partial(read_picture, height=height))
    for model in models:
        strips = _write_strips(model, broden, out, picture, tile)
        write_text(out / f"{model.name}.html", model_page(params, models, model, strips))
    write_text(out / "index.html", index_page(params, models))
    log(f"report: {out / 'index.html'} ({len(models)} models)")
