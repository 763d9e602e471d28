"""The quantities that predictions, figures and the dose-response compare between models, each read once.

A :class:`Quantity` is one number of one model at one seed, read from the measures' results
(:class:`~kdinterp.reporting.results.ModelResult`), with its name, the unit of its differences and
its format, and for a count of the dissected layer's units the number of units it is out of (the
scale of an equivalence margin given as a share of units, ``params.verdicts``). :data:`QUANTITIES`
is the one table of them; the predictions
(:mod:`kdinterp.reporting.predictions`) name theirs by key, the dose-response curves draw the ones
it lists, and the sensitivity bands substitute :func:`detectors_at` for ``detectors``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kdinterp.measures.dissection import sensitivity_key
from kdinterp.reporting.results import Metric, ModelResult

__all__ = ["QUANTITIES", "Quantity", "calibrated_primary", "detectors_at", "five_band", "mean_best_iou",
           "object_mass"]


@dataclass(frozen=True)
class Quantity:
    """A per-seed number compared between models.

    Attributes:
        name: e.g. ``top-1``.
        unit: of its differences, e.g. ``pp``.
        fmt: format of its values and differences.
        value: the number of one model at one seed (NaN where the model was not measured).
        units: for a count of the dissected layer's units (detectors), the number of units it is out
            of, per model and seed; None for any other quantity (it then has no equivalence margin).
    """

    name: str
    unit: str
    fmt: str
    value: Metric
    units: Metric | None = None


def _num_units(m: ModelResult) -> float:
    return m.dissection.num_units


def _detectors_in(category: str) -> Quantity:
    return Quantity(f"#{category} detectors", "detectors", ".1f", lambda m: m.dissection.detectors.get(category, 0),
                    _num_units)


def _diffroar(m: ModelResult) -> float:
    return math.nan if m.diffroar is None else 100 * m.diffroar.diffroar_mean


def _optional(value: float | None) -> float:
    return math.nan if value is None else float(value)


def calibrated_primary(m: ModelResult, record: str = "calibrated") -> float:
    """The calibrated detector count of the primary categories (``dissection.calibrated.primary_categories``)
    of the dissection summary (``summary.json`` ``<record>.primary``, a mean over splits; ``record``
    ``calibrated_rotated``: in the rotated basis); NaN where the summary has none (not calibrated)."""
    calibrated = getattr(m.dissection.summary, record, None)
    return math.nan if calibrated is None else float(calibrated.primary)


#: Every quantity a prediction or a curve compares, by key.
QUANTITIES: dict[str, Quantity] = {
    "top1": Quantity("top-1", "pp", ".2f", lambda m: 100 * m.evaluation.top1),
    "top5": Quantity("top-5", "pp", ".2f", lambda m: 100 * m.evaluation.top5),
    "detectors": Quantity("#detectors", "detectors", ".1f", lambda m: m.dissection.num_detectors, _num_units),
    "calibrated_primary": Quantity("#detectors (calibrated, primary categories)", "detectors", ".1f",
                                   calibrated_primary, _num_units),
    "calibrated_primary_rotated": Quantity("#detectors (calibrated, primary categories, rotated basis)",
                                           "detectors", ".1f", lambda m: calibrated_primary(m, "calibrated_rotated"),
                                           _num_units),
    "object": _detectors_in("object"),
    "scene": _detectors_in("scene"),
    "entropy": Quantity("within-class entropy (a)", "nats", ".4f", lambda m: m.similarity.within_class_entropy),
    "nontarget_entropy": Quantity("within-class entropy (b)", "nats", ".4f",
                                  lambda m: m.similarity.nontarget_entropy),
    "teacher_agreement": Quantity("agreement with the reference teacher", "", ".3f",
                                  lambda m: _optional(m.similarity.teacher_agreement)),
    "same_type_mass": Quantity("same-type mass", "", ".3f", lambda m: _optional(m.similarity.same_type_mass)),
    "diffroar": Quantity("DiffROAR", "pp", ".2f", _diffroar),
}


def five_band(method: str, metric: str) -> Quantity:
    """A five-band score of ``method`` (:mod:`kdinterp.measures.saliency.five_band`), in percent."""
    return Quantity(f"five-band {metric} ({method})", "pp", ".2f",
                    lambda m: 100 * getattr(m.saliency.five_band[method], metric))


def object_mass(name: str) -> Quantity:
    """The mean share of ``name``'s map mass inside the object region, in percent (NaN when not measured)."""
    return Quantity(f"object mass share ({name})", "pp", ".2f",
                    lambda m: 100 * _optional(m.saliency.object_mass.get(name)))


def detectors_at(basis: str, quantile: float, iou_threshold: float) -> Quantity:
    """The detector count of one tally of ``sensitivity.csv`` (basis ``unit`` or ``rotated``) at one setting."""
    key = sensitivity_key(basis, quantile, iou_threshold)
    return Quantity(f"#detectors ({basis} basis, q {quantile:g}, IoU {iou_threshold:g})", "detectors", ".1f",
                    lambda m: m.dissection.sensitivity[key][0], _num_units)


def mean_best_iou(quantile: float) -> Quantity:
    """The mean over units of each unit's best IoU at a quantile (needs no IoU threshold)."""
    def value(m: ModelResult) -> float:
        return next(v[1] for k, v in m.dissection.sensitivity.items() if k[0] == "unit" and k[1] == round(quantile, 10))

    return Quantity(f"mean best IoU (q {quantile:g})", "IoU", ".4f", value)
