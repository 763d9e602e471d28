"""Stage ``figures``: the paper-figure counterparts and ``REPRODUCTION.md``, drawn from ``outputs/``.

Inputs (everything under the ``outputs`` directory; nothing is recomputed here):

* ``metrics/<model>.json`` (stage ``evaluate_*@<model>``): top-1 accuracy on val.
* ``metrics/similarity.json`` (stage ``similarity``): within-class entropy, teacher agreement.
* ``dissection/<model>/summary.json`` (stage ``dissect_*@<model>``): concept detectors of ``layer4``.
* ``validation/dissection.json`` (stage ``validate``): whether the dissection tables passed.

Outputs (in ``out``, normally ``paper_figures/``):

* ``fig1_accuracy_detectors.png``: the paper's Figure 1 (top-1 and number of concept detectors of
  f_scratch, f_KD and f_LS), this run beside the paper's ImageNet values.
* ``fig_detectors_per_category.png``: detectors per Broden category for every dissected model.
* ``REPRODUCTION.md``: what was run, the results table, and predictions P1-P7 of
  ``research/paper.md`` §7 with verdicts computed from this run's numbers.

The paper's numbers below are reference targets for display only; every measured number comes from
the files. Roles (``teacher, scratch, ls, kd``) map to model names through ``params.paper_models``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kdinterp.io import atomic_path, read_json, write_text
from kdinterp.params import Params, ParamsError

__all__ = [
    "FIG1_FILE",
    "FiguresInputError",
    "PER_CATEGORY_FILE",
    "REPRODUCTION_FILE",
    "ModelResult",
    "Prediction",
    "RunResults",
    "evaluate_predictions",
    "load_run",
    "make_figures",
    "plot_accuracy_detectors",
    "plot_detectors_per_category",
    "reproduction_markdown",
]

FIG1_FILE = "fig1_accuracy_detectors.png"
PER_CATEGORY_FILE = "fig_detectors_per_category.png"
REPRODUCTION_FILE = "REPRODUCTION.md"

#: The paper's roles, in the order of its Figure 1: (a) scratch, (b) KD, (c) LS.
STUDENT_ROLES: tuple[str, ...] = ("scratch", "kd", "ls")
ROLES: tuple[str, ...] = ("teacher", *STUDENT_ROLES)

# Paper reference values: research/paper.md §6 "Figure 1" [FIG1] (ImageNet val, ResNet-18 student,
# ResNet-34 teacher; layer4, Broden, quantile 0.005, IoU >= 0.05) and §5 [SUM].
#: Top-1 accuracy on ImageNet val, in percent (research/paper.md §6, Figure 1).
PAPER_TOP1_PERCENT: dict[str, float] = {"scratch": 69.94, "kd": 70.80, "ls": 70.13}
#: Number of concept detectors among ResNet-18's layer4 units (research/paper.md §6, Figure 1).
PAPER_DETECTORS: dict[str, int] = {"scratch": 275, "kd": 312, "ls": 219}
#: Units in ResNet-18's layer4, over which the paper counts detectors (research/paper.md §4.1).
PAPER_NUM_UNITS = 512
#: Within-class output entropy in nats (research/paper.md §5, [SUM]).
PAPER_ENTROPY: dict[str, float] = {"kd": 2.9041, "scratch": 2.8986, "ls": 2.6040}
PAPER_LABEL = "paper (ImageNet, ResNet-18)"

#: One colour per role, shared by every figure; other models take EXTRA_COLORS in order.
ROLE_COLORS: dict[str, str] = {"teacher": "#5e3c99", "scratch": "#8c8c8c", "kd": "#1f6fb4", "ls": "#e08214"}
EXTRA_COLORS: tuple[str, ...] = ("#1a9850", "#d73027", "#8c510a", "#c51b7d", "#01665e", "#4d4d4d")
ROLE_LABELS: dict[str, str] = {"teacher": "Teacher", "scratch": "Scratch", "kd": "KD", "ls": "LS"}
#: The paper's notation for each role (research/paper.md §1).
PAPER_NOTATION: dict[str, str] = {"teacher": "teacher", "scratch": "f_scratch", "kd": "f_KD", "ls": "f_LS"}

_STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "axes.spines.top": False,
          "axes.spines.right": False, "legend.frameon": False}
_DPI = 150


# --------------------------------------------------------------------------- inputs


class FiguresInputError(ValueError):
    """An input of stage ``figures`` is incomplete or stale; the message names the file and the stage to rerun."""


@dataclass(frozen=True)
class ModelResult:
    """Everything the figures and the report need about one model.

    Attributes:
        name: the model's key in params.yaml.
        kind: ``teacher``, ``student`` or ``distilled`` (the params group it comes from).
        role: its paper role (``teacher, scratch, ls, kd``), or None.
        arch: e.g. ``resnet18, width 16``.
        top1: top-1 accuracy on val, a fraction.
        val_images: validation images behind ``top1``.
        num_units: units of the dissected layer.
        num_detectors: units whose best concept has IoU >= the threshold.
        num_unique_concepts: distinct concepts among the detectors.
        detectors: detectors per category.
        within_class_entropy: nats.
        teacher_agreement: correlation with the reference teacher's class similarities (None for it).
        same_type_mass: share of non-target probability on same-type classes, when measured.
    """

    name: str
    kind: str
    role: str | None
    arch: str
    top1: float
    val_images: int
    num_units: int
    num_detectors: int
    num_unique_concepts: int
    detectors: dict[str, int]
    within_class_entropy: float
    teacher_agreement: float | None
    same_type_mass: float | None

    @property
    def label(self) -> str:
        """``KD`` for a role model (``KD (kd_t8)`` when its name differs), else the model name."""
        if self.role is None:
            return self.name
        base = ROLE_LABELS[self.role]
        return base if self.name == self.role else f"{base} ({self.name})"


@dataclass(frozen=True)
class RunResults:
    """One pipeline run, as read from ``outputs/``.

    Attributes:
        models: every model of params.yaml, by name: role models first (teacher, scratch, kd, ls),
            then the others in params order.
        roles: paper role -> model name.
        colors: model name -> colour, the same in every figure.
        reference_teacher: the model that teacher agreement is measured against (similarity.json).
        layer, quantile, iou_threshold, probe_images: the dissection settings, from summary.json.
        categories: concept categories, in params order.
        validation_success: the ``validate`` report's ``success`` (None when it has no such key).
        validation_tables: how many tables the ``validate`` report covers.
        same_type_mass_chance: same-type mass of a model blind to class similarity, when measured.
    """

    models: dict[str, ModelResult]
    roles: dict[str, str]
    colors: dict[str, str]
    reference_teacher: str | None
    layer: str
    quantile: float
    iou_threshold: float
    probe_images: int
    categories: tuple[str, ...]
    validation_success: bool | None
    validation_tables: int
    same_type_mass_chance: float | None

    def by_role(self, role: str) -> ModelResult:
        """The model that plays ``role`` in the paper."""
        return self.models[self.roles[role]]


def _stage(params: Params, name: str, step: str) -> str:
    """The DVC stage that writes ``step`` (``evaluate`` or ``dissect``) outputs of model ``name``."""
    group = "teacher" if name in params.teachers else "student" if name in params.students else "distilled"
    return f"{step}_{group}@{name}"


def _read(path: Path, stage: str) -> dict:
    """Read a JSON input, naming the stage that writes it when it is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing input of stage figures; it is written by stage {stage} "
                                f"(run `dvc repro -s {stage}`, or `dvc repro` for everything)")
    return read_json(path)


