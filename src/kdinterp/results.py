"""The results of one pipeline run, as read by stage ``figures`` from ``outputs/``.

Inputs (everything under the ``outputs`` directory; nothing is recomputed here):

* ``metrics/<model>.json`` (stage ``evaluate_*@<model>``): top-1 accuracy on val.
* ``metrics/similarity.json`` (stage ``similarity``): within-class entropy, teacher agreement.
* ``dissection/<model>/summary.json`` (stage ``dissect_*@<model>``): concept detectors of ``layer4``.
* ``validation/dissection.json`` (stage ``validate``): whether the dissection tables passed.

Also the paper's reference values (``research/paper.md``), which are shown beside ours and never
written into our measurements, and the roles and colours shared by every figure and the report.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdinterp.io import read_json
from kdinterp.params import Params, ParamsError

__all__ = ["FIG1_FILE", "PER_CATEGORY_FILE", "REPRODUCTION_FILE", "FiguresInputError", "ModelResult", "arch_label",
           "RunResults", "load_run", "model_colors", "model_kind", "model_order", "require_input", "signed",
           "stage_name"]

#: The files stage ``figures`` writes into ``paper_figures/``.
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
EXTRA_COLORS: tuple[str, ...] = (  # 16 distinct colours: the all_students profile has 15 more models
    "#1a9850", "#d73027", "#8c510a", "#c51b7d", "#01665e", "#4d4d4d", "#66bd63", "#f46d43",
    "#bf812d", "#de77ae", "#35978f", "#9e9ac8", "#a6d96a", "#fdae61", "#80cdc1", "#000000")
ROLE_LABELS: dict[str, str] = {"teacher": "Teacher", "scratch": "Scratch", "kd": "KD", "ls": "LS"}
#: The paper's notation for each role (research/paper.md §1).
PAPER_NOTATION: dict[str, str] = {"teacher": "teacher", "scratch": "f_scratch", "kd": "f_KD", "ls": "f_LS"}


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


def model_kind(params: Params, name: str) -> str:
    """``teacher``, ``student`` or ``distilled``: the params section (and stage group) of model ``name``."""
    return "teacher" if name in params.teachers else "student" if name in params.students else "distilled"


def stage_name(params: Params, name: str, step: str) -> str:
    """The DVC stage that writes ``step`` (``evaluate`` or ``dissect``) outputs of model ``name``."""
    return f"{step}_{model_kind(params, name)}@{name}"


def require_input(path: Path, stage: str, consumer: str) -> Path:
    """``path`` if it is a file.

    Raises:
        FileNotFoundError: it is missing; the message names ``stage``, which writes it, and how to
            run it (``consumer`` is the stage that needs it).
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing input of stage {consumer}; it is written by stage {stage} "
                                f"(run `dvc repro -s {stage}`, or `dvc repro` for everything)")
    return path


def _read(path: Path, stage: str) -> dict:
    """Read a JSON input of stage ``figures``, naming the stage that writes it when it is missing."""
    return read_json(require_input(path, stage, "figures"))


def _get(data: dict, key: str, path: Path, stage: str) -> Any:
    """``data[key]``, or a FiguresInputError naming the file and the stage to rerun."""
    if key not in data:
        raise FiguresInputError(f"{path}: key '{key}' is missing; rerun stage {stage} "
                                f"(`dvc repro -f -s {stage}`)")
    return data[key]


def arch_label(params: Params, name: str) -> str:
    """``resnet18, width 16``: the architecture of model ``name``."""
    model = params.teachers[name].model if name in params.teachers else params.student_recipe.model
    return f"{model.arch}, width {model.width}"


def model_order(params: Params) -> list[str]:
    """Model names for figures and the report: the paper's roles first (teacher, scratch, kd, ls), then the rest."""
    roles = [params.paper_models[role] for role in ROLES if role in params.paper_models]
    return list(dict.fromkeys([*roles, *params.model_names]))


def model_colors(params: Params) -> dict[str, str]:
    """Model name -> colour: ``ROLE_COLORS`` for the paper's roles, ``EXTRA_COLORS`` in order for the rest."""
    role_of = {name: role for role, name in params.paper_models.items() if role in ROLES}
    extra = itertools.cycle(EXTRA_COLORS)
    return {name: ROLE_COLORS[role_of[name]] if name in role_of else next(extra) for name in model_order(params)}


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
    order = model_order(params)
    similarity_path = outputs / "metrics" / "similarity.json"
    similarity = _read(similarity_path, "similarity")
    sim_models = _get(similarity, "models", similarity_path, "similarity")
    models, summaries = {}, {}
    for name in order:
        metrics_path = outputs / "metrics" / f"{name}.json"
        summary_path = outputs / "dissection" / name / "summary.json"
        evaluate, dissect = stage_name(params, name, "evaluate"), stage_name(params, name, "dissect")
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
            kind=model_kind(params, name),
            role=next((role for role, model in roles.items() if model == name), None),
            arch=arch_label(params, name),
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
    reference, reference_stage = summaries[roles["scratch"]], stage_name(params, roles["scratch"], "dissect")
    return RunResults(
        models=models,
        roles=roles,
        colors=model_colors(params),
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


def signed(value: float, fmt: str) -> str:
    """``+37`` / ``-0.56``; the minus sign is a real one for print."""
    return f"{value:+{fmt}}".replace("-", "\u2212")
