"""Measure ``diffroar`` (stage ``diffroar_*@``): DiffROAR of a model's attributions (Shah et al., NeurIPS 2021; P13).

DiffROAR(k) = accuracy of an evaluator retrained on the top-k attributed pixels minus that on the
bottom-k (:mod:`kdinterp.measures.diffroar.evaluator`). Measured for the students (the teacher and
the untrained controls are not assessed; P13 compares KD with scratch). Output per model:
``outputs/diffroar/<key>/summary.json`` (:class:`DiffROARSummary`; committed;
headline numbers in ``outputs/metrics/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kdinterp.core.config import check_ranges, ranged
from kdinterp.core.params import SEED_MAX, Params, require
from kdinterp.core.records import Record
from kdinterp.core.study import Layout, Model
from kdinterp.measures.base import Measure, Output
from kdinterp.measures.saliency import METHODS

__all__ = ["MEASURE", "SUMMARY", "DiffROARParams", "DiffROARPoint", "DiffROARSummary", "EvaluatorRecord"]

SUMMARY = Output("summary.json", cache=False, description="per k: top-k and bottom-k accuracy, DiffROAR")


@dataclass(frozen=True)
class DiffROARParams:
    """DiffROAR of a model's attributions (stage ``diffroar_*@``; :mod:`kdinterp.measures.diffroar.evaluator`, Shah et al. 2021).

    ``method``: the attribution (:data:`kdinterp.measures.saliency.METHODS`), for the true class, of the assessed
    model on the training and validation images. ``fractions``: the ``k`` grid, the share of
    pixels kept in the top-k and bottom-k data sets, each in ``(0, 1)``. The evaluator
    (:class:`kdinterp.measures.diffroar.evaluator.Evaluator`, ``width`` channels in its first block) is trained for
    ``epochs`` with Adam at ``lr`` in batches of ``batch_size``; ``seed`` fixes its initialisation
    and batch order, the same for every model, so models differ only in their attributions.
    ``train_images``: training images used (attributed, masked, retrained on), evenly spread over
    the sorted file list, i.e. over the classes (null: all). ``attribution_batch_size``: images per
    attribution pass.
    """

    method: str = "input_gradient"
    fractions: tuple[float, ...] = ranged((0.2,), gt=0.0, lt=1.0)
    epochs: int = ranged(4, ge=1)
    batch_size: int = ranged(128, ge=1)
    lr: float = ranged(0.005, gt=0)
    seed: int = ranged(0, ge=0, le=SEED_MAX)
    width: int = ranged(16, ge=1)
    train_images: int | None = ranged(None, ge=1)
    attribution_batch_size: int = ranged(256, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        check_ranges(self)
        require(self.method in METHODS, "method",
               f"unknown '{self.method}'; use one of {list(METHODS)}")
        require(bool(self.fractions) and len(set(self.fractions)) == len(self.fractions), "fractions",
               f"give one or more distinct shares of pixels kept, got {list(self.fractions)}")


@dataclass(frozen=True)
class EvaluatorRecord(Record):
    """The evaluator that was retrained: its class and :class:`~kdinterp.measures.diffroar.evaluator.EvaluatorSettings`."""

    arch: str
    epochs: int
    batch_size: int
    lr: float
    seed: int
    width: int


@dataclass(frozen=True)
class DiffROARPoint(Record):
    """One k: the evaluator's val accuracy on the top-k and bottom-k pixels (fractions) and their difference."""

    acc_top: float
    acc_bottom: float
    diffroar: float


@dataclass(frozen=True)
class DiffROARSummary(Record):
    """``summary.json``: one model's DiffROAR.

    Attributes:
        model, seed, group, role: which model.
        method: the attribution assessed (``diffroar.method``).
        evaluator: the retrained evaluator.
        num_train, num_val: images it was retrained and evaluated on.
        fill: the value of masked pixels per channel (normalised units).
        by_k: ``"<k>"`` -> that k's accuracies.
        diffroar_mean: the mean of DiffROAR over k, a fraction: the number P13 compares.
    """

    model: str
    seed: int
    group: str
    role: str
    method: str
    evaluator: EvaluatorRecord
    num_train: int
    num_val: int
    fill: tuple[float, ...]
    by_k: dict[str, DiffROARPoint]
    diffroar_mean: float


def run(params: Params, model: Model, layout: Layout) -> DiffROARSummary:
    """DiffROAR of ``model`` (:func:`kdinterp.measures.diffroar.compute.diffroar_model`)."""
    from kdinterp.measures.diffroar.compute import diffroar_model

    return diffroar_model(params, model, layout)


def read(params: Params, layout: Layout, model: Model) -> DiffROARSummary | None:
    """The model's ``summary.json``; None for a model without a diffroar stage.

    Raises:
        FileNotFoundError, StaleOutputError: missing, or written with another k grid or method than params.yaml.
    """
    from kdinterp.core.records import StaleOutputError

    if not MEASURE.applies(model):
        return None
    path, stage = MEASURE.path(layout, model, SUMMARY), MEASURE.stage_of(model)
    summary = DiffROARSummary.read(path, stage)
    MEASURE.check_seed(layout, model, SUMMARY, summary.seed)
    grid = sorted(float(k) for k in summary.by_k)
    if grid != sorted(params.diffroar.fractions) or summary.method != params.diffroar.method:
        raise StaleOutputError(f"{path}: k grid {grid} / method {summary.method} differ from params.yaml "
                               f"diffroar; rerun `dvc repro -s {stage}`")
    return summary


MEASURE = Measure(
    name="diffroar", stage="diffroar",
    help="DiffROAR of model KEY: an evaluator retrained on its top-k vs bottom-k pixels.",
    outputs=(SUMMARY,), run=run, read=read, module="kdinterp.measures.diffroar.compute", section="diffroar",
    schema=DiffROARParams, required=False, default=DiffROARParams(), groups=("students", "distilled", "self_distilled"))
