"""Measure ``evaluation`` (stage ``evaluate_*@``): classification metrics on val, and the val logits.

Outputs per model under ``outputs/evaluation/<key>/``: ``metrics.json`` (:class:`EvaluationSummary`:
top-1, top-5, NLL, ECE; committed;
headline numbers in ``outputs/metrics/``) and ``predictions.npz`` (the val logits
``(N, K)`` float32 and targets ``(N,)`` int64, read by the similarity measure).
"""

from __future__ import annotations

from dataclasses import dataclass

from kdinterp.core.params import Params
from kdinterp.core.records import Record
from kdinterp.core.study import Layout, Model
from kdinterp.measures.base import Measure, Output

__all__ = ["MEASURE", "METRICS", "PREDICTIONS", "EvaluationSummary"]

METRICS = Output("metrics.json", cache=False, description="top-1, top-5, NLL, ECE on val")
PREDICTIONS = Output("predictions.npz", description="val logits and targets")


@dataclass(frozen=True)
class EvaluationSummary(Record):
    """``metrics.json``: one model's classification metrics on the validation split.

    Attributes:
        model, seed, group, role: which model (its name, seed, group kind and paper role or ``""``).
        top1, top5: accuracies, fractions in [0, 1].
        nll: mean negative log-likelihood, nats.
        ece: expected calibration error, 15 equal-width bins (Guo et al., ICML 2017).
        num_images: validation images.
    """

    model: str
    seed: int
    group: str
    role: str
    top1: float
    top5: float
    nll: float
    ece: float
    num_images: int


def run(params: Params, model: Model, layout: Layout) -> EvaluationSummary:
    """Evaluate ``model`` (:func:`kdinterp.measures.evaluation.compute.evaluate_model`)."""
    from kdinterp.measures.evaluation.compute import evaluate_model

    return evaluate_model(params, model, layout)


def read(params: Params, layout: Layout, model: Model) -> EvaluationSummary:
    """The model's ``metrics.json``.

    Raises:
        FileNotFoundError, StaleOutputError: missing, or written by other code or for another seed.
    """
    summary = EvaluationSummary.read(MEASURE.path(layout, model, METRICS), MEASURE.stage_of(model))
    MEASURE.check_seed(layout, model, METRICS, summary.seed)
    return summary


MEASURE = Measure(
    name="evaluation", stage="evaluate", help="Evaluate model KEY on the validation split: top-1, top-5, NLL, ECE.",
    outputs=(PREDICTIONS, METRICS), run=run, read=read, module="kdinterp.measures.evaluation.compute")
