"""The paper's mechanism as a dose-response curve: class-similarity information in, detectors out.

The paper argues that the class similarity carried by a teacher's soft targets makes concept
detectors, the more the more. The dose is varied through the KD students of a run
(``profiles/dose_response.yaml``), and each curve is read off the students that differ in one
setting only:

* a **temperature series**: logit-KD students of one teacher at one alpha over several T (higher
  T spreads the teacher's probability over more classes);
* the same from a label-smoothed teacher, whose targets carry less class similarity (P8, P9);
* an **alpha series**: students of one teacher at one T over several alpha (the weight of the
  soft targets against the labels).

Each point is the mean over seeds with a 95% t-interval; each step along a curve is a paired
difference over seeds (:func:`kdinterp.core.statistics.monotone`), so a trend is only claimed when
every step's interval excludes 0. :func:`write_dose_response` writes the table, the figure and a
README into a folder (``docs/dose_response``), with the command that made them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from kdinterp.core import statistics, study
from kdinterp.core.config import ParamsError
from kdinterp.core.io import atomic_path, write_text
from kdinterp.core.params import Params
from kdinterp.reporting.paper import signed
from kdinterp.reporting.quantities import QUANTITIES
from kdinterp.reporting.results import RunResults, load_run

__all__ = ["CURVES", "Series", "dose_response_table", "plot_dose_response", "series", "write_dose_response"]

#: What is drawn along every curve: keys of :data:`kdinterp.reporting.quantities.QUANTITIES` (the table's columns).
#: The calibrated count of the primary categories is the pre-registered endpoint (docs/instrument.md); the paper's
#: fixed-threshold count, which fails the controls on the concept world, is kept beside it for comparability.
CURVES: tuple[str, ...] = ("top1", "calibrated_primary", "detectors", "entropy", "nontarget_entropy",
                           "teacher_agreement", "same_type_mass")


def _label(key: str) -> str:
    """The quantity's name with the unit of its values (percent, nats), e.g. ``top-1 (%)``."""
    quantity = QUANTITIES[key]
    unit = {"pp": "%", "nats": "nats"}.get(quantity.unit)
    return f"{quantity.name} ({unit})" if unit else quantity.name
TABLE_FILE, FIGURE_FILE, README_FILE = "dose_response.csv", "dose_response.png", "README.md"


@dataclass(frozen=True)
class Series:
    """Logit-KD students that differ in one setting.

    Attributes:
        label: e.g. ``T, from teacher (alpha 0.5)``.
        axis: ``temperature`` or ``alpha``.
        points: ``(value, model name)`` in increasing value.
    """

    label: str
    axis: str
    points: tuple[tuple[float, str], ...]


def series(params: Params) -> list[Series]:
    """The temperature and alpha series among ``params.distilled`` (logit KD only), two points or more each.

    Temperature series: students of one teacher at one alpha; alpha series: of one teacher at one T.
    """
    kd = {name: spec for name, spec in params.distilled.items() if spec.method == "kd"}
    out = []
    for axis, fixed in (("temperature", "alpha"), ("alpha", "temperature")):
        groups: dict[tuple[str, float], list[tuple[float, str]]] = {}
        for name, spec in kd.items():
            groups.setdefault((spec.teacher, getattr(spec, fixed)), []).append((getattr(spec, axis), name))
        for (teacher, value), points in groups.items():
            if len({x for x, _ in points}) >= 2:
                label = f"{'T' if axis == 'temperature' else 'alpha'}, from {teacher} ({fixed} {value:g})"
                out.append(Series(label, axis, tuple(sorted(points))))
    return out


def dose_response_table(run: RunResults, curves: list[Series]) -> pd.DataFrame:
    """One row per (series, point, seed): the setting, the model, and every quantity of :data:`CURVES`."""
    rows = []
    for curve in curves:
        for value, name in curve.points:
            for m in run.seeds_of(name):
                rows.append({"series": curve.label, "axis": curve.axis, "value": value, "model": name, "seed": m.seed,
                             **{key: QUANTITIES[key].value(m) for key in CURVES}})
    return pd.DataFrame(rows)


def _interval(values: np.ndarray) -> statistics.Interval:
    return statistics.t_interval(values[~np.isnan(values)])


def _trend(run: RunResults, curve: Series, key: str) -> str:
    """The verdicts of the steps along ``curve`` for measure ``key`` (increasing), e.g. ``holds, inconclusive``."""
    arrays = run.aligned([name for _, name in curve.points], QUANTITIES[key].value)
    steps = statistics.monotone(arrays, +1)
    text = ", ".join(f"{signed(c.mean, '.2f')} ({c.verdict})" for c in steps)
    return f"{statistics.combine(c.verdict for c in steps)}: {text}"


