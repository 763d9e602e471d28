"""The results of one pipeline run, per (model, seed), as read by stages ``figures`` and ``report``.

Inputs (everything under the ``outputs`` directory, at the paths of :class:`kdinterp.core.study.Layout`;
nothing is recomputed here), for every model of :func:`kdinterp.core.study.models` (every seed):

* ``layout.metrics(model)`` (stage ``evaluate_*@<key>``): top-1 accuracy on val.
* ``layout.similarity`` (stage ``similarity``): within-class entropy, teacher agreement, per key.
* ``layout.dissection(model, Layout.SUMMARY)`` (stage ``dissect_*@<key>``): concept detectors.
* ``layout.dissection_validation`` (stage ``validate``): whether the dissection tables passed.
* ``layout.saliency(model, Layout.SUMMARY)`` (stage ``saliency_*@<key>``), when params.yaml has a
  ``saliency`` section: five-band scores and object mass shares (P12, P14).

Also the paper's reference values (``research/paper.md``), which are shown beside ours and never
written into our measurements, and the roles and colours shared by every figure and the report
(one colour per model *name*: every seed of a model shares it).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdinterp.core import study
from kdinterp.core.errors import KdinterpError, UnknownModelError
from kdinterp.core.io import read_json
from kdinterp.training.models import CheckpointError, read_header
from kdinterp.core.params import Params, ParamsError

__all__ = ["FIG1_FILE", "PER_CATEGORY_FILE", "REPRODUCTION_FILE", "SENSITIVITY_FILE", "FiguresInputError", "ModelResult", "RunResults",
           "load_run", "model_colors", "model_order", "ordered_models", "require_input", "signed"]

#: The files stage ``figures`` writes into ``paper_figures/``.
FIG1_FILE = "fig1_accuracy_detectors.png"
PER_CATEGORY_FILE = "fig_detectors_per_category.png"
SENSITIVITY_FILE = "fig_sensitivity.png"
REPRODUCTION_FILE = "REPRODUCTION.md"

#: The paper's roles, in the order of its Figure 1: (a) scratch, (b) KD, (c) LS.
STUDENT_ROLES: tuple[str, ...] = tuple(role for role in study.ROLES if role != "teacher")
ROLES: tuple[str, ...] = study.ROLES

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


class FiguresInputError(KdinterpError, ValueError):
    """An input of stage ``figures`` is incomplete or stale; the message names the file and the stage to rerun."""


@dataclass(frozen=True)
class ModelResult:
    """Everything the figures and the report need about one model at one seed.

    Attributes:
        key: :attr:`kdinterp.core.study.Model.key` (``kd-0``; ``teacher`` for a teacher).
        name: the model's key in params.yaml (shared by its seeds).
        seed: the model's seed.
        per_seed: one model per student seed (False for a teacher, which has its own seed).
        kind: ``teacher``, ``student``, ``distilled`` or ``self_distilled`` (its group's kind).
        role: its paper role (``teacher, scratch, kd, ls``), or None.
        arch: e.g. ``resnet18, width 16``.
        top1: top-1 accuracy on val, a fraction.
        val_images: validation images behind ``top1``.
        num_units: units of the dissected layer.
        num_detectors: units whose best concept has IoU >= the threshold.
        num_unique_concepts: distinct concepts among the detectors.
        detectors: detectors per category.
        within_class_entropy: nats, candidate (a) of research/paper.md §5 (:mod:`kdinterp.measures.class_similarity`).
        nontarget_entropy: nats, candidate (b): the non-target classes only, renormalised.
        teacher_agreement: correlation with the reference teacher's class similarities (None for it).
        same_type_mass: share of non-target probability on same-type classes, when measured.
        probe_bootstrap: the summary's ``probe_bootstrap`` (detectors over resampled probe sets:
            ``mean``, ``sd``, ``low``, ``high``, ``replicates``, ``blocks``).
        sensitivity: ``(basis, quantile, iou_threshold) -> (num_detectors, mean_best_iou)`` from
            ``sensitivity.csv`` (:mod:`kdinterp.dissection.sensitivity`).
        five_band: method -> {pixel_acc, precision, recall, fpr}, means over val images
            (:mod:`kdinterp.measures.five_band`); empty without a ``saliency`` section.
        object_mass: map -> mean share of its mass inside the object (``loss_gradient``,
            ``activation``, each method; None where every map was zero); empty without ``saliency``.
        diffroar: mean DiffROAR over ``diffroar.fractions``, a fraction (stage ``diffroar_*@``;
            :mod:`kdinterp.measures.roar`); None for models without a diffroar stage.
    """

    key: str
    name: str
    seed: int
    per_seed: bool
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
    nontarget_entropy: float
    teacher_agreement: float | None
    same_type_mass: float | None
    probe_bootstrap: dict[str, float]
    sensitivity: dict[tuple[str, float, float], tuple[int, float]]
    five_band: dict[str, dict[str, float]] = field(default_factory=dict)
    object_mass: dict[str, float | None] = field(default_factory=dict)
    diffroar: float | None = None

    @property
    def label(self) -> str:
        """``KD`` for a role model (``KD (kd_t8)`` when its name differs), else the model name (no seed)."""
        if self.role is None:
            return self.name
        base = ROLE_LABELS[self.role]
        return base if self.name == self.role else f"{base} ({self.name})"


#: A measure of a model at one seed, e.g. ``lambda m: 100 * m.top1``.
Metric = Callable[[ModelResult], float]


@dataclass(frozen=True)
class RunResults:
    """One pipeline run, as read from ``outputs/``.

    Attributes:
        models: every (model, seed) of the study, by :attr:`ModelResult.key`: the role models first
            (teacher, scratch, kd, ls), then the others in params order; a model's seeds in
            ``seeds`` order.
        roles: paper role -> model name (the role applies to every seed of that name).
        colors: model name -> colour, the same in every figure and for every seed.
        seeds: the student seeds (``params.seeds``).
        reference_teacher: the key of the model that teacher agreement is measured against.
        layer, quantile, iou_threshold, probe_images: the dissection settings, from summary.json.
        categories: concept categories, in params order.
        validation_success: the ``validate`` report's ``success`` (None when it has no such key).
        validation_tables: how many tables the ``validate`` report covers.
        same_type_mass_chance: same-type mass of a model blind to class similarity, when measured.
        environments: model key -> the environment that produced its weights (the model header's
            ``info.environment``, :func:`kdinterp.core.runtime.environment_record`; None if not recorded).
    """

    models: dict[str, ModelResult]
    roles: dict[str, str]
    colors: dict[str, str]
    seeds: tuple[int, ...]
    reference_teacher: str | None
    layer: str
    quantile: float
    iou_threshold: float
    probe_images: int
    categories: tuple[str, ...]
    validation_success: bool | None
    validation_tables: int
    same_type_mass_chance: float | None
    environments: dict[str, dict | None]

    @property
    def names(self) -> list[str]:
        """Model names in the order of :attr:`models` (each once)."""
        return list(dict.fromkeys(m.name for m in self.models.values()))

    def seeds_of(self, name: str) -> list[ModelResult]:
        """Every seed of model ``name``, in seed order (one result for a teacher).

        Raises:
            KeyError: no model ``name`` in this run.
        """
        found = [m for m in self.models.values() if m.name == name]
        if not found:
            raise UnknownModelError(f"no model '{name}' in this run ({', '.join(self.names)})")
        return found

    def by_role(self, role: str) -> list[ModelResult]:
        """Every seed of the model that plays ``role`` in the paper."""
        return self.seeds_of(self.roles[role])

    def values(self, name: str, metric: Metric) -> np.ndarray:
        """``metric`` of every seed of model ``name``: float64 ``(n,)``, in seed order."""
        return np.array([metric(m) for m in self.seeds_of(name)], dtype=np.float64)

    def aligned(self, names: list[str] | tuple[str, ...], metric: Metric) -> list[np.ndarray]:
        """``metric`` of several models, aligned by seed for paired comparisons.

        Per-seed models give their common seeds, in seed order: float64 arrays of one shape
        ``(n,)``. A teacher (one seed of its own) gives its single value, shape ``(1,)``, to be
        compared against each seed of the others (:func:`kdinterp.core.statistics.paired_difference`).

        Raises:
            KeyError: no such model.
        """
        found = [self.seeds_of(name) for name in names]
        per_seed = [results for results in found if results[0].per_seed]
        common = [s for s in self.seeds if all(s in {m.seed for m in results} for results in per_seed)]
        out = []
        for results in found:
            by_seed = {m.seed: metric(m) for m in results}
            values = [by_seed[s] for s in common] if results[0].per_seed else list(by_seed.values())
            out.append(np.array(values, dtype=np.float64))
        return out

    def paired(self, a: str, b: str, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
        """``metric`` of models ``a`` and ``b`` aligned by seed (see :meth:`aligned`)."""
        left, right = self.aligned([a, b], metric)
        return left, right


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


def _arch(model: study.Model) -> str:
    return f"{model.arch.arch}, width {model.arch.width}"


def model_order(params: Params) -> list[str]:
    """Model names for figures and the report: the paper's roles first (teacher, scratch, kd, ls), then
    the rest in params order (:func:`kdinterp.core.study.models`).

    Raises:
        ParamsError: see :func:`kdinterp.core.study.check`.
    """
    roles = [params.paper_models[role] for role in ROLES if role in params.paper_models]
    return list(dict.fromkeys([*roles, *(m.name for m in study.models(params))]))


def model_colors(params: Params) -> dict[str, str]:
    """Model name -> colour: ``ROLE_COLORS`` for the paper's roles, ``EXTRA_COLORS`` in order for the rest.

    Every seed of a model has its name's colour.
    """
    role_of = {name: role for role, name in params.paper_models.items() if role in ROLES}
    extra = itertools.cycle(EXTRA_COLORS)
    return {name: ROLE_COLORS[role_of[name]] if name in role_of else next(extra) for name in model_order(params)}


def ordered_models(params: Params) -> list[study.Model]:
    """Every study model (:func:`kdinterp.core.study.models`), grouped by name in :func:`model_order`
    (roles first), each name's seeds in ``params.seeds`` order: the order of figures, tables and the report.

    Raises:
        ParamsError: see :func:`kdinterp.core.study.check`.
    """
    rank = {name: i for i, name in enumerate(model_order(params))}
    seed_rank = {seed: i for i, seed in enumerate(params.seeds)}
    return sorted(study.models(params), key=lambda m: (rank[m.name], seed_rank.get(m.seed, -1) if m.group.per_seed
                                                       else -1))


def _sensitivity(path: Path, stage: str) -> dict[tuple[str, float, float], tuple[int, float]]:
    """``sensitivity.csv`` as ``(basis, quantile, iou_threshold) -> (num_detectors, mean_best_iou)``."""
    table = pd.read_csv(require_input(path, stage, "figures"))
    missing = [c for c in study.SENSITIVITY_COLUMNS if c not in table.columns]
    if missing:
        raise FiguresInputError(f"{path}: columns {missing} are missing; rerun `dvc repro -f -s {stage}`")
    return {(row.basis, round(float(row.quantile), 10), round(float(row.iou_threshold), 10)):
            (int(row.num_detectors), float(row.mean_best_iou)) for row in table.itertuples()}


def _check_seed(data: dict, path: Path, stage: str, model: study.Model) -> None:
    seed = _get(data, "seed", path, stage)
    if seed != model.seed:
        raise FiguresInputError(f"{path}: seed {seed} differs from {model.key}'s seed {model.seed} (stale output); "
                                f"rerun `dvc repro -s {stage}`")


def _model_result(params: Params, layout: study.Layout, model: study.Model,
                  sim_models: dict) -> tuple[ModelResult, dict]:
    """One (model, seed)'s result and its summary.json."""
    metrics_path, summary_path = layout.metrics(model), layout.dissection(model, study.Layout.SUMMARY)
    evaluate, dissect = model.stage("evaluate"), model.stage("dissect")
    metrics, summary = _read(metrics_path, evaluate), _read(summary_path, dissect)
    _check_seed(metrics, metrics_path, evaluate, model)
    _check_seed(summary, summary_path, dissect, model)
    if model.key not in sim_models:
        raise FiguresInputError(f"{layout.similarity}: no entry for model '{model.key}'; rerun stage similarity "
                                "(`dvc repro -f -s similarity`)")
    sim = sim_models[model.key]
    threshold = _get(summary, "iou_threshold", summary_path, dissect)
    if not math.isclose(threshold, params.dissection.iou_threshold):
        raise FiguresInputError(f"{summary_path}: iou_threshold {threshold} differs from params.yaml "
                                f"dissection.iou_threshold {params.dissection.iou_threshold}; "
                                f"rerun `dvc repro -s {dissect}`")
    result = ModelResult(
        key=model.key,
        name=model.name,
        seed=model.seed,
        per_seed=model.group.per_seed,
        kind=model.group.kind,
        role=model.role if model.role in ROLES else None,
        arch=_arch(model),
        top1=float(_get(metrics, "top1", metrics_path, evaluate)),
        val_images=int(_get(metrics, "num_images", metrics_path, evaluate)),
        num_units=int(_get(summary, "num_units", summary_path, dissect)),
        num_detectors=int(_get(summary, "num_detectors", summary_path, dissect)),
        num_unique_concepts=int(_get(summary, "num_unique_concepts", summary_path, dissect)),
        detectors={c: int(n) for c, n in _get(summary, "detectors", summary_path, dissect).items()},
        within_class_entropy=float(_get(sim, "within_class_entropy", layout.similarity, "similarity")),
        nontarget_entropy=float(_get(sim, "nontarget_entropy", layout.similarity, "similarity")),
        teacher_agreement=sim.get("teacher_agreement"),
        same_type_mass=sim.get("same_type_mass"),
        probe_bootstrap=dict(_get(summary, "probe_bootstrap", summary_path, dissect)),
        sensitivity=_sensitivity(layout.dissection(model, study.Layout.SENSITIVITY), dissect),
        **_saliency(params, layout, model),
        **_diffroar(params, layout, model),
    )
    return result, summary


