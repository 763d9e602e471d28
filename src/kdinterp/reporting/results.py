"""The results of one pipeline run, per (model, seed), as read by stages ``figures`` and ``report``.

Every measure of the registry (:data:`kdinterp.measures.registry.MEASURES`) is read for every
model of the study (every seed) with the measure's own ``read``, from the paths of its declared
outputs: nothing is recomputed here, and no file's keys are restated. A :class:`ModelResult`
holds those numbers by measure name (``result.dissection.num_detectors``,
``result.evaluation.top1``, ``result.similarity.within_class_entropy``; None where a measure does
not apply, e.g. DiffROAR of a teacher). Also read: the ``validate`` stage's verdict on the
dissection tables, and the environment that trained each model (``training/<key>.env.json``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdinterp.core import study
from kdinterp.core.errors import KdinterpError, UnknownModelError
from kdinterp.core.io import read_json
from kdinterp.core.params import Params, ParamsError
from kdinterp.core.records import StaleOutputError, require_input
from kdinterp.measures.registry import MEASURES
from kdinterp.measures.similarity import read_all as read_similarity
from kdinterp.reporting.paper import ROLE_LABELS, model_colors, ordered_models

__all__ = ["FiguresInputError", "Metric", "ModelResult", "RunResults", "load_run"]


class FiguresInputError(StaleOutputError):
    """An input of stage ``figures`` is incomplete or stale; the message names the file and the stage to rerun."""


@dataclass(frozen=True)
class ModelResult:
    """Everything the figures and the report need about one model at one seed.

    Attributes:
        key: :attr:`kdinterp.core.study.Model.key` (``kd-0``; ``teacher`` for a teacher).
        name: the model's key in params.yaml (shared by its seeds).
        seed: the model's seed.
        per_seed: one model per student seed (False for a teacher, which has its own seed).
        kind: ``teacher``, ``student``, ``distilled``, ``self_distilled`` or ``control`` (its group's kind).
        role: its paper role (``teacher, scratch, kd, ls``), or None.
        arch: e.g. ``resnet18, width 16``.
        measures: measure name -> what the measure's ``read`` returned for this model (None where the
            measure does not apply); also read as attributes: ``result.dissection``.
    """

    key: str
    name: str
    seed: int
    per_seed: bool
    kind: str
    role: str | None
    arch: str
    measures: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        """A measure's numbers: ``result.dissection`` is ``result.measures["dissection"]``.

        Raises:
            AttributeError: no field and no measure of that name.
        """
        measures = self.__dict__.get("measures", {})
        if name in measures:
            return measures[name]
        raise AttributeError(f"ModelResult has no measure '{name}'")

    @property
    def label(self) -> str:
        """``KD`` for a role model (``KD (kd_t8)`` when its name differs), else the model name (no seed)."""
        if self.role is None:
            return self.name
        base = ROLE_LABELS[self.role]
        return base if self.name == self.role else f"{base} ({self.name})"


#: A measure of a model at one seed, e.g. ``lambda m: 100 * m.evaluation.top1``.
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
        environments: model key -> the environment that produced its weights
            (``training/<key>.env.json``, :func:`kdinterp.core.runtime.environment_record`).
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
            UnknownModelError: no model ``name`` in this run.
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
            UnknownModelError: no such model.
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


def _model_result(params: Params, layout: study.Layout, model: study.Model) -> ModelResult:
    """One (model, seed): every measure's numbers, each read by its measure."""
    measures = {m.name: m.read(params, layout, model) if m.applies(model) else None for m in MEASURES}
    return ModelResult(key=model.key, name=model.name, seed=model.seed, per_seed=model.group.per_seed,
                       kind=model.group.kind, role=model.role if model.role in study.ROLES else None,
                       arch=f"{model.arch.arch}, width {model.arch.width}", measures=measures)


def load_run(params: Params, layout: study.Layout) -> RunResults:
    """Read every input of the ``figures`` stage: one :class:`ModelResult` per study model and seed.

    Args:
        params: the run's parameters (models, seeds, roles, IoU threshold).
        layout: where the outputs are (``study.Layout(Path("outputs"))``).

    Returns:
        The run's results, keyed by :attr:`kdinterp.core.study.Model.key`.

    Raises:
        ParamsError: a paper role has no model in ``params.paper_models``.
        StaleOutputError: a file lacks a key or a model, or was written for another seed or with
            other settings than params.yaml (stale outputs); the message names the stage to rerun.
        FileNotFoundError: an input file is missing; the message names the stage that writes it
            (``evaluate_student@scratch-0``, ``dissect_distilled@kd-2`` ...).
    """
    missing = [role for role in study.ROLES if role not in params.paper_models]
    if missing:
        raise ParamsError(f"params.yaml paper_models: no model for role(s) {', '.join(missing)}; stage figures "
                          f"needs one model per role in {', '.join(study.ROLES)}")
    roles = {role: params.paper_models[role] for role in study.ROLES}
    order = ordered_models(params)
    results = {model.key: _model_result(params, layout, model) for model in order}
    similarity = read_similarity(layout)
    validation = read_json(require_input(layout.dissection_validation, "validate", "figures"))
    reference = results[next(m.key for m in order if m.name == roles["scratch"])].dissection
    return RunResults(
        models=results,
        roles=roles,
        colors=model_colors(params),
        seeds=tuple(params.seeds),
        reference_teacher=similarity.reference_teacher,
        layer=reference.layer,
        quantile=reference.quantile,
        iou_threshold=params.dissection.iou_threshold,
        probe_images=reference.num_images,
        categories=tuple(params.dissection.categories),
        validation_success=validation.get("success"),
        validation_tables=len(validation.get("tables", [])),
        same_type_mass_chance=similarity.same_type_mass_chance,
        environments={model.key: _environment(layout, model) for model in order},
    )


def _environment(layout: study.Layout, model: study.Model) -> dict | None:
    """The environment that trained ``model`` (``training/<key>.env.json``).

    Raises:
        FileNotFoundError: the file is missing (the message names the train stage).
        KdinterpError: it is not valid JSON.
    """
    path = require_input(layout.environment(model), model.stage("train"), "figures")
    try:
        return read_json(path)
    except ValueError as err:
        raise KdinterpError(f"{err}; rerun `dvc repro -f -s {model.stage('train')}`") from None