def _get(data: dict, key: str, path: Path, stage: str) -> Any:
    """``data[key]``, or a FiguresInputError naming the file and the stage to rerun."""
    if key not in data:
        raise FiguresInputError(f"{path}: key '{key}' is missing; rerun stage {stage} "
                                f"(`dvc repro -f -s {stage}`)")
    return data[key]


def _arch(params: Params, name: str) -> str:
    model = params.teachers[name].model if name in params.teachers else params.student_recipe.model
    return f"{model.arch}, width {model.width}"


def _model_order(params: Params) -> list[str]:
    role_models = [params.paper_models[role] for role in ROLES]
    return [*role_models, *(name for name in params.model_names if name not in role_models)]


def _colors(order: list[str], roles: dict[str, str]) -> dict[str, str]:
    role_of = {name: role for role, name in roles.items()}
    extra = iter(EXTRA_COLORS * (1 + len(order) // len(EXTRA_COLORS)))
    return {name: ROLE_COLORS[role_of[name]] if name in role_of else next(extra) for name in order}


def load_run(params: Params, outputs: Path) -> RunResults:
    """Read every input of the ``figures`` stage.

    Args:
        params: the run's parameters (models, roles, IoU threshold).
        outputs: the pipeline's ``outputs/`` directory.

    Returns:
        The run's results.

    Raises:
        ParamsError: a paper role has no model in ``params.paper_models``.
        FiguresInputError: a file lacks a key or a model, or a dissection used another IoU threshold
            than params.yaml (stale outputs).
        FileNotFoundError: an input file is missing; the message names the stage that writes it.
    """
    missing = [role for role in ROLES if role not in params.paper_models]
    if missing:
        raise ParamsError(f"params.yaml paper_models: no model for role(s) {', '.join(missing)}; stage figures "
                          f"needs one model per role in {', '.join(ROLES)}")
    roles = {role: params.paper_models[role] for role in ROLES}
    order = _model_order(params)
    similarity_path = outputs / "metrics" / "similarity.json"
    similarity = _read(similarity_path, "similarity")
    sim_models = _get(similarity, "models", similarity_path, "similarity")
    models, summaries = {}, {}
    for name in order:
        metrics_path = outputs / "metrics" / f"{name}.json"
        summary_path = outputs / "dissection" / name / "summary.json"
        evaluate, dissect = _stage(params, name, "evaluate"), _stage(params, name, "dissect")
        metrics = _read(metrics_path, evaluate)
        summary = summaries[name] = _read(summary_path, dissect)
        if name not in sim_models:
            raise FiguresInputError(f"{similarity_path}: no entry for model '{name}'; rerun stage similarity "
                                    "(`dvc repro -f -s similarity`)")
        sim = sim_models[name]
        threshold = _get(summary, "iou_threshold", summary_path, dissect)
        if not math.isclose(threshold, params.dissection.iou_threshold):
            raise FiguresInputError(f"{summary_path}: iou_threshold {threshold} differs from params.yaml "
                                    f"dissection.iou_threshold {params.dissection.iou_threshold}; "
                                    f"rerun `dvc repro -s {dissect}`")
        models[name] = ModelResult(
            name=name,
            kind="teacher" if name in params.teachers else "student" if name in params.students else "distilled",
            role=next((role for role, model in roles.items() if model == name), None),
            arch=_arch(params, name),
            top1=float(_get(metrics, "top1", metrics_path, evaluate)),
            val_images=int(_get(metrics, "num_images", metrics_path, evaluate)),
            num_units=int(_get(summary, "num_units", summary_path, dissect)),
            num_detectors=int(_get(summary, "num_detectors", summary_path, dissect)),
            num_unique_concepts=int(_get(summary, "num_unique_concepts", summary_path, dissect)),
            detectors={c: int(n) for c, n in _get(summary, "detectors", summary_path, dissect).items()},
            within_class_entropy=float(_get(sim, "within_class_entropy", similarity_path, "similarity")),
            teacher_agreement=sim.get("teacher_agreement"),
            same_type_mass=sim.get("same_type_mass"),
        )
    validation = _read(outputs / "validation" / "dissection.json", "validate")
    reference_path = outputs / "dissection" / roles["scratch"] / "summary.json"
    reference, reference_stage = summaries[roles["scratch"]], _stage(params, roles["scratch"], "dissect")
    return RunResults(
        models=models,
        roles=roles,
        colors=_colors(order, roles),
        reference_teacher=similarity.get("reference_teacher"),
        layer=str(_get(reference, "layer", reference_path, reference_stage)),
        quantile=float(_get(reference, "quantile", reference_path, reference_stage)),
        iou_threshold=params.dissection.iou_threshold,
        probe_images=int(_get(reference, "num_images", reference_path, reference_stage)),
        categories=tuple(params.dissection.categories),
        validation_success=validation.get("success"),
        validation_tables=len(validation.get("tables", [])),
        same_type_mass_chance=similarity.get("same_type_mass_chance"),
    )


# --------------------------------------------------------------------------- figures


def _data_name(params: Params) -> str:
    """``concept world`` for the embedded synthetic data, else the training directory."""
    return "concept world" if params.data.world_file else params.data.train_dir


def _signed(value: float, fmt: str) -> str:
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
        f"{v:{fmt}}{unit}\n({_signed(v - base, delta_fmt)}{delta_unit})" for v in values[1:]]


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


# --------------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class Prediction:
    """One testable prediction of ``research/paper.md`` §7, checked on this run.

    Attributes:
        pid: ``P1`` ... ``P7``; the parts of P6 are ``P6a``, ``P6b``, ``P6c``.
        claim: the prediction, in the paper's notation.
        paper: the paper's values.
        evidence: the source tag of research/paper.md (``[FIG1]`` ...).
        ours: this run's values.
        holds: whether this run's numbers satisfy the (strict) inequality.
    """

    pid: str
    claim: str
    paper: str
    evidence: str
    ours: str
    holds: bool

    @property
    def verdict(self) -> str:
        """``holds`` or ``does not hold``."""
        return "holds" if self.holds else "does not hold"


def _acc(m: ModelResult) -> str:
    return f"{100 * m.top1:.2f}%"


def evaluate_predictions(run: RunResults) -> list[Prediction]:
    """Check predictions P1-P7 of ``research/paper.md`` §7 on this run (strict inequalities; a tie fails).

    Args:
        run: this run's results.

    Returns:
        P1-P5, P6a-P6c, P7, in that order.
    """
    s, k, ls = (run.by_role(role) for role in STUDENT_ROLES)
    pa, pd = PAPER_TOP1_PERCENT, PAPER_DETECTORS
    pe = PAPER_ENTROPY

    def acc_gap(m: ModelResult) -> str:
        return f"{_acc(m)} vs {_acc(s)} ({_signed(100 * (m.top1 - s.top1), '.2f')} pp)"

    def det_gap(m: ModelResult, category: str | None = None) -> str:
        a, b = ((m.num_detectors, s.num_detectors) if category is None
                else (m.detectors.get(category, 0), s.detectors.get(category, 0)))
        return f"{a} vs {b} ({_signed(a - b, 'd')})"

    obj = {m.name: m.detectors.get("object", 0) for m in (s, k, ls)}
    scene = {m.name: m.detectors.get("scene", 0) for m in (s, k, ls)}
    ent = {m.name: m.within_class_entropy for m in (s, k, ls)}
    return [
        Prediction("P1", "acc(f_KD) > acc(f_scratch)", f"{pa['kd']:.2f}% vs {pa['scratch']:.2f}%", "[FIG1]",
                   acc_gap(k), k.top1 > s.top1),
        Prediction("P2", "#det(f_KD) > #det(f_scratch)", f"{pd['kd']} vs {pd['scratch']}", "[FIG1]",
                   det_gap(k), k.num_detectors > s.num_detectors),
        Prediction("P3", "acc(f_LS) > acc(f_scratch)", f"{pa['ls']:.2f}% vs {pa['scratch']:.2f}%", "[FIG1]",
                   acc_gap(ls), ls.top1 > s.top1),
        Prediction("P4", "#det(f_LS) < #det(f_scratch)", f"{pd['ls']} vs {pd['scratch']}", "[FIG1]",
                   det_gap(ls), ls.num_detectors < s.num_detectors),
        Prediction("P5", "#det: KD > scratch > LS", f"{pd['kd']} > {pd['scratch']} > {pd['ls']}", "[FIG1]",
                   f"{k.num_detectors}, {s.num_detectors}, {ls.num_detectors}",
                   k.num_detectors > s.num_detectors > ls.num_detectors),
        Prediction("P6a", "#object detectors: KD > scratch", "direction only, no numbers", "[BLOG]",
                   det_gap(k, "object"), obj[k.name] > obj[s.name]),
        Prediction("P6b", "#object detectors: LS < scratch", "direction only, no numbers", "[BLOG]",
                   det_gap(ls, "object"), obj[ls.name] < obj[s.name]),
        Prediction("P6c", "#scene detectors: LS > scratch", "direction only, no numbers", "[BLOG]",
                   det_gap(ls, "scene"), scene[ls.name] > scene[s.name]),
        Prediction("P7", "within-class entropy: KD > scratch > LS",
                   f"{pe['kd']:.4f} > {pe['scratch']:.4f} > {pe['ls']:.4f}", "[SUM]",
                   f"{ent[k.name]:.4f}, {ent[s.name]:.4f}, {ent[ls.name]:.4f}",
                   ent[k.name] > ent[s.name] > ent[ls.name]),
    ]


# --------------------------------------------------------------------------- REPRODUCTION.md


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def _header_section(params: Params, run: RunResults) -> str:
    """What was run: data, models, recipes, dissection settings, seed, validation."""
    teachers = ", ".join(f"`{name}` {_arch(params, name)}" for name in params.teachers)
    students = "; ".join(
        [f"`{name}` label smoothing \u03b5 = {spec.label_smoothing:g}" for name, spec in params.students.items()]
        + [f"`{name}` KD from `{spec.teacher}`, T = {spec.temperature:g}, \u03b1 = {spec.alpha:g} "
           f"(paper's form: weight of the distillation term)" for name, spec in params.distilled.items()])
    roles = ", ".join(f"{PAPER_NOTATION[role]} = `{name}`" for role, name in run.roles.items())
    validation = {True: "passed", False: "**did not pass**", None: "unknown (the report has no `success` key)"}
    data = ("the concept world (synthetic, generated by `kdinterp world generate`)" if params.data.world_file
            else f"ImageFolder data at `{params.data.train_dir}`")
    recipe = params.student_recipe.optim
    return "\n".join([
        "# Reproduction report: Han et al., ICML 2023",
        "",
        "Generated by stage `figures` (`kdinterp figures`) from this run's `outputs/`; do not edit by hand. "
        "Paper values are targets from `research/paper.md` (ImageNet, ResNet-18), shown for reference only.",
        "",
        f"- **Data:** {data}; top-1 on {run.by_role('scratch').val_images} validation images.",
        f"- **Teacher(s):** {teachers}.",
        f"- **Students:** {_arch(params, run.roles['scratch'])}, {recipe.epochs} epochs, batch {recipe.batch_size}, "
        f"lr {recipe.lr:g} ({recipe.schedule}); {students}.",
        f"- **Paper roles:** {roles}.",
        f"- **Dissection:** `{run.layer}`, quantile {run.quantile:g}, IoU threshold {run.iou_threshold:g}, "
        f"{run.probe_images} probe images (Broden layout), categories {', '.join(run.categories)}.",
        f"- **Validation:** the dissection tables {validation[run.validation_success]} Great Expectations "
        f"validation ({run.validation_tables} tables, `outputs/validation/dissection.json`).",
        f"- **Seed:** {params.seed}. This is one run with one seed, so differences between models are not "
        "tested for significance; that needs several seeds.",
    ])


def _results_section(run: RunResults) -> str:
    """One row per model: role, top-1, detectors, unique concepts, entropy, teacher agreement."""
    with_mass = all(m.same_type_mass is not None for m in run.models.values())
    header = ["model", "role", "architecture", "top-1", "detectors", "unique concepts",
              "within-class entropy (nats)", "teacher agreement"]
    if with_mass:
        header.append("same-type mass")
    rows = []
    for m in run.models.values():
        role = m.kind if m.role in (None, m.kind) else f"{m.kind}, paper's {PAPER_NOTATION[m.role]}"
        agreement = ("reference" if m.name == run.reference_teacher
                     else "n/a" if m.teacher_agreement is None else f"{m.teacher_agreement:.3f}")
        row = [f"`{m.name}`", role, m.arch, _acc(m), f"{m.num_detectors} / {m.num_units}",
               str(m.num_unique_concepts), f"{m.within_class_entropy:.4f}", agreement]
        if with_mass:
            row.append(f"{m.same_type_mass:.3f}")
        rows.append(row)
    notes = ["Detectors: units of the dissected layer whose best concept has IoU \u2265 "
             f"{run.iou_threshold:g}, out of the layer's units. Teacher agreement: Pearson correlation of the "
             f"model's and the teacher's (`{run.reference_teacher}`) class-mean non-target predictions."]
    if with_mass:
        chance = "" if run.same_type_mass_chance is None else f" (chance {run.same_type_mass_chance:.3f})"
        notes.append(f"Same-type mass: share of non-target probability on classes of the same object type{chance}.")
    return "\n".join(["## Results (this run)", "", _table(header, rows), "", " ".join(notes), "",
                      f"![Figure 1 counterpart]({FIG1_FILE})", "",
                      f"![Detectors per category]({PER_CATEGORY_FILE})"])


def _predictions_section(predictions: list[Prediction]) -> str:
    """Predictions P1-P7 of research/paper.md §7 with the paper's values, ours, and a verdict."""
    rows = [[p.pid, p.claim, f"{p.paper} {p.evidence}", p.ours, f"**{p.verdict}**"] for p in predictions]
    held = sum(p.holds for p in predictions)
    return "\n".join([
        "## Paper predictions (research/paper.md \u00a77)", "",
        f"{held} of {len(predictions)} hold in this run. Verdicts are strict inequalities on this run's "
        "numbers (a tie does not hold); P6 is checked part by part.", "",
        _table(["ID", "prediction", f"{PAPER_LABEL} [evidence]", "this run", "verdict"], rows),
    ])


def _caveats_section(params: Params, run: RunResults) -> str:
    """What limits the comparison with the paper, with this run's numbers."""
    s = run.by_role("scratch")
    se = 100 * math.sqrt(s.top1 * (1 - s.top1) / s.val_images)
    students = [run.by_role(role) for role in STUDENT_ROLES]
    share = ", ".join(f"{m.label} {100 * m.num_detectors / m.num_units:.0f}%" for m in students)
    paper_share = ", ".join(f"{ROLE_LABELS[r]} {100 * PAPER_DETECTORS[r] / PAPER_NUM_UNITS:.0f}%"
                            for r in STUDENT_ROLES)
    data = ("synthetic data (the concept world, with its own concepts in Broden layout), not ImageNet and "
            "Broden" if params.data.world_file else f"the data in `{params.data.train_dir}`")
    return "\n".join([
        "## Caveats", "",
        f"These are small models (students: {s.arch}) trained briefly on {data}, so they test the paper's "
        f"directions, not its values. Detectors are counted over the {s.num_units} units of the students' "
        f"`{run.layer}`, not ResNet-18's {PAPER_NUM_UNITS}: compare shares ({share} of units here; "
        f"{paper_share} in the paper), not counts. The probe set has {run.probe_images} images (Broden: 63,305). "
        "Entropies depend on the number of classes, so only their ordering is comparable. "
        f"Everything comes from a single seed ({params.seed}); with {s.val_images} validation images, top-1 "
        f"alone has a sampling standard error of about {se:.1f} pp, so accuracy gaps below about "
        f"{2 * se:.1f} pp are within evaluation noise, before any seed-to-seed variation.",
    ])


def reproduction_markdown(params: Params, run: RunResults) -> str:
    """The text of ``REPRODUCTION.md``: header, results table, predictions P1-P7, caveats."""
    sections = [_header_section(params, run), _results_section(run),
                _predictions_section(evaluate_predictions(run)), _caveats_section(params, run)]
    return "\n\n".join(sections) + "\n"


# --------------------------------------------------------------------------- stage


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
