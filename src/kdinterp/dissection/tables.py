"""From tally counts to the tables a person reads: tally.csv, units.csv and summary.json.

Labelling rule (NetDissect-Lite ``tally`` scoring, ``research/dissection.md`` §1.4): for each unit
and category, the best concept is the one with the highest IoU among concepts whose primary
category it is; the unit's concept is the best over categories (ties: the first category in the
paper's order, object, part, scene, material, texture, color). A unit that overlaps nothing has
an empty concept and category, concept id 0 and IoU 0. A *detector* is a unit whose best IoU is ``>= iou_threshold``. Units are
0-based.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kdinterp.core.params import CATEGORIES
from kdinterp.dissection.calibrated import CalibratedResult
from kdinterp.dissection.topimages import TopImagesResult
from kdinterp.dissection.variants import BlockCounts, VariantResult

__all__ = ["SUMMARY_COUNTS", "TALLY_COLUMNS", "UNITS_COLUMNS", "DissectionResult", "summary", "tally_table",
           "units_table"]

#: ``tally.csv``: one row per (unit, concept) with a non-zero intersection (:func:`tally_table`).
TALLY_COLUMNS: tuple[str, ...] = (
    "unit", "concept", "concept_id", "category", "intersection", "unit_area", "concept_area", "iou")
#: ``units.csv``: one row per unit; its best concept overall and per category (:func:`units_table`).
UNITS_COLUMNS: tuple[str, ...] = (("unit", "concept", "concept_id", "category", "iou", "detector")
                                  + tuple(f"{c}_{what}" for c in CATEGORIES for what in ("concept", "iou")))
#: The keys of :func:`summary` determined by the units table (nested keys flattened with a dot).
SUMMARY_COUNTS: tuple[str, ...] = (("num_detectors", "num_unique_concepts")
                                   + tuple(f"detectors.{c}" for c in CATEGORIES)
                                   + tuple(f"unique_concepts.{c}" for c in CATEGORIES))


@dataclass(frozen=True)
class DissectionResult:
    """Counts of one dissection, on the CPU as numpy arrays.

    Attributes:
        layer: the dissected module, e.g. ``layer4``.
        thresholds: ``(U,)`` per-unit activation thresholds.
        intersection: ``(U, L + 1)`` int64.
        unit_area: ``(U, C)`` int64, category-restricted active pixels.
        concept_area: ``(L + 1,)`` int64.
        iou: ``(U, L + 1)`` float64.
        label_names: ``(L + 1,)`` concept names by label number.
        label_category: ``(L + 1,)`` category index per label, -1 if ignored.
        categories: category names, ``C`` of them.
        num_images: probe images tallied.
        top_images: each unit's top-activating probe images (``None`` when not collected).
        variants: the further tallies asked for (:mod:`kdinterp.dissection.variants`), in order.
        blocks: the counts above split over blocks of probe images (``None`` when not asked for).
        calibrated: the calibrated detector test, one result per split (:mod:`kdinterp.dissection.calibrated`;
            ``None`` when not asked for); calibrated_rotated: the same on the rotated-basis variant.
    """

    layer: str
    thresholds: np.ndarray
    intersection: np.ndarray
    unit_area: np.ndarray
    concept_area: np.ndarray
    iou: np.ndarray
    label_names: tuple[str, ...]
    label_category: np.ndarray
    categories: tuple[str, ...]
    num_images: int
    top_images: TopImagesResult | None = None
    variants: tuple[VariantResult, ...] = ()
    blocks: BlockCounts | None = None
    calibrated: tuple[CalibratedResult, ...] | None = None
    calibrated_rotated: tuple[CalibratedResult, ...] | None = None

    @property
    def num_units(self) -> int:
        """``U``."""
        return len(self.thresholds)


def tally_table(result: DissectionResult) -> pd.DataFrame:
    """One row per (unit, concept) with a non-zero intersection, sorted by unit then concept id.

    Columns: ``unit, concept, concept_id, category, intersection, unit_area, concept_area, iou``
    (``unit_area`` is the unit's area restricted to the concept's category).
    """
    units, labels = np.nonzero(result.intersection)
    categories = result.label_category[labels]
    keep = categories >= 0
    units, labels, categories = units[keep], labels[keep], categories[keep]
    return pd.DataFrame({
        "unit": units.astype(np.int64),
        "concept": np.asarray(result.label_names, dtype=object)[labels],
        "concept_id": labels.astype(np.int64),
        "category": np.asarray(result.categories, dtype=object)[categories],
        "intersection": result.intersection[units, labels],
        "unit_area": result.unit_area[units, categories],
        "concept_area": result.concept_area[labels],
        "iou": result.iou[units, labels],
    })


def units_table(result: DissectionResult, iou_threshold: float) -> pd.DataFrame:
    """One row per unit: its best concept overall and per category, and whether it is a detector.

    Columns: ``unit, concept, concept_id, category, iou, detector``, then ``<category>_concept``
    and ``<category>_iou`` for each category in the paper's order (:data:`kdinterp.core.params.CATEGORIES`;
    empty concept, id 0 and IoU 0 where the unit never overlaps that category).
    """
    names = np.asarray(result.label_names, dtype=object)
    order = sorted(range(len(result.categories)), key=lambda c: _paper_rank(result.categories[c]))
    best_label = np.zeros((result.num_units, len(order)), dtype=np.int64)
    best_iou = np.zeros((result.num_units, len(order)))
    for column, c in enumerate(order):
        masked = np.where(result.label_category[None, :] == c, result.iou, -1.0)
        best_label[:, column] = masked.argmax(1)
        best_iou[:, column] = np.maximum(masked.max(1), 0.0)
    best_label[best_iou == 0] = 0
    top = best_iou.argmax(1)  # ties: the first category in the paper's order
    rows = np.arange(result.num_units)
    category_names = np.asarray([result.categories[c] for c in order], dtype=object)
    table = pd.DataFrame({
        "unit": rows.astype(np.int64),
        "concept": names[best_label[rows, top]],
        "concept_id": best_label[rows, top],
        "category": np.where(best_iou[rows, top] > 0, category_names[top], ""),
        "iou": best_iou[rows, top],
    })
    table["detector"] = table["iou"] >= iou_threshold
    for column, category in enumerate(category_names):
        table[f"{category}_concept"] = names[best_label[:, column]]
        table[f"{category}_iou"] = best_iou[:, column]
    return table


def _paper_rank(category: str) -> int:
    return CATEGORIES.index(category) if category in CATEGORIES else len(CATEGORIES)


def summary(units: pd.DataFrame, result: DissectionResult, *, quantile: float, iou_threshold: float,
            model: str, seed: int | None = None) -> dict:
    """The numbers the paper reports: detectors (units) and unique concepts, overall and per category.

    Nested ``detectors`` and ``unique_concepts`` count per category (:data:`SUMMARY_COUNTS`).
    """
    detectors = units[units["detector"]]
    return {
        "model": model,
        "seed": seed,
        "layer": result.layer,
        "num_units": result.num_units,
        "num_images": result.num_images,
        "quantile": quantile,
        "iou_threshold": iou_threshold,
        "num_detectors": int(len(detectors)),
        "num_unique_concepts": int(detectors["concept"].nunique()),
        "detectors": {c: int((detectors["category"] == c).sum()) for c in CATEGORIES if c in result.categories},
        "unique_concepts": {c: int(detectors.loc[detectors["category"] == c, "concept"].nunique())
                            for c in CATEGORIES if c in result.categories},
    }
