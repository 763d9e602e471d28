"""Five-band scores of saliency maps against ground-truth heatmaps (Tjoa & Guan, 2020), and mass shares.

Source: E. Tjoa and C. Guan, "Quantifying explainability of saliency methods in deep neural
networks with a synthetic dataset", arXiv, September 2020 (later in IEEE Trans. Artificial
Intelligence); reference code ``FiveBandXAIMetric.fiveband_score`` in
github.com/ericotjo001/explainable_ai, ``xai_basic/pipeline/eval/eval_metrics.py``.

**Ground truth.** Three regions: background (value 0), the object region that localises the
object (:data:`GT_OBJECT_VALUE`), and the discriminative region (:data:`GT_DISCRIMINATIVE_VALUE`),
which tells the class apart. In the concept world these are the R (object) and G (the ``differs_in``
part, a subset of R) channels of ``saliency/<split>/<class>/<stem>.png``
(:mod:`kdinterp.world.saliency`).

**Definition** (as in the reference code). A saliency map ``h`` (H, W) is normalised to [-1, 1]
by its largest absolute value (``h / max|h|``; an all-zero map stays 0). Both ``h`` and the ground
truth ``g`` are cut into five bands by the thresholds ``t = (-0.7, -0.3, 0.3, 0.7)``:
``x <= t1 -> -2``, ``t1 < x <= t2 -> -1``, ``t2 < x <= t3 -> 0``, ``t3 < x <= t4 -> 1``,
``x > t4 -> 2``. So background is band 0, the object region band 1, the discriminative region
band 2; a non-negative saliency map uses bands 0 (``<= 0.3`` of its maximum), 1 and 2
(``> 0.7``). Per image, with ``b(.)`` the band:

* ``pixel accuracy = #{b(h) = b(g)} / #pixels``;
* ``TP = #{b(h) != 0, b(g) != 0, b(h) = b(g)}``: a salient pixel in the right non-zero band;
* ``FP = #{b(h) != 0, b(g) = 0} + #{b(h) != 0, b(g) != 0, b(h) != b(g)}``: salient on background,
  or in the wrong non-zero band (the reference's "a little modification, because it's not strictly
  binary");
* ``TN = #{b(h) = 0, b(g) = 0}``, ``FN = #{b(h) = 0, b(g) != 0}``;
* ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``, ``FPR = FP / (FP + TN)``, each with
  ``1e-6`` added to the denominator as in the reference (an empty denominator gives 0).

The score is one tuple per image; a method's score is its mean over images. The reference also has
a "soft" variant that repeats the score with the thresholds moved outward in 10 steps of 0.02;
:func:`five_band_scores` takes any thresholds, so the soft variant is a loop over them.

**Mass share** (P14): the share of a non-negative map's total mass that lies inside the object
region, ``sum(h * object) / sum(h)`` per image (NaN for an all-zero map, left out of means). It is
"relevance mass accuracy" (Arras et al., 2022, "CLEVR-XAI", Information Fusion 81), which Quantus
implements as ``RelevanceMassAccuracy``; Quantus has no five-band metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["GT_DISCRIMINATIVE_VALUE", "GT_OBJECT_VALUE", "METRICS", "THRESHOLDS", "band", "five_band_scores",
           "ground_truth", "mass_share", "read_ground_truth"]

#: The reference's band thresholds (heatmaps normalised to [-1, 1]).
THRESHOLDS: tuple[float, float, float, float] = (-0.7, -0.3, 0.3, 0.7)
#: Ground-truth values of the object region (band 1) and the discriminative region (band 2) under
#: :data:`THRESHOLDS`; only their bands matter.
GT_OBJECT_VALUE = 0.5
GT_DISCRIMINATIVE_VALUE = 1.0
#: The four scores, in table order.
METRICS: tuple[str, ...] = ("pixel_acc", "precision", "recall", "fpr")
_EPS = 1e-6


def _check_thresholds(thresholds: Sequence[float]) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64)
    if t.shape != (4,) or not np.all(np.diff(t) > 0):
        raise ValueError(f"thresholds must be 4 increasing numbers, got {list(thresholds)}")
    return t


def band(x: np.ndarray, thresholds: Sequence[float] = THRESHOLDS) -> np.ndarray:
    """The five-band index of every value of ``x`` (any shape): int8 in {-2, -1, 0, 1, 2}.

    ``x <= t1 -> -2``, ``(t1, t2] -> -1``, ``(t2, t3] -> 0``, ``(t3, t4] -> 1``, ``> t4 -> 2``.

    Raises:
        ValueError: ``thresholds`` is not 4 increasing numbers.
    """
    t = _check_thresholds(thresholds)
    return (np.searchsorted(t, np.asarray(x, dtype=np.float64), side="left") - 2).astype(np.int8)


def ground_truth(obj: np.ndarray, discriminative: np.ndarray) -> np.ndarray:
    """Ground-truth heatmaps from the two regions (bool, same shape): 0, :data:`GT_OBJECT_VALUE`, :data:`GT_DISCRIMINATIVE_VALUE`.

    Raises:
        ValueError: the shapes differ, or the discriminative region leaves the object region.
    """
    obj, discriminative = np.asarray(obj, bool), np.asarray(discriminative, bool)
    if obj.shape != discriminative.shape:
        raise ValueError(f"object {obj.shape} and discriminative {discriminative.shape} regions differ in shape")
    if (discriminative & ~obj).any():
        raise ValueError("the discriminative region must lie inside the object region")
    return np.where(discriminative, GT_DISCRIMINATIVE_VALUE, np.where(obj, GT_OBJECT_VALUE, 0.0))


def _normalise(maps: np.ndarray) -> np.ndarray:
    """``h / max|h|`` per map of ``(N, H, W)``; an all-zero map stays 0 (the reference's ``absmax``)."""
    peak = np.abs(maps).reshape(len(maps), -1).max(1)
    return maps / np.where(peak > 0, peak, 1.0)[:, None, None]


def five_band_scores(maps: np.ndarray, truth: np.ndarray,
                     thresholds: Sequence[float] = THRESHOLDS) -> dict[str, np.ndarray]:
    """Per-image five-band scores of saliency maps against ground-truth heatmaps (module docstring).

    Args:
        maps: ``(N, H, W)`` saliency maps, any scale and sign.
        truth: ``(N, H, W)`` ground-truth heatmaps in [0, 1] (:func:`ground_truth`).
        thresholds: the four band thresholds.

    Returns:
        :data:`METRICS` -> float64 ``(N,)``.

    Raises:
        ValueError: shapes differ or are not (N, H, W); bad thresholds.
    """
    maps, truth = np.asarray(maps, np.float64), np.asarray(truth, np.float64)
    if maps.ndim != 3 or maps.shape != truth.shape:
        raise ValueError(f"maps {maps.shape} and ground truth {truth.shape} must both be (N, H, W)")
    h, g = band(_normalise(maps), thresholds), band(truth, thresholds)
    equal = h == g
    salient, relevant = h != 0, g != 0

    def count(mask: np.ndarray) -> np.ndarray:
        return mask.reshape(len(mask), -1).sum(1).astype(np.float64)

    tp = count(salient & relevant & equal)
    fp = count(salient & ~relevant) + count(salient & relevant & ~equal)
    tn, fn = count(~salient & ~relevant), count(~salient & relevant)
    return {"pixel_acc": count(equal) / equal[0].size, "precision": tp / (tp + fp + _EPS),
            "recall": tp / (tp + fn + _EPS), "fpr": fp / (fp + tn + _EPS)}


def mass_share(maps: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """Share of each non-negative map's mass inside the object region: float64 ``(N,)`` in [0, 1], NaN for a zero map.

    Args:
        maps: ``(N, H, W)``, >= 0 (an attribution or activation map).
        obj: ``(N, H, W)`` bool object regions.

    Raises:
        ValueError: shapes differ, or a map has negative values.
    """
    maps, obj = np.asarray(maps, np.float64), np.asarray(obj, bool)
    if maps.ndim != 3 or maps.shape != obj.shape:
        raise ValueError(f"maps {maps.shape} and object masks {obj.shape} must both be (N, H, W)")
    if (maps < 0).any():
        raise ValueError("mass shares need non-negative maps")
    total = maps.reshape(len(maps), -1).sum(1)
    inside = (maps * obj).reshape(len(maps), -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def read_ground_truth(image: Path, root: Path, saliency_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The (object, discriminative) bool regions of the classification image ``image`` (a file under ``root``).

    Args:
        image: e.g. ``data/concept_world/val/boat_a/boat_a_00003.png``.
        root: the split's ImageFolder root (``data/concept_world/val``).
        saliency_root: that split's saliency folder (``data/concept_world/saliency/val``).

    Raises:
        FileNotFoundError: no saliency map for the image (the message names the file and the fix).
    """
    from PIL import Image

    from kdinterp.world.saliency import decode_saliency

    path = saliency_root / Path(image).relative_to(root)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ground-truth saliency map for {image}; regenerate the world "
                                f"(`rm -rf data && make data`), or use a data set that has saliency maps")
    with Image.open(path) as im:
        return decode_saliency(np.asarray(im.convert("RGB")))
