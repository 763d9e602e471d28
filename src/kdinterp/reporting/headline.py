"""The study's DVC metrics: a few headline numbers per model, under the same keys for every model.

:data:`HEADLINE` is the one list of those keys. Stage ``figures`` writes one file per model and seed,
``outputs/metrics/<key>.json`` (:meth:`kdinterp.core.study.Layout.headline`), which ``dvc.yaml``
declares as the pipeline's only ``metrics``; every measure's own summary stays a plain output that the
figures and the report read. So ``dvc metrics show`` prints one row per model, ``dvc metrics diff``
shows what moved between two commits, and ``dvc exp show`` compares experiments on these columns.

Each number is a :class:`~kdinterp.reporting.quantities.Quantity` (the table the predictions and the
figures read), in its unit and rounded to its format; a key whose measure does not cover the model
(DiffROAR of a teacher, a study without a ``saliency`` section, a summary without the calibrated
detector) is ``null``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kdinterp.core import study
from kdinterp.core.io import write_json
from kdinterp.core.params import Params
from kdinterp.reporting.predictions import P12_METHOD
from kdinterp.reporting.quantities import QUANTITIES, Quantity, five_band
from kdinterp.reporting.results import ModelResult, RunResults

__all__ = ["HEADLINE", "Headline", "headline_numbers", "write_headline"]


@dataclass(frozen=True)
class Headline:
    """One headline metric.

    Attributes:
        key: its key in every ``metrics/<key>.json``, a column of ``dvc metrics show``.
        measure: the measure it is read from (:data:`kdinterp.measures.registry.MEASURES`); ``null``
            for a model that measure does not cover.
        quantity: how it is read from a model's results, its unit and format.
    """

    key: str
    measure: str
    quantity: Quantity

    def value(self, result: ModelResult) -> float | None:
        """The number of ``result`` rounded to :attr:`quantity`'s format; None where not measured (or NaN)."""
        if result.measures.get(self.measure) is None:
            return None
        value = float(self.quantity.value(result))
        return None if math.isnan(value) else round(value, int(self.quantity.fmt.strip(".f")))


def _p12(score: str) -> Quantity:
    """The five-band ``score`` of P12's saliency method, NaN where that method was not run."""
    quantity = five_band(P12_METHOD, score)
    return Quantity(quantity.name, quantity.unit, quantity.fmt,
                    lambda m: quantity.value(m) if P12_METHOD in m.saliency.five_band else math.nan)


#: The headline metrics, in the order of the README's table (``dvc metrics show`` sorts its columns by key).
HEADLINE: tuple[Headline, ...] = (
    Headline("top1", "evaluation", QUANTITIES["top1"]),
    Headline("top5", "evaluation", QUANTITIES["top5"]),
    Headline("detectors", "dissection", QUANTITIES["detectors"]),                # fixed IoU threshold
    Headline("calibrated", "dissection", QUANTITIES["calibrated_primary"]),      # the primary endpoint
    Headline("diffroar", "diffroar", QUANTITIES["diffroar"]),
    Headline("fb_pixel_acc", "saliency", _p12("pixel_acc")),                   # P12's five-band headline
    Headline("fb_fpr", "saliency", _p12("fpr")),
    Headline("entropy", "similarity", QUANTITIES["entropy"]),
    Headline("agreement", "similarity", QUANTITIES["teacher_agreement"]),
    Headline("same_type", "similarity", QUANTITIES["same_type_mass"]),
)


def headline_numbers(result: ModelResult) -> dict[str, float | None]:
    """Every :data:`HEADLINE` key of one model at one seed, in that order (None: not measured)."""
    return {headline.key: headline.value(result) for headline in HEADLINE}


def write_headline(params: Params, run: RunResults, layout: study.Layout) -> None:
    """Write ``metrics/<key>.json`` for every model and seed of the study, and remove any other file there
    (a model no longer in params.yaml).

    Args:
        params: the run's parameters (which models exist).
        run: their results (:func:`kdinterp.reporting.results.load_run`).
        layout: where the outputs are.
    """
    models = study.models(params)
    keep = {layout.headline(model) for model in models}
    if layout.headline_dir.is_dir():
        for stale in layout.headline_dir.glob("*.json"):
            if stale not in keep:
                stale.unlink()
    for model in models:
        write_json(layout.headline(model), headline_numbers(run.models[model.key]))