def _saliency(params: Params, layout: study.Layout, model: study.Model) -> dict[str, dict]:
    """``five_band`` and ``object_mass`` of the model's saliency summary.json (nothing without a ``saliency`` section)."""
    if params.saliency is None:
        return {}
    path, stage = layout.saliency(model, study.Layout.SUMMARY), model.stage("saliency")
    summary = _read(path, stage)
    _check_seed(summary, path, stage, model)
    five_band = _get(summary, "five_band", path, stage)
    missing = sorted(set(params.saliency.methods) - set(five_band))
    if missing:
        raise FiguresInputError(f"{path}: no five-band scores for {missing} (saliency.methods); rerun `dvc repro -s {stage}`")
    return {"five_band": five_band, "object_mass": dict(_get(summary, "object_mass", path, stage))}


def _diffroar(params: Params, layout: study.Layout, model: study.Model) -> dict[str, float]:
    """``diffroar``: the model's mean DiffROAR over k (stage ``diffroar_*@``); nothing for other groups."""
    if model.group.section not in study.DIFFROAR_SECTIONS:
        return {}
    path, stage = layout.diffroar(model, study.Layout.SUMMARY), model.stage("diffroar")
    summary = _read(path, stage)
    _check_seed(summary, path, stage, model)
    grid = sorted(float(k) for k in _get(summary, "by_k", path, stage))
    if grid != sorted(params.diffroar.fractions) or summary.get("method") != params.diffroar.method:
        raise FiguresInputError(f"{path}: k grid {grid} / method {summary.get('method')} differ from params.yaml "
                                f"diffroar; rerun `dvc repro -s {stage}`")
    return {"diffroar": float(_get(summary, "diffroar_mean", path, stage))}


