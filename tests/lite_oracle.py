"""Reference oracle: a plain, slow, per-image, per-unit numpy port of NetDissect-Lite's tally loop.

Written from ``research/dissection.md`` §1.3 (``FeatureOperator.tally_job`` and the loader's
``resolve_segmentation``), not from the engine, so the engine (:mod:`kdinterp.dissection.engine`) can be
checked against it: fed the same raw activations and the same thresholds, both must give identical
counts. It reads the Broden files itself, the way Lite does (an integer in a list of PNGs fills a
whole plane; a field of integers only is a list of image-level labels).

Where it departs from Lite's code, it follows the engine's documented policies:

* ``labelcat`` (labels x categories) is built correctly (Lite's is all ones under NumPy >= 1.23,
  pitfall P-C1). Labels without a primary category among the selected ones (``label_category ==
  -1``, label 0 included) have an all-zero row and are ignored like pixel label 0.
* Image-level label 0 is dropped (Lite counts it: the phantom label ``''``, pitfall P-C4).
* ``cat_hit`` is reset for every (image, unit), so an image with only image-level labels works
  even when it is the first one a unit fires on (Lite: ``UnboundLocalError``, pitfall P-C5).
* Upsampling is ``F.interpolate(mode="bilinear", align_corners=False)`` of one map in float64
  (Lite: PIL / ``cv2`` in float32; equal up to ~1e-6, §0).
* ``rule="netdissect"`` replaces the category-restricted activation term by the original
  NetDissect one: the unit's active pixels count toward every category present in the image.

It also includes Lite's gate (``fm.max() > T_u``) and IoU formula (``+ 1e-10`` in the denominator).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

_INT = re.compile(r"^\d+$")


@dataclass(frozen=True)
class LiteRow:
    """One kept index.csv row: ``planes (P, sh, sw)`` int64 and image-level ``scalars``."""

    image: str
    planes: np.ndarray
    scalars: tuple[int, ...]


@dataclass(frozen=True)
class LiteCounts:
    """Lite's accumulators after finalisation (label axis ``L + 1``, category axis ``C``)."""

    intersection: np.ndarray   # tally_both (U, L + 1)
    unit_area: np.ndarray      # tally_units_cat (U, C)
    concept_area: np.ndarray   # tally_labels (L + 1,)
    iou: np.ndarray            # (U, L + 1)
    fired_on_first_image: bool  # some unit passed the gate on row 0


def iter_rows(root: Path, categories: tuple[str, ...]) -> Iterator[LiteRow]:
    """Lite's loader: the rows of ``index.csv`` with data in a selected category, decoded one at a time."""
    with open(root / "category.csv", newline="") as f:
        selected = [r["name"] for r in csv.DictReader(f) if r["name"] in categories]
    with open(root / "index.csv", newline="") as f:
        for raw in csv.DictReader(f):
            decoded = {c: [int(x) if _INT.match(x) else x for x in raw[c].split(";") if x] for c in selected}
            if not any(item for items in decoded.values() for item in items):  # index_has_any_data: 0 is falsy
                continue
            shape = (int(raw["sh"]), int(raw["sw"]))
            planes, scalars = [], []
            for items in decoded.values():
                if all(isinstance(x, int) for x in items):
                    scalars += items
                else:
                    planes += [np.full(shape, x, np.int64) if isinstance(x, int) else _decode(root / "images" / x)
                               for x in items]
            stack = np.stack(planes) if planes else np.zeros((0, *shape), np.int64)
            yield LiteRow(raw["image"], stack, tuple(scalars))


def _decode(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
    return rgb[:, :, 0] + 256 * rgb[:, :, 1]


def upsample(fm: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One ``(h, w)`` map to ``size``, bilinear, half-pixel centres, float64."""
    t = torch.from_numpy(np.asarray(fm, np.float64))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def lite_tally(rows: Iterable[LiteRow], features: np.ndarray, thresholds: np.ndarray, label_category: np.ndarray,
               num_categories: int, rule: str = "lite") -> LiteCounts:
    """Lite's ``tally_job`` over all rows, then its IoU.

    Args:
        rows: from :func:`iter_rows` (row ``i`` goes with ``features[i]``).
        features: ``(N, U, h, w)`` raw activations, row order.
        thresholds: ``(U,)``.
        label_category: ``(L + 1,)`` primary category per label, -1 = ignored.
        num_categories: ``C``.
        rule: ``lite`` or ``netdissect``.
    """
    units, labels = features.shape[1], len(label_category)
    labelcat = np.zeros((labels, num_categories), np.int64)
    for label, category in enumerate(label_category):
        if category >= 0:
            labelcat[label, category] = 1
    ignored = np.asarray(label_category) < 0
    inter = np.zeros((units, labels), np.int64)
    act_cat = np.zeros((units, num_categories), np.int64)
    truth = np.zeros(labels, np.int64)
    fired_first = False
    for i, row in enumerate(rows):
        planes, size = row.planes, row.planes.shape[1:]
        scalars = [s for s in row.scalars if not ignored[s]]
        for s in scalars:
            truth[s] += size[0] * size[1]
        if planes.shape[0]:
            bc = np.bincount(planes.ravel(), minlength=labels)
            bc[ignored] = 0
            truth += bc
            present = (bc > 0) @ labelcat
        else:
            present = np.zeros(num_categories, np.int64)
        for s in scalars:
            present = present + labelcat[s]
        for u in range(units):
            fm = features[i, u]
            if not fm.max() > thresholds[u]:
                continue
            fired_first |= i == 0
            mask = upsample(fm, size) > thresholds[u]
            active = np.argwhere(mask)
            n = len(active)
            cat_hit = np.zeros(num_categories, np.int64)
            if planes.shape[0]:
                bt = np.bincount(planes[:, active[:, 0], active[:, 1]].ravel(), minlength=labels)
                bt[ignored] = 0
                inter[u] += bt
                cat_hit = bt @ labelcat
            for s in scalars:
                cat_hit = cat_hit + labelcat[s]
                inter[u, s] += n
            touched = cat_hit if rule == "lite" else present
            act_cat[u] += n * (touched > 0)
    act_lab = act_cat @ labelcat.T
    iou = inter / (act_lab + truth - inter + 1e-10)
    return LiteCounts(inter, act_cat, truth, iou, fired_first)


def detectors(iou: np.ndarray, threshold: float) -> dict[int, float]:
    """Units whose best IoU is ``>= threshold``, with that IoU."""
    best = iou.max(axis=1)
    return {int(u): float(best[u]) for u in np.flatnonzero(best >= threshold)}
