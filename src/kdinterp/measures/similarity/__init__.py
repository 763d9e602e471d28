"""Measure ``similarity`` (stage ``similarity``): class-similarity information in every model's val outputs.

Study-wide: one stage reads every model's val logits (``outputs/evaluation/<key>/predictions.npz``)
and writes ``outputs/similarity/summary.json`` (:class:`SimilaritySummary`; committed;
its headline numbers are in ``outputs/metrics/``): per model the within-class entropy under both candidate definitions of
research/paper.md §5, the agreement of its class similarities with the reference teacher's, and
(on the concept world) its non-target mass on same-type classes (:mod:`kdinterp.measures.similarity.scores`).
"""

from __future__ import annotations

from dataclasses import dataclass

from kdinterp.core.params import Params
from kdinterp.core.records import Record, StaleOutputError
from kdinterp.core.study import Layout, Model
from kdinterp.measures.base import Measure, Output

__all__ = ["MEASURE", "SUMMARY", "ModelSimilarity", "SimilaritySummary"]

SUMMARY = Output("summary.json", cache=False,
                 description="within-class entropy, teacher agreement, same-type mass per model")


@dataclass(frozen=True)
class ModelSimilarity(Record):
    """One model's class-similarity measures.

    Attributes:
        within_class_entropy: nats, candidate (a) of research/paper.md §5.
        nontarget_entropy: nats, candidate (b): the non-target classes only, renormalised.
        teacher_agreement: Pearson correlation with the reference teacher's class similarities
            (None for the reference itself, or without one).
        same_type_mass: share of non-target probability on same-type classes (None without a world file).
    """

    within_class_entropy: float
    nontarget_entropy: float
    teacher_agreement: float | None = None
    same_type_mass: float | None = None


@dataclass(frozen=True)
class SimilaritySummary(Record):
    """``summary.json``: every model's measures, by model key.

    Attributes:
        entropy_unit: ``nats``.
        reference_teacher: the key of the model teacher agreement is measured against (None: none).
        models: model key -> its measures.
        same_type_mass_chance: same-type mass of a model blind to class similarity (None without a world file).
    """

    entropy_unit: str
    reference_teacher: str | None
    models: dict[str, ModelSimilarity]
    same_type_mass_chance: float | None = None

    def to_json(self) -> dict:
        """The record as JSON, leaving out the keys that are None (as the stage has always written it)."""
        data = super().to_json()
        data["models"] = {k: {f: v for f, v in m.items() if v is not None} for k, m in data["models"].items()}
        return {k: v for k, v in data.items() if v is not None or k == "reference_teacher"}


def run(params: Params, layout: Layout) -> SimilaritySummary:
    """Measure every model (:func:`kdinterp.measures.similarity.compute.similarity_report`)."""
    from kdinterp.measures.similarity.compute import similarity_report

    return similarity_report(params, layout)


def read_all(layout: Layout) -> SimilaritySummary:
    """The study's ``summary.json``.

    Raises:
        FileNotFoundError, StaleOutputError: missing or written by other code.
    """
    return SimilaritySummary.read(MEASURE.path(layout, None, SUMMARY), MEASURE.stage)


def read(params: Params, layout: Layout, model: Model) -> ModelSimilarity:
    """``model``'s entry of the study's ``summary.json``.

    Raises:
        FileNotFoundError, StaleOutputError: missing, stale, or without an entry for the model.
    """
    summary = read_all(layout)
    if model.key not in summary.models:
        raise StaleOutputError(f"{MEASURE.path(layout, None, SUMMARY)}: no entry for model '{model.key}'; rerun stage "
                               "similarity (`dvc repro -f -s similarity`)")
    return summary.models[model.key]


MEASURE = Measure(
    name="similarity", stage="similarity", help="Class-similarity information in every model's outputs.",
    outputs=(SUMMARY,), run=run, read=read, module="kdinterp.measures.similarity.compute", per_model=False)
