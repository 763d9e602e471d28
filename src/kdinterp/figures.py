"""Stage ``figures``: the paper-figure counterparts and ``REPRODUCTION.md``, drawn from ``outputs/``.

Outputs (in ``out``, normally ``paper_figures/``):

* ``fig1_accuracy_detectors.png``: the paper's Figure 1 (top-1 and number of concept detectors of
  f_scratch, f_KD and f_LS), this run beside the paper's ImageNet values.
* ``fig_detectors_per_category.png``: detectors per Broden category for every dissected model.
* ``REPRODUCTION.md`` (:mod:`kdinterp.reproduction`): what was run, the results table, and the
  paper's predictions with verdicts computed from this run's numbers.

The inputs are read by :func:`kdinterp.results.load_run`; the paper's numbers are reference targets
for display only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kdinterp.io import atomic_path, write_text
from kdinterp.params import Params
from kdinterp.reproduction import reproduction_markdown
from kdinterp.results import (FIG1_FILE, PAPER_DETECTORS, PAPER_LABEL, PAPER_NUM_UNITS, PAPER_TOP1_PERCENT,
                              PER_CATEGORY_FILE, REPRODUCTION_FILE, ROLE_LABELS, STUDENT_ROLES, RunResults, load_run,
                              signed)

__all__ = ["make_figures", "plot_accuracy_detectors", "plot_detectors_per_category"]

_STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "axes.spines.top": False,
          "axes.spines.right": False, "legend.frameon": False}
_DPI = 150


def _data_name(params: Params) -> str:
    """``concept world`` for the embedded synthetic data, else the training directory."""
    return "concept world" if params.data.world_file else params.data.train_dir


def signed(value: float, fmt: str) -> str:
    """``+37`` / ``-0.56``; the minus sign is a real one for print."""
    return f"{value:+{fmt}}".replace("-", "\u2212")


def _bar_labels(ax: Axes, bars, texts: list[str], fontsize: float = 9) -> None:
    for bar, text in zip(bars, texts, strict=True):
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 3),
                    textcoords="offset points", ha="center", va="bottom", fontsize=fontsize)


def _role_panel(ax: Axes, labels: list[str], values: list[float], colors: list[str], texts: list[str], *,
                paper: bool, ylim: float) -> None:
    """One Figure-1 panel: three bars (scratch, KD, LS) with their value and delta written on top."""
    bars = ax.bar(labels, values, color=colors, width=0.62, edgecolor="white" if not paper else colors,
                  alpha=0.45 if paper else 1.0, hatch="///" if paper else None, linewidth=0.8)
    _bar_labels(ax, bars, texts)
    ax.set_ylim(0, ylim)
    ax.tick_params(axis="x", length=0)
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)


def _with_delta(values: list[float], fmt: str, delta_fmt: str, unit: str = "", delta_unit: str = "") -> list[str]:
    """The value on each bar, and its difference from the first bar (scratch) below it."""
    base = values[0]
    return [f"{values[0]:{fmt}}{unit}\n(baseline)"] + [
        f"{v:{fmt}}{unit}\n({signed(v - base, delta_fmt)}{delta_unit})" for v in values[1:]]


def plot_accuracy_detectors(params: Params, run: RunResults) -> Figure:
    """The paper's Figure 1: top-1 accuracy and concept detectors of scratch, KD and LS.

    A 2x2 grid: rows are top-1 accuracy and number of concept detectors; the left column is this
    run, the right column the paper's ImageNet numbers (hatched, grey background, for reference
    only). Every bar carries its value and its difference from scratch. The detector panels have a
    right-hand axis in percent of the layer's units, on the same scale in both columns, so that
    layers of different widths (ours and ResNet-18's 512 units) can be compared by bar height.

    Args:
        params: for the titles (data, architecture).
        run: this run's results.

    Returns:
        The figure (not saved).
    """
    students = [run.by_role(role) for role in STUDENT_ROLES]
    colors = [run.colors[m.name] for m in students]
    teacher = run.by_role("teacher")
    units = students[0].num_units
    fig = Figure(figsize=(10, 7.6), dpi=_DPI, layout="constrained")
    (acc_run, acc_paper), (det_run, det_paper) = fig.subplots(2, 2)

    run_acc = [100 * m.top1 for m in students]
    paper_acc = [PAPER_TOP1_PERCENT[role] for role in STUDENT_ROLES]
    _role_panel(acc_run, [m.label for m in students], run_acc, colors,
                _with_delta(run_acc, ".2f", ".2f", "%", " pp"), paper=False, ylim=100.0)
    acc_run.axhline(100 * teacher.top1, color=run.colors[teacher.name], linestyle="--", linewidth=1,
                    label=f"teacher ({teacher.arch}): {100 * teacher.top1:.2f}%", zorder=0)
    acc_run.legend(loc="lower right", fontsize=8.5, framealpha=0.9, frameon=True)
    _role_panel(acc_paper, [ROLE_LABELS[r] for r in STUDENT_ROLES], paper_acc, colors,
                _with_delta(paper_acc, ".2f", ".2f", "%", " pp"), paper=True, ylim=100.0)

    run_det = [m.num_detectors for m in students]
    paper_det = [PAPER_DETECTORS[role] for role in STUDENT_ROLES]
    top_share = 1.3 * max(max(run_det) / units, max(paper_det) / PAPER_NUM_UNITS)
    _role_panel(det_run, [m.label for m in students], run_det, colors, _with_delta(run_det, "d", "d"),
                paper=False, ylim=max(1.0, top_share * units))
    _role_panel(det_paper, [ROLE_LABELS[r] for r in STUDENT_ROLES], paper_det, colors,
                _with_delta(paper_det, "d", "d"), paper=True, ylim=top_share * PAPER_NUM_UNITS)
    for ax, n in ((det_run, units), (det_paper, PAPER_NUM_UNITS)):
        share = ax.secondary_yaxis("right", functions=(lambda d, n=n: 100 * d / n, lambda p, n=n: p * n / 100))
        share.set_ylabel(f"% of the {n} units", color="#666666")
        share.tick_params(colors="#666666")
        share.spines["right"].set_color("#999999")

    acc_run.set_ylabel("Top-1 accuracy on val (%)")
    det_run.set_ylabel(f"Concept detectors ({run.layer} units)")
    acc_run.set_title(f"this run ({_data_name(params)}, {students[0].arch})", fontweight="bold")
    acc_paper.set_title(f"{PAPER_LABEL}, for reference", fontweight="bold", color="#555555")
    for ax in (acc_paper, det_paper):
        ax.set_facecolor("#f5f5f5")
    fig.suptitle("Figure 1 counterpart: top-1 accuracy and concept detectors of Scratch, KD and LS\n"
                 f"detector = {run.layer} unit whose best concept has IoU \u2265 {run.iou_threshold:g} "
                 f"(activation quantile {run.quantile:g})\n"
                 f"this run: {units} units, {run.probe_images} probe images \u00b7 paper: {PAPER_NUM_UNITS} units, "
                 "Broden (63,305 images)", fontsize=10.5)
    fig.supxlabel("Hatched bars on grey: the paper's values (research/paper.md \u00a76, Figure 1), not measured "
                  "here. In brackets: difference from Scratch.", fontsize=8.5, color="#555555")
    return fig


def plot_detectors_per_category(params: Params, run: RunResults) -> Figure:
    """Concept detectors per category (object, part, scene, ...) for every dissected model.

    Grouped bars: one group per category, one bar per model (teacher included), counts written on
    the bars. The paper gives no per-category numbers, only directions (research/paper.md §6).

    Args:
        params: for the title (data).
        run: this run's results.

    Returns:
        The figure (not saved).
    """
    models = list(run.models.values())
    fig = Figure(figsize=(10, 5.2), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        xs = [c + (i - (len(models) - 1) / 2) * width for c in range(len(run.categories))]
        counts = [model.detectors.get(category, 0) for category in run.categories]
        bars = ax.bar(xs, counts, width=width * 0.92, color=run.colors[model.name],
                      label=f"{model.label}: {model.arch}, {model.num_detectors} detectors / {model.num_units} units")
        _bar_labels(ax, bars, [str(n) for n in counts], fontsize=7.5)
    ax.set_xticks(range(len(run.categories)), run.categories)
    ax.tick_params(axis="x", length=0)
    ax.set_ylabel("Concept detectors (units)")
    ax.set_ylim(0, 1.15 * max(1, *(n for m in models for n in m.detectors.values())))
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    fig.legend(loc="outside lower center", ncols=2, fontsize=8.5)
    ax.set_title(f"this run ({_data_name(params)}): concept detectors per category in {run.layer}, "
                 f"IoU \u2265 {run.iou_threshold:g}\n"
                 "each detector counted once, in the category of its best concept; the paper reports no "
                 "per-category numbers", fontsize=10.5)
    return fig


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI, metadata={"Software": None})


def make_figures(params: Params, outputs: Path, out: Path) -> None:
    """Stage ``figures``: write the two figures and ``REPRODUCTION.md`` into ``out``.

    Args:
        params: the run's parameters.
        outputs: the pipeline's ``outputs/`` directory.
        out: the destination directory (``paper_figures/``), created if missing.

    Raises:
        FileNotFoundError: an input is missing; the message names the file and the stage that writes it.
        ParamsError: a paper role has no model in ``params.paper_models``.
        FiguresInputError: an input is incomplete or stale.
    """
    run = load_run(params, Path(outputs))
    out = Path(out)
    figures: dict[str, Callable[[Params, RunResults], Figure]] = {
        FIG1_FILE: plot_accuracy_detectors, PER_CATEGORY_FILE: plot_detectors_per_category}
    with matplotlib.rc_context(_STYLE):
        for name, draw in figures.items():
            _save(draw(params, run), out / name)
    write_text(out / REPRODUCTION_FILE, reproduction_markdown(params, run))
