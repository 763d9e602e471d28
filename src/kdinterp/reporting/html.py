"""The HTML of stage ``report`` (:mod:`kdinterp.reporting.report`): pages, tables and inline SVG charts.

Plain HTML and CSS with inline SVG: no script, no network, relative links only, so the report opens
from disk. A page per dissected model and seed (``<key>.html``, :attr:`kdinterp.core.study.Model.key`)
and ``index.html``, which lists every (model, seed) grouped by model, charts each model's mean over
its seeds, and counts detectors per concept seed by seed.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from kdinterp.core.params import CATEGORIES, Params
from kdinterp.measures.dissection import DissectionSummary
from kdinterp.reporting.dissections import ModelDissection
from kdinterp.reporting.paper import ROLE_LABELS

__all__ = ["CSS", "Series", "bar_chart_svg", "index_page", "model_page", "strip_path"]


def strip_path(key: str, unit: int) -> str:
    """The strip of ``unit`` of model ``key`` (``kd-0``), relative to the report directory."""
    return f"images/{key}/unit_{unit:04d}.png"


@dataclass(frozen=True)
class Series:
    """One coloured set of bars: ``values`` has one count (or mean count over seeds) per category."""

    label: str
    color: str
    values: tuple[float, ...]


def _e(value: object) -> str:
    """HTML/XML-escaped text (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def _number(value: float) -> str:
    """``3`` for a whole number, ``2.5`` / ``0.33`` (two significant digits after the point) otherwise."""
    return str(int(value)) if float(value).is_integer() else f"{value:.2g}" if abs(value) < 1 else f"{value:.1f}"


#: Height of one row of a chart's legend (px); an entry's width is :func:`_legend_width`.
_LEGEND_ROW = 22
#: The narrowest a legend row may be before it wraps (px), for a chart of few groups.
_LEGEND_MIN_WIDTH = 480


def _legend_width(label: str) -> float:
    """Room for one legend entry: the 12 px swatch, a gap, the label at 12 px (at most ~7.5 px a character
    in the page's sans-serif), and the space before the next entry."""
    return 16 + 7.5 * len(label) + 18


def _legend_layout(labels: Sequence[str], left: float, width: float) -> list[tuple[float, float]]:
    """The ``(x, y)`` of each legend entry: left to right from ``left``, wrapping to a new row of
    :data:`_LEGEND_ROW` px before a row would pass ``width`` (at least :data:`_LEGEND_MIN_WIDTH`). A legend
    in one row wider than the chart was cut at the svg's right edge, hiding its last entries."""
    places, x, y = [], left, 0
    for label in labels:
        if x > left and x + _legend_width(label) > max(width, _LEGEND_MIN_WIDTH):
            x, y = left, y + _LEGEND_ROW
        places.append((x, y))
        x += _legend_width(label)
    return places


def bar_chart_svg(categories: Sequence[str], series: Sequence[Series], title: str) -> str:
    """An inline SVG bar chart: one group of bars per category, one bar per series, values on top.

    Args:
        categories: the groups, in order.
        series: the bars of each group; ``values`` has one entry per category (counts, or means
            over seeds, written with one decimal).
        title: the chart's accessible title.

    Returns:
        An ``<svg>`` element, wide enough for its groups and every legend entry (the legend wraps into
        rows). A chart whose values are all zero draws empty groups (NetDissect-Lite's bar graph crashes there).
    """
    bar, group_gap, plot_height, top, bottom = max(28, 48 // len(series)), 22, 150, 18, 24  # 28 px: a "39.7" on top
    group = max(bar * len(series), 64)  # room for the category name
    width = group_gap + len(categories) * (group + group_gap)
    entries = _legend_layout([s.label for s in series], group_gap, width) if len(series) > 1 else []
    width = max([width, *(x + _legend_width(s.label) for (x, _), s in zip(entries, series))])
    legend = max((y for _, y in entries), default=-_LEGEND_ROW) + _LEGEND_ROW
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
                       f"<title>{_e(s.label)}, {_e(category)}: {_number(value)}</title></rect>")
            svg.append(f'<text class="value" x="{x + (bar - 2) / 2:.1f}" y="{y - 4:.1f}">{_number(value)}</text>')
        svg.append(f'<text class="category" x="{x0 + (bar * len(series) - 2) / 2:.1f}" y="{base + 16}">'
                   f"{_e(category)}</text>")
    svg.append(f'<line class="axis" x1="{group_gap / 2}" y1="{base}" x2="{width - group_gap / 2}" y2="{base}"/>')
    for (x, y), s in zip(entries, series):
        svg.append(f'<rect x="{x}" y="{y + 4}" width="12" height="12" fill="{_e(s.color)}"/>'
                   f'<text class="legend" x="{x + 16}" y="{y + 14}">{_e(s.label)}</text>')
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
h1 small { font-size: 16px; font-weight: 500; color: var(--muted); }
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


def _groups(models: Sequence[ModelDissection]) -> dict[str, list[ModelDissection]]:
    """Model name -> its dissections (one per seed), in the order of ``models``."""
    groups: dict[str, list[ModelDissection]] = {}
    for m in models:
        groups.setdefault(m.name, []).append(m)
    return groups


def _title(model: ModelDissection) -> str:
    return f"{model.name}, seed {model.seed}"


def _role_badge(model: ModelDissection) -> str:
    if model.role is None:
        return ""
    return f' <span class="role" style="background:{_e(model.color)}">{_e(ROLE_LABELS[model.role])}</span>'


def _settings_line(summary: DissectionSummary, params: Params) -> str:
    return (f"Layer <code>{_e(summary.layer)}</code> on the probe set "
            f"<code>{_e(params.dissection.broden_dir)}</code> ({summary.num_images} images). Unit threshold: "
            f"the top {100 * summary.quantile:g}% of its activations; detector: IoU &ge; "
            f"{summary.iou_threshold:g}. Units are numbered from 0.")


def _headline(summary: DissectionSummary) -> str:
    """NetDissect's line: ``X/N units covering Y concepts with IoU >= t``."""
    return (f"{summary.num_detectors}/{summary.num_units} units are detectors, covering "
            f"{summary.num_unique_concepts} concepts with IoU &ge; {summary.iou_threshold:g}")


def _concept(name: str) -> str:
    return _e(name) if name else "&mdash;"


def _strongest(model: ModelDissection, count: int = 3) -> str:
    """Links to the ``count`` units with the highest IoU among the detectors."""
    detectors = model.units[model.units["detector"]].head(count)
    links = [f'<a href="{_e(model.key)}.html#unit-{row.unit}">{_concept(row.concept)}</a> {row.iou:.3f}'
             for row in detectors.itertuples()]
    return ", ".join(links) or "&mdash;"


def _comparison_table(models: Sequence[ModelDissection], categories: Sequence[str]) -> str:
    """One row per (model, seed), grouped by model."""
    head = "".join(f"<th>{_e(c)}</th>" for c in categories)
    rows = []
    for m in models:
        s = m.summary
        cells = "".join(f"<td>{s.detectors.get(c, 0)} ({s.unique_concepts.get(c, 0)})</td>" for c in categories)
        rows.append(f'<tr><td><span class="swatch" style="background:{_e(m.color)}"></span>'
                    f'<a href="{_e(m.key)}.html">{_e(m.name)}</a></td><td>{m.seed}</td>'
                    f'<td class="text">{_e(ROLE_LABELS[m.role]) if m.role else ""}</td>'
                    f"<td>{s.num_detectors} / {s.num_units}</td><td>{s.num_unique_concepts}</td>{cells}"
                    f'<td class="text">{_strongest(m)}</td></tr>')
    return ("<table>\n<thead><tr><th>model</th><th>seed</th><th>role</th><th>detectors / units</th>"
            f"<th>unique concepts</th>{head}<th>strongest detectors (IoU)</th></tr></thead>\n<tbody>\n"
            + "\n".join(rows) + "\n</tbody>\n</table>")


def _concept_table(models: Sequence[ModelDissection], categories: Sequence[str]) -> str:
    """Detector units per concept (rows: concepts any model detects, by category) and model (columns),
    seed by seed: a cell lists the count at each of the model's seeds, in the header's order."""
    counts = {m.key: m.units[m.units["detector"]].groupby(["category", "concept"]).size() for m in models}
    concepts = sorted({key for series in counts.values() for key in series.index},
                      key=lambda key: (categories.index(key[0]) if key[0] in categories else len(categories), key[1]))
    if not concepts:
        return '<p class="note">No model has a detector.</p>'
    groups = _groups(models)
    head = "".join(f"<th>{_e(name)}<br>seeds {' &middot; '.join(str(m.seed) for m in seeds)}</th>"
                   for name, seeds in groups.items())

    def cell(seeds: list[ModelDissection], category: str, concept: str) -> str:
        found = [int(counts[m.key].get((category, concept), 0)) for m in seeds]
        return " &middot; ".join(map(str, found)) if any(found) else ""

    rows = [f'<tr><td>{_e(concept)}</td><td class="text">{_e(category)}</td>'
            + "".join(f"<td>{cell(seeds, category, concept)}</td>" for seeds in groups.values()) + "</tr>"
            for category, concept in concepts]
    return (f"<table>\n<thead><tr><th>concept</th><th>category</th>{head}</tr></thead>\n<tbody>\n"
            + "\n".join(rows) + "\n</tbody>\n</table>")


def index_page(params: Params, models: Sequence[ModelDissection]) -> str:
    """``index.html``: every (model, seed)'s detectors side by side, with links to their pages.

    Args:
        params: for the categories and the probe set.
        models: every dissection, grouped by model name (seeds of a model next to each other).

    Returns:
        The page's HTML.
    """
    categories = _categories(params)
    groups = _groups(models)
    series = [Series(f"{name} (mean of {len(seeds)} seed{'s' if len(seeds) > 1 else ''})", seeds[0].color,
                     tuple(sum(m.summary.detectors.get(c, 0) for m in seeds) / len(seeds) for c in categories))
              for name, seeds in groups.items()]
    body = "\n".join([
        "<header>",
        f"<h1>Network Dissection: {len(groups)} models, {len(models)} dissections</h1>",
        f'<p class="lede">{_settings_line(models[0].summary, params)}</p>',
        "</header>",
        "<h2>Detectors per model and seed</h2>",
        '<p class="note">A unit is a detector when its best concept reaches the IoU threshold; category cells: '
        "detectors (unique concepts). Model names open that seed's units and their top probe images.</p>",
        _comparison_table(models, categories),
        "<h2>Detectors per category</h2>",
        '<p class="note">Mean over each model\'s seeds (a teacher has one).</p>',
        bar_chart_svg(categories, series, "Detectors per category and model, mean over seeds"),
        "<h2>Detectors per concept</h2>",
        '<p class="note">Detector units per concept at each seed of a model; concepts that no model detects are '
        "left out.</p>",
        _concept_table(models, categories),
    ])
    return _page("Network Dissection report", body)


def _nav(models: Sequence[ModelDissection], current: str) -> str:
    """``All models · scratch: 0 1 2 · kd: 0 1 2``: links to every page, the current one highlighted."""
    def link(m: ModelDissection) -> str:
        return (f'<span class="current">{m.seed}</span>' if m.key == current
                else f'<a href="{_e(m.key)}.html">{m.seed}</a>')

    groups = [f"{_e(name)}: {' '.join(link(m) for m in seeds)}" for name, seeds in _groups(models).items()]
    return f'<nav><a href="index.html">All models</a> &middot; {" &middot; ".join(groups)}</nav>'


def _unit_card(model: ModelDissection, row, size: tuple[int, int]) -> str:
    """One unit: concept, unit id, category, IoU, detector badge, strip and activations."""
    unit = int(row.unit)
    badge = "detector" if row.detector else f"IoU &lt; {model.summary.iou_threshold:g}"
    acts = model.max_activation[unit]
    return (f'<article class="unit{"" if row.detector else " low"}" id="unit-{unit}">'
            f"<h3>{_concept(row.concept)}</h3>"
            f'<p class="meta">unit {unit} &middot; {_e(row.category) or "no concept"} &middot; '
            f'<span class="iou">IoU {row.iou:.3f}</span> <span class="badge">{badge}</span></p>'
            f'<img src="{_e(strip_path(model.key, unit))}" width="{size[0]}" height="{size[1]}" loading="lazy" '
            f'alt="Top {len(acts)} probe images of unit {unit}; outside the unit\'s mask dimmed">'
            f'<p class="acts">threshold {model.thresholds[unit]:.3g} &middot; peak activations '
            f'{" ".join(f"{a:.3g}" for a in acts)}</p></article>')


def model_page(params: Params, models: Sequence[ModelDissection], model: ModelDissection,
               strips: dict[int, tuple[int, int]]) -> str:
    """``<key>.html``: one model at one seed: summary, bar chart of detectors per category, units by IoU.

    Args:
        params: for the categories and the probe set.
        models: every dissection (for the navigation).
        model: the page's dissection.
        strips: ``{unit: (width, height)}``, the displayed size of each unit's strip.

    Returns:
        The page's HTML.
    """
    categories = _categories(params)
    s = model.summary
    series = [Series(_title(model), model.color, tuple(s.detectors.get(c, 0) for c in categories))]
    unique = " &middot; ".join(f"{_e(c)} {s.unique_concepts.get(c, 0)}" for c in categories)
    cards = "\n".join(_unit_card(model, row, strips[int(row.unit)]) for row in model.units.itertuples())
    body = "\n".join([
        _nav(models, model.key),
        "<header>",
        f"<h1>{_e(model.name)} <small>seed {model.seed}</small>{_role_badge(model)}</h1>",
        f"<p><strong>{_headline(s)}</strong>.</p>",
        f'<p class="lede">{_settings_line(s, params)}</p>',
        "</header>",
        "<h2>Detectors per category</h2>",
        bar_chart_svg(categories, series, f"Detectors per category of {_title(model)}"),
        f'<p class="note">Unique concepts among the detectors: {unique}.</p>',
        "<h2>Units by IoU</h2>",
        '<p class="note">Each strip shows the probe images on which the unit fires most, highest first. Bright: '
        "the unit's mask (its activation map upsampled bilinearly to the image and above the unit's threshold); "
        "dimmed: the rest. Grey titles: IoU below the detector threshold.</p>",
        f'<div class="units">\n{cards}\n</div>',
    ])
    return _page(f"{_title(model)}: Network Dissection", body)
