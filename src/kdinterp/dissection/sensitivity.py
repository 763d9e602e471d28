"""How much a model's detector count depends on the dissection's free choices and on the probe set.

* :func:`best_iou`: each unit's best IoU over the counted concepts (the labelling rule of
  :func:`~kdinterp.dissection.tables.units_table`, without the tie-break, which does not change the value).
* :func:`sensitivity_table`: detectors, unique concepts and the mean best IoU (a summary that needs
  no IoU threshold) for every tally of a dissection (the main one, other quantiles, the rotated
  basis) at every IoU threshold of a grid. The row of the main tally at the params' threshold is
  the summary's ``num_detectors``.
* :func:`probe_bootstrap`: the detector count's spread over resamplings of the probe set. Blocks
  of consecutive probe images are drawn with replacement (a block bootstrap: Efron & Tibshirani,
  *An Introduction to the Bootstrap*, 1993, §8.6; Künsch, Ann. Stat. 1989), their counts summed,
  and the IoUs and detectors recomputed; the interval is the percentile interval. The per-unit
  thresholds are held fixed at the full probe set's values, so this is the spread of the tally
  given the thresholds, not of the thresholds themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from kdinterp.dissection.tables import DissectionResult
from kdinterp.dissection.variants import BlockCounts

__all__ = ["SENSITIVITY_COLUMNS", "best_iou", "probe_bootstrap", "sensitivity_table"]

#: ``sensitivity.csv``: one row per (basis, quantile, IoU threshold).
SENSITIVITY_COLUMNS: tuple[str, ...] = ("basis", "quantile", "iou_threshold", "num_units", "num_detectors",
                                        "num_unique_concepts", "mean_best_iou")


def best_iou(iou: np.ndarray, label_category: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's best IoU over counted labels and the label that reaches it.

    Args:
        iou: ``(..., U, L + 1)`` float64.
        label_category: ``(L + 1,)``; labels with -1 are not counted.

    Returns:
        ``(best, label)``: ``(..., U)`` float64 (0 when the unit overlaps nothing) and int64.
    """
    masked = np.where(label_category >= 0, iou, -1.0)
    label = masked.argmax(-1)
    return np.maximum(np.take_along_axis(masked, label[..., None], -1)[..., 0], 0.0), label


def _rows(basis: str, quantile: float, iou: np.ndarray, label_category: np.ndarray,
          iou_thresholds: Sequence[float]) -> list[dict]:
    best, label = best_iou(iou, label_category)
    return [{"basis": basis, "quantile": quantile, "iou_threshold": float(threshold), "num_units": len(best),
             "num_detectors": int((best >= threshold).sum()),
             "num_unique_concepts": int(np.unique(label[best >= threshold]).size),
             "mean_best_iou": float(best.mean())} for threshold in iou_thresholds]


def sensitivity_table(result: DissectionResult, quantile: float, iou_thresholds: Sequence[float]) -> pd.DataFrame:
    """Detectors of every tally of ``result`` at every IoU threshold.

    Args:
        result: a dissection, with its variants.
        quantile: the quantile of the main tally (``dissection.quantile``).
        iou_thresholds: the grid; the params' threshold should be among them.

    Returns:
        Columns :data:`SENSITIVITY_COLUMNS`; the main tally first (basis ``unit``), then the
        variants in order, each over the grid in the order given.
    """
    rows = _rows("unit", quantile, result.iou, result.label_category, iou_thresholds)
    for variant in result.variants:
        rows += _rows(variant.basis, variant.quantile, variant.iou, result.label_category, iou_thresholds)
    return pd.DataFrame(rows, columns=list(SENSITIVITY_COLUMNS))


def _iou(intersection: np.ndarray, unit_area: np.ndarray, concept_area: np.ndarray,
         label_category: np.ndarray) -> np.ndarray:
    """:meth:`kdinterp.dissection.tally.Tally.iou` on numpy counts with leading replicate axes."""
    area = unit_area[..., label_category.clip(min=0)]                       # (..., U, L + 1)
    union = area + concept_area[..., None, :] - intersection
    iou = np.where(union > 0, intersection / np.maximum(union, 1), 0.0)
    return iou * (label_category >= 0)


def probe_bootstrap(blocks: BlockCounts, label_category: np.ndarray, iou_threshold: float, *,
                    replicates: int, seed: int, chunk: int = 50) -> dict:
    """The detector count over block-bootstrap resamplings of the probe set (module docstring).

    Args:
        blocks: the main tally's counts per block of probe images (``K`` blocks).
        label_category: ``(L + 1,)`` as in the tally.
        iou_threshold: a detector's minimum IoU.
        replicates: bootstrap resamplings (each draws ``K`` blocks with replacement).
        seed: of the resampling (``numpy.random.default_rng``).
        chunk: replicates computed at once (bounds memory: ``chunk * U * (L + 1)`` floats).

    Returns:
        ``{"replicates", "blocks", "mean", "sd", "low", "high"}``: the mean and sample sd (ddof 1)
        of the detector count over replicates, and its 2.5 and 97.5 percentiles.

    Raises:
        ValueError: fewer than 2 blocks or replicates.
    """
    k = blocks.intersection.shape[0]
    if k < 2 or replicates < 2:
        raise ValueError(f"the probe bootstrap needs >= 2 blocks and replicates, got {k} and {replicates}")
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(k, np.full(k, 1.0 / k), size=replicates).astype(np.float64)   # (R, K)
    counts = []
    for start in range(0, replicates, chunk):
        w = weights[start:start + chunk]
        iou = _iou(np.einsum("rk,kul->rul", w, blocks.intersection), np.einsum("rk,kuc->ruc", w, blocks.unit_area),
                   w @ blocks.concept_area, label_category)
        counts.append((best_iou(iou, label_category)[0] >= iou_threshold).sum(-1))
    detectors = np.concatenate(counts).astype(np.float64)
    low, high = np.percentile(detectors, [2.5, 97.5])
    return {"replicates": int(replicates), "blocks": int(k), "mean": float(detectors.mean()),
            "sd": float(detectors.std(ddof=1)), "low": float(low), "high": float(high)}
