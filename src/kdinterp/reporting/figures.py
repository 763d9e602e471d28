"""Stage ``figures``: the paper-figure counterparts and ``REPRODUCTION.md``, drawn from ``outputs/``.

Outputs (in ``out``, normally ``paper_figures/``):

* ``fig1_accuracy_detectors.png``: the paper's Figure 1 (top-1 and number of concept detectors of
  f_scratch, f_KD and f_LS): this run's mean over seeds as bars, each seed as a dot, the 95%
  t-interval as a whisker, beside the paper's ImageNet values.
* ``fig_detectors_per_category.png``: detectors per Broden category for every dissected model,
  mean over seeds with each seed as a dot.
* ``fig_sensitivity.png``: detectors against the IoU threshold per activation quantile, with seed
  bands and the rotated-basis control (:func:`plot_sensitivity`).
* ``REPRODUCTION.md`` (:mod:`kdinterp.reporting.reproduction`): what was run, the results per model and per
  seed, and the paper's predictions with verdicts from paired t-intervals over seeds.

The inputs are read by :func:`kdinterp.reporting.results.load_run`; the paper's numbers are reference targets
for display only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kdinterp.core import statistics
from kdinterp.core.io import atomic_path
from kdinterp.core.params import Params
from kdinterp.reporting.paper import (
    PAPER_DETECTORS,
    PAPER_LABEL,
    PAPER_NUM_UNITS,
    PAPER_TOP1_PERCENT,
    ROLE_LABELS,
    STUDENT_ROLES,
    signed,
)
from kdinterp.reporting.results import Metric, RunResults
from kdinterp.reporting.robustness import sensitivity_grid

__all__ = ["STYLE", "plot_accuracy_detectors", "plot_detectors_per_category", "plot_sensitivity", "save_figure"]

#: The matplotlib style of every figure.
STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "axes.spines.top": False,
          "axes.spines.right": False, "legend.frameon": False}
_DPI = 150
#: Seed dots: dark, white-edged, spread over this share of a bar's width.
_DOT = {"s": 16, "color": "#222222", "edgecolors": "white", "linewidths": 0.6, "zorder": 3}
_SPREAD = 0.5


def _data_name(params: Params) -> str:
    """``concept world`` for the embedded synthetic data, else the training directory."""
    return "concept world" if params.data.world_file else params.data.train_dir


def _seeds_text(run: RunResults) -> str:
    n = len(run.seeds)
    return f"n = {n} seed{'s' if n != 1 else ''} ({', '.join(map(str, run.seeds))})"


def _dot_offsets(n: int, width: float) -> np.ndarray:
    """x offsets of ``n`` seed dots on a bar of ``width``: evenly spread, centred, deterministic."""
    return np.zeros(1) if n == 1 else np.linspace(-0.5, 0.5, n) * width * _SPREAD


def _seed_dots(ax: Axes, xs: Sequence[float], seeds: Sequence[np.ndarray], width: float, label: str | None) -> None:
    """Each seed's value as a dot on its bar (``seeds[i]``: the values on bar ``i``), and the 95%
    t-interval of the mean as a whisker where a bar has two seeds or more."""
    for i, (x, values) in enumerate(zip(xs, seeds, strict=True)):
        ax.scatter(x + _dot_offsets(len(values), width), values, label=label if i == 0 else None, **_DOT)
        if len(values) > 1:
            ci = statistics.t_interval(values)
            ax.errorbar([x], [ci.mean], yerr=[[ci.mean - ci.low], [ci.high - ci.mean]], color="#555555",
                        capsize=4, linewidth=1.1, zorder=4, label="95% CI of the mean" if i == 0 and label else None)


def _bar_labels(ax: Axes, xs: Sequence[float], tops: Sequence[float], texts: list[str], fontsize: float = 9) -> None:
    for x, top, text in zip(xs, tops, texts, strict=True):
        ax.annotate(text, (x, top), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                    fontsize=fontsize)


def _role_panel(ax: Axes, labels: list[str], values: list[float], colors: list[str], texts: list[str], *,
                paper: bool, ylim: float, seeds: list[np.ndarray] | None = None) -> None:
    """One Figure-1 panel: three bars (scratch, KD, LS), each seed as a dot, value and delta written on top."""
    xs = list(range(len(labels)))
    ax.bar(xs, values, color=colors, width=0.62, edgecolor="white" if not paper else colors,
           alpha=0.45 if paper else 1.0, hatch="///" if paper else None, linewidth=0.8)
    ax.set_xticks(xs, labels)
    tops = list(values)
    if seeds is not None:
        _seed_dots(ax, xs, seeds, 0.62, "one dot per seed")
        tops = [max(v, float(np.max(s))) for v, s in zip(values, seeds, strict=True)]
    _bar_labels(ax, xs, tops, texts)
    ax.set_ylim(0, ylim)
    ax.tick_params(axis="x", length=0)
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)


def _with_delta(values: list[float], deltas: list[float], fmt: str, delta_fmt: str, unit: str = "",
                delta_unit: str = "") -> list[str]:
    """The value on each bar, and its difference from the first bar (scratch) below it."""
    return [f"{values[0]:{fmt}}{unit}\n(baseline)"] + [
        f"{v:{fmt}}{unit}\n({signed(d, delta_fmt)}{delta_unit})" for v, d in zip(values[1:], deltas[1:], strict=True)]


def _role_values(run: RunResults, metric: Metric) -> tuple[list[np.ndarray], list[float], list[float]]:
    """Per student role: per-seed values, their mean, and the mean paired difference from scratch."""
    names = [run.roles[role] for role in STUDENT_ROLES]
    seeds = [run.values(name, metric) for name in names]
    deltas = [statistics.paired_difference(*run.paired(name, names[0], metric), +1).mean for name in names]
    return seeds, [float(np.mean(v)) for v in seeds], deltas


def plot_accuracy_detectors(params: Params, run: RunResults) -> Figure:
    """The paper's Figure 1: top-1 accuracy and concept detectors of scratch, KD and LS.

    A 2x2 grid: rows are top-1 accuracy and number of concept detectors; the left column is this
    run (bars: mean over seeds; dots: each seed; dashed line: the teacher), the right column the
    paper's ImageNet numbers (hatched, grey background, for reference only). Every bar carries its
    value and its difference from scratch (for this run, the mean paired difference over seeds).
    The detector panels have a right-hand axis in percent of the layer's units, on the same scale in
    both columns, so that layers of different widths (ours and ResNet-18's 512) compare by height.

    Args:
        params: for the titles (data).
        run: this run's results.

    Returns:
        The figure (not saved).
    """
    students = [run.by_role(role)[0] for role in STUDENT_ROLES]
    labels = [m.label for m in students]
    colors = [run.colors[m.name] for m in students]
    teacher = run.by_role("teacher")
    teacher_top1 = 100 * float(np.mean([m.evaluation.top1 for m in teacher]))
    units = students[0].dissection.num_units
    fig = Figure(figsize=(10, 7.6), dpi=_DPI, layout="constrained")
    (acc_run, acc_paper), (det_run, det_paper) = fig.subplots(2, 2)

    acc_seeds, run_acc, acc_delta = _role_values(run, lambda m: 100 * m.evaluation.top1)
    paper_acc = [PAPER_TOP1_PERCENT[role] for role in STUDENT_ROLES]
    _role_panel(acc_run, labels, run_acc, colors, _with_delta(run_acc, acc_delta, ".2f", ".2f", "%", " pp"),
                paper=False, ylim=100.0, seeds=acc_seeds)
    seed = ", ".join(f"seed {m.seed}" for m in teacher)
    acc_run.axhline(teacher_top1, color=run.colors[teacher[0].name], linestyle="--", linewidth=1,
                    label=f"teacher ({teacher[0].arch}, {seed}): {teacher_top1:.2f}%", zorder=0)
    acc_run.legend(loc="upper center", ncols=2, fontsize=8, framealpha=0.9, frameon=True)
    _role_panel(acc_paper, [ROLE_LABELS[r] for r in STUDENT_ROLES], paper_acc, colors,
                _with_delta(paper_acc, [p - paper_acc[0] for p in paper_acc], ".2f", ".2f", "%", " pp"),
                paper=True, ylim=100.0)

    det_seeds, run_det, det_delta = _role_values(run, lambda m: m.dissection.num_detectors)
    paper_det = [PAPER_DETECTORS[role] for role in STUDENT_ROLES]
    top_share = 1.3 * max(max(float(np.max(s)) for s in det_seeds) / units, max(paper_det) / PAPER_NUM_UNITS)
    _role_panel(det_run, labels, run_det, colors, _with_delta(run_det, det_delta, ".1f", ".1f"),
                paper=False, ylim=max(1.0, top_share * units), seeds=det_seeds)
    _role_panel(det_paper, [ROLE_LABELS[r] for r in STUDENT_ROLES], paper_det, colors,
                _with_delta(paper_det, [p - paper_det[0] for p in paper_det], "d", "d"), paper=True,
                ylim=top_share * PAPER_NUM_UNITS)
    for ax, n in ((det_run, units), (det_paper, PAPER_NUM_UNITS)):
        share = ax.secondary_yaxis("right", functions=(lambda d, n=n: 100 * d / n, lambda p, n=n: p * n / 100))
        share.set_ylabel(f"% of the {n} units", color="#666666")
        share.tick_params(colors="#666666")
        share.spines["right"].set_color("#999999")

    acc_run.set_ylabel("Top-1 accuracy on val (%)")
    det_run.set_ylabel(f"Concept detectors ({run.layer} units)")
    acc_run.set_title(f"this run, {_seeds_text(run)}\n({_data_name(params)}, {students[0].arch})", fontweight="bold")
    acc_paper.set_title(f"{PAPER_LABEL}, for reference", fontweight="bold", color="#555555")
    for ax in (acc_paper, det_paper):
        ax.set_facecolor("#f5f5f5")
    fig.suptitle("Figure 1 counterpart: top-1 accuracy and concept detectors of Scratch, KD and LS\n"
                 f"detector = {run.layer} unit whose best concept has IoU \u2265 {run.iou_threshold:g} "
                 f"(activation quantile {run.quantile:g})\n"
                 f"this run: bars = mean over {len(run.seeds)} seeds, dots = each seed, whiskers = 95% CI; "
                 f"{units} units, {run.probe_images} probe images\n"
                 f"paper: {PAPER_NUM_UNITS} units, Broden (63,305 images)",
                 fontsize=10)
    fig.supxlabel("Hatched bars on grey: the paper's values (research/paper.md \u00a76, Figure 1), not measured "
                  "here.\nIn brackets: difference from Scratch (this run: mean paired difference over seeds).",
                  fontsize=8.5, color="#555555")
    return fig


def plot_detectors_per_category(params: Params, run: RunResults) -> Figure:
    """Concept detectors per category (object, part, scene, ...) for every dissected model.

    Grouped bars: one group per category, one bar per model (teacher included) at its mean over
    seeds, each seed as a dot, the mean written on the bar. The paper gives no per-category numbers,
    only directions (research/paper.md §6).

    Args:
        params: for the title (data).
        run: this run's results.

    Returns:
        The figure (not saved).
    """
    names = run.names
    fig = Figure(figsize=(10, 5.2), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(names)
    peak = 1.0
    for i, name in enumerate(names):
        seeds = run.seeds_of(name)
        first = seeds[0]
        xs = [c + (i - (len(names) - 1) / 2) * width for c in range(len(run.categories))]
        per_seed = [np.array([m.dissection.detectors.get(category, 0) for m in seeds], dtype=np.float64)
                    for category in run.categories]
        means = [float(np.mean(v)) for v in per_seed]
        total = float(np.mean([m.dissection.num_detectors for m in seeds]))
        ax.bar(xs, means, width=width * 0.92, color=run.colors[name],
               label=f"{first.label}: {first.arch}, {total:.3g} detectors / {first.dissection.num_units} units "
                     + (f"(n = {len(seeds)})" if first.per_seed else f"(seed {first.seed})"))
        _seed_dots(ax, xs, per_seed, width * 0.92, None)
        tops = [float(np.max(v)) for v in per_seed]
        _bar_labels(ax, xs, tops, [f"{v:.3g}" for v in means], fontsize=7.5)
        peak = max(peak, *tops)
    ax.set_xticks(range(len(run.categories)), run.categories)
    ax.tick_params(axis="x", length=0)
    ax.set_ylabel("Concept detectors (units)")
    ax.set_ylim(0, 1.15 * peak)
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    fig.legend(loc="outside lower center", ncols=2, fontsize=8.5)
    ax.set_title(f"this run ({_data_name(params)}), {_seeds_text(run)}: concept detectors per category in "
                 f"{run.layer}, IoU \u2265 {run.iou_threshold:g}\n"
                 "bars: mean over seeds (a teacher: its one seed); dots: each seed; whiskers: 95% t-interval\n"
                 "each detector counted once, in the category of its best concept; the paper reports no "
                 "per-category numbers", fontsize=10)
    return fig


def plot_sensitivity(params: Params, run: RunResults) -> Figure:
    """Detectors against the IoU threshold, one panel per activation quantile, with seed bands.

    Per model: each seed as a thin line with dots, the mean over seeds as a thick line and its 95%
    t-interval as a band; the rotated-basis control (dashed) in the panel of the params' quantile.
    The params' IoU threshold is marked.

    Args:
        params: for the title (data).
        run: this run's results (``ModelResult.sensitivity``).

    Returns:
        The figure (not saved).
    """
    quantiles, thresholds = sensitivity_grid(run)
    fig = Figure(figsize=(4.2 * len(quantiles) + 1.5, 4.6), dpi=_DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(quantiles), sharey=True))
    labelled: set[str] = set()
    for ax, q in zip(axes, quantiles, strict=True):
        for name in run.names:
            seeds, color = run.seeds_of(name), run.colors[name]
            for basis, style in (("unit", "-"), ("rotated", "--")):
                present = all((basis, q, t) in m.dissection.sensitivity for m in seeds for t in thresholds)
                if basis == "rotated" and not (np.isclose(q, run.quantile) and present):
                    continue
                values = np.array([[m.dissection.sensitivity[basis, q, t][0] for t in thresholds] for m in seeds], float)
                mean = values.mean(0)
                if len(seeds) > 1:
                    bands = [statistics.t_interval(values[:, j]) for j in range(len(thresholds))]
                    ax.fill_between(thresholds, [b.low for b in bands], [b.high for b in bands], color=color,
                                    alpha=0.15 if basis == "unit" else 0.08, linewidth=0)
                    for row in values:
                        ax.plot(thresholds, row, style, color=color, linewidth=0.6, alpha=0.5, marker=".",
                                markersize=3)
                label = f"{seeds[0].label}" + (" (rotated basis)" if basis == "rotated" else "")
                ax.plot(thresholds, mean, style, color=color, linewidth=2.0, label=None if label in labelled else label)
                labelled.add(label)
        ax.axvline(run.iou_threshold, color="#888888", linewidth=0.8, linestyle=":")
        ax.set_ylim(0, 1.02 * max(m.dissection.num_units for m in run.models.values()))  # a count: bands may reach below 0
        ax.set_title(f"quantile {q:g}" + (" (params)" if np.isclose(q, run.quantile) else ""))
        ax.set_xlabel("IoU threshold")
        ax.grid(color="#eeeeee", linewidth=0.8)
        ax.set_axisbelow(True)
    axes[0].set_ylabel(f"Concept detectors ({run.layer} units)")
    fig.legend(loc="outside right center", fontsize=8.5)
    fig.suptitle(f"Sensitivity of the detector count ({_data_name(params)}, {_seeds_text(run)})\n"
                 "thick line: mean over seeds; band: 95% t-interval; thin lines: each seed; dashed: rotated basis; "
                 "dotted: the params' IoU threshold", fontsize=10)
    return fig


def save_figure(fig: Figure, path: Path) -> None:
    """Write ``fig`` as a PNG at the figures' resolution, atomically, without the software metadata (stable bytes)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI, metadata={"Software": None})