def plot_dose_response(table: pd.DataFrame, curves: list[Series]) -> Figure:
    """A row of panels per axis (temperature, alpha), a column per measure the run has (:data:`CURVES`).

    Each seed is a dot, the mean over seeds a line, its 95% t-interval a band.
    """
    axes_kinds = sorted({c.axis for c in curves}, key=["temperature", "alpha"].index)
    fig = Figure(figsize=(3.2 * len(CURVES), 3.0 * len(axes_kinds) + 0.8), dpi=150, layout="constrained")
    keys = [key for key in CURVES if table[key].notna().any()]   # e.g. no calibrated count: no empty panel
    grid = np.atleast_2d(fig.subplots(len(axes_kinds), len(keys), squeeze=False))
    colors = matplotlib.colormaps["tab10"]
    for row, kind in enumerate(axes_kinds):
        for col, key in enumerate(keys):
            ax = grid[row, col]
            for i, curve in enumerate(c for c in curves if c.axis == kind):
                part = table[table["series"] == curve.label]
                xs = [x for x, _ in curve.points]
                per_x = [part.loc[part["value"] == x, key].to_numpy(dtype=float) for x in xs]
                color = colors(i + (0 if kind == "temperature" else 4))
                for x, values in zip(xs, per_x, strict=True):
                    ax.scatter(np.full(len(values), x), values, s=9, color=color, alpha=0.6, linewidths=0)
                means = [np.nanmean(v) if np.isfinite(v).any() else np.nan for v in per_x]
                bands = [_interval(v) if np.isfinite(v).sum() >= 2 else None for v in per_x]
                ax.plot(xs, means, color=color, linewidth=1.8, marker="o", markersize=3.5,
                        label=curve.label if col == 0 else None)
                if all(b is not None for b in bands):
                    ax.fill_between(xs, [b.low for b in bands], [b.high for b in bands], color=color, alpha=0.15,
                                    linewidth=0)
            if kind == "temperature":
                ax.set_xscale("log", base=2)
            ax.set_xlabel("KD temperature T" if kind == "temperature" else "alpha (weight of the KD term)")
            ax.set_title(_label(key), fontsize=9)
            ax.grid(color="#eeeeee", linewidth=0.8)
        grid[row, 0].legend(fontsize=7.5, loc="best")
    fig.suptitle("Dose-response: class-similarity information in the targets (T, teacher, alpha) against detectors, "
                 "accuracy and similarity\nline: mean over seeds; band: 95% t-interval; dots: each seed", fontsize=10)
    return fig


def _readme(params: Params, run: RunResults, table: pd.DataFrame, curves: list[Series], command: str) -> str:
    lines = ["# Dose-response: class-similarity information in, detectors out", "",
             "Generated by `kdinterp dose-response` from a run of `profiles/dose_response.yaml`; do not edit by hand.",
             "", "Made with:", "", "```", command, "```", "",
             f"Seeds: {', '.join(map(str, run.seeds))} (n = {len(run.seeds)} per point); students: "
             f"{params.student_recipe.model.arch}, width {params.student_recipe.model.width}; dissection of "
             f"`{run.layer}` at quantile {run.quantile:g}, IoU \u2265 {run.iou_threshold:g}. Each cell: mean over "
             "seeds [95% t-interval]. The module docstring of `kdinterp.reporting.dose_response` says how the curves are "
             "read; `dose_response.csv` has every seed.", "", f"![dose-response]({FIGURE_FILE})", ""]
    for curve in curves:
        lines += [f"## {curve.label}", "",
                  "| " + " | ".join([curve.axis, "model", *(_label(key) for key in CURVES)]) + " |",
                  "|" + "---|" * (2 + len(CURVES))]
        part = table[table["series"] == curve.label]
        for value, name in curve.points:
            cells = []
            for key in CURVES:
                values = part.loc[part["model"] == name, key].to_numpy(dtype=float)
                i = _interval(values) if np.isfinite(values).sum() else None
                cells.append("n/a" if i is None else f"{i.mean:.3f}" if np.isnan(i.low)
                             else f"{i.mean:.3f} [{i.low:.3f}, {i.high:.3f}]")
            lines.append(f"| {value:g} | `{name}` | " + " | ".join(cells) + " |")
        lines += ["", f"Steps along {curve.axis} (paired differences over seeds, each step's verdict on "
                  "\"increases\"; the trend holds only if every step holds):", ""]
        measured = [key for key in ("calibrated_primary", "detectors", "top1", "entropy", "nontarget_entropy",
                                    "same_type_mass")
                    if part[key].notna().all()]  # calibrated where dissected so; same-type mass on the concept world
        lines += [f"- {_label(key)}: {_trend(run, curve, key)}" for key in measured]
        lines.append("")
    return "\n".join(lines)


def write_dose_response(params: Params, layout: study.Layout, out: Path, command: str) -> pd.DataFrame:
    """Write ``dose_response.csv``, ``dose_response.png`` and ``README.md`` into ``out``.

    Args:
        params: the run's parameters (a run of ``profiles/dose_response.yaml``).
        layout: where the run's outputs are.
        out: the destination folder (``docs/dose_response``), created if missing.
        command: the command line that made the run and this folder, written into the README.

    Returns:
        The per-seed table.

    Raises:
        ParamsError: the params have no series of two points or more (apply the profile first).
        FileNotFoundError, StaleOutputError: as :func:`kdinterp.reporting.results.load_run`.
    """
    curves = series(params)
    if not curves:
        raise ParamsError("params.yaml has no KD students that differ only in T or alpha; apply the profile first: "
                         "make repro PROFILE=dose_response")
    run = load_run(params, layout)
    table = dose_response_table(run, curves)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / TABLE_FILE) as tmp:
        table.to_csv(tmp, index=False)
    with matplotlib.rc_context({"axes.spines.top": False, "axes.spines.right": False}):
        figure = plot_dose_response(table, curves)
    with atomic_path(out / FIGURE_FILE) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})
    write_text(out / README_FILE, _readme(params, run, table, curves, command))
    return table