def load_run(params: Params, layout: study.Layout) -> RunResults:
    """Read every input of the ``figures`` stage: one :class:`ModelResult` per study model and seed.

    Args:
        params: the run's parameters (models, seeds, roles, IoU threshold).
        layout: where the outputs are (``study.Layout(Path("outputs"))``).

    Returns:
        The run's results, keyed by :attr:`kdinterp.core.study.Model.key`.

    Raises:
        ParamsError: a paper role has no model in ``params.paper_models``, or the params fail
            :func:`kdinterp.core.study.check`.
        FiguresInputError: a file lacks a key or a model, or was written for another seed, or a
            dissection used another IoU threshold than params.yaml (stale outputs).
        FileNotFoundError: an input file is missing; the message names the stage that writes it
            (``evaluate_student@scratch-0``, ``dissect_distilled@kd-2`` ...).
    """
    missing = [role for role in ROLES if role not in params.paper_models]
    if missing:
        raise ParamsError(f"params.yaml paper_models: no model for role(s) {', '.join(missing)}; stage figures "
                          f"needs one model per role in {', '.join(ROLES)}")
    roles = {role: params.paper_models[role] for role in ROLES}
    similarity = _read(layout.similarity, "similarity")
    sim_models = _get(similarity, "models", layout.similarity, "similarity")
    results, summaries = {}, {}
    for model in ordered_models(params):
        results[model.key], summaries[model.key] = _model_result(params, layout, model, sim_models)
    validation = _read(layout.dissection_validation, "validate")
    reference_model = next(m for m in ordered_models(params) if m.name == roles["scratch"])
    reference_path = layout.dissection(reference_model, study.Layout.SUMMARY)
    reference, reference_stage = summaries[reference_model.key], reference_model.stage("dissect")
    return RunResults(
        models=results,
        roles=roles,
        colors=model_colors(params),
        seeds=tuple(params.seeds),
        reference_teacher=similarity.get("reference_teacher"),
        layer=str(_get(reference, "layer", reference_path, reference_stage)),
        quantile=float(_get(reference, "quantile", reference_path, reference_stage)),
        iou_threshold=params.dissection.iou_threshold,
        probe_images=int(_get(reference, "num_images", reference_path, reference_stage)),
        categories=tuple(params.dissection.categories),
        validation_success=validation.get("success"),
        validation_tables=len(validation.get("tables", [])),
        same_type_mass_chance=similarity.get("same_type_mass_chance"),
        environments={model.key: _environment(layout.model_file(model), model.stage("train"))
                      for model in ordered_models(params)},
    )


def _environment(path: Path, stage: str) -> dict | None:
    """The ``info.environment`` of a model file's header (the header only; the weights are not read)."""
    try:
        header = read_header(require_input(path, stage, "figures"))
    except CheckpointError as err:
        raise FiguresInputError(str(err)) from err
    return header.get("info", {}).get("environment")


def signed(value: float, fmt: str) -> str:
    """``+37`` / ``-0.56``; the minus sign is a real one for print, and a value that rounds to 0 is ``+0``."""
    if float(f"{value:{fmt}}") == 0:
        value = abs(value)
    return f"{value:+{fmt}}".replace("-", "\u2212")
