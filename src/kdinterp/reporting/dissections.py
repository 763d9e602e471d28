"""Every model's dissection outputs as the HTML report reads them (stage ``report``).

Per model and seed (``outputs/dissection/<key>/``, measure :mod:`kdinterp.measures.dissection`):
``summary.json`` (:class:`~kdinterp.measures.dissection.DissectionSummary`), ``units.csv`` (one row per
unit, 0-based: concept, category, IoU, detector flag), ``thresholds.npy`` (``(U,)`` per-unit
activation thresholds) and ``top_images.npz`` (``image_index (U, k)`` int64 rows of
:func:`kdinterp.dissection.broden.load_broden`, ``max_activation (U, k)`` float32, ``maps (U, k, h, w)``
float32: each unit's raw activation map on its top-k probe images). Each is checked before use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kdinterp.core import study
from kdinterp.core.params import Params
from kdinterp.core.records import StaleOutputError, require_input
from kdinterp.measures import dissection
from kdinterp.measures.dissection import DissectionSummary
from kdinterp.reporting.paper import model_colors, ordered_models

__all__ = ["ModelDissection", "ReportInputError", "load_dissection", "load_models"]

UNIT_COLUMNS = ("unit", "concept", "category", "iou", "detector")
TOP_ARRAYS = ("image_index", "max_activation", "maps")


class ReportInputError(StaleOutputError):
    """A dissection output is malformed or stale; the message names the file and the stage to rerun."""


@dataclass(frozen=True)
class ModelDissection:
    """One model's dissection outputs at one seed.

    Attributes:
        key: :attr:`kdinterp.core.study.Model.key` (``kd-0``; ``teacher`` for a teacher): page and image names.
        name: the model (a key of teachers / students / distilled / self_distilled).
        seed: its seed.
        role: its role in the paper (``teacher``, ``scratch``, ``ls``, ``kd``) or None.
        color: its colour in the charts (the paper figures' colour for its role; shared by its seeds).
        summary: ``summary.json``.
        units: ``units.csv`` sorted by IoU, highest first (ties: lower unit first).
        thresholds: ``(U,)`` float32 per-unit thresholds.
        image_index: ``(U, k)`` int64 probe-set rows of each unit's top images, best first.
        max_activation: ``(U, k)`` float32 maximum of the unit's map on those images.
        maps: ``(U, k, h, w)`` float32 raw activation maps on those images.
    """

    key: str
    name: str
    seed: int
    role: str | None
    color: str
    summary: DissectionSummary
    units: pd.DataFrame
    thresholds: np.ndarray
    image_index: np.ndarray
    max_activation: np.ndarray
    maps: np.ndarray


def _existing(path: Path, stage: str) -> Path:
    return require_input(path, stage, "report")


def _stale(path: Path, stage: str, problem: str) -> ReportInputError:
    return ReportInputError(f"{path}: {problem}; rerun stage {stage} (`dvc repro -f -s {stage}`)")


def _read_units(path: Path, stage: str) -> pd.DataFrame:
    """``units.csv`` sorted by IoU (descending, stable); empty concept names stay ``''``."""
    units = pd.read_csv(_existing(path, stage), keep_default_na=False, dtype={"concept": str, "category": str})
    missing = [column for column in UNIT_COLUMNS if column not in units.columns]
    if missing:
        raise _stale(path, stage, f"missing column(s) {missing}")
    if not np.array_equal(units["unit"].to_numpy(), np.arange(len(units))) or units["detector"].dtype != bool:
        raise _stale(path, stage, "expected units 0..U-1 in order and a True/False detector column")
    return units.sort_values("iou", ascending=False, kind="stable").reset_index(drop=True)


def _read_top_images(path: Path, stage: str, num_units: int, num_images: int) -> dict[str, np.ndarray]:
    """The arrays of ``top_images.npz``, checked against ``U`` units and the probe set's size."""
    with np.load(_existing(path, stage)) as npz:
        missing = [key for key in TOP_ARRAYS if key not in npz.files]
        if missing:
            raise _stale(path, stage, f"missing array(s) {missing} (has {npz.files})")
        top = {key: npz[key] for key in TOP_ARRAYS}
    index, maps = top["image_index"], top["maps"]
    if (index.ndim != 2 or index.shape[0] != num_units or index.shape[1] < 1
            or top["max_activation"].shape != index.shape or maps.ndim != 4 or maps.shape[:2] != index.shape):
        shapes = {key: value.shape for key, value in top.items()}
        raise _stale(path, stage, f"array shapes {shapes} do not fit {num_units} units "
                                  "(expected image_index (U, k), max_activation (U, k), maps (U, k, h, w))")
    if index.min() < 0 or index.max() >= num_images:
        raise _stale(path, stage, f"image_index outside the probe set's {num_images} images "
                                  "(was it dissected on another probe set?)")
    return top


def load_dissection(layout: study.Layout, model: study.Model, num_images: int, *,
                    color: str = "#4d4d4d") -> ModelDissection:
    """Read and check one model's dissection outputs at one seed.

    Args:
        layout: where the outputs are; reads the model's outputs of measure ``dissection``.
        model: the study model (its stage ``model.stage("dissect")`` is named in errors).
        num_images: probe images in the probe set (``len(load_broden(...).rows)``).
        color: its chart colour.

    Returns:
        The dissection; ``units`` sorted by IoU, highest first.

    Raises:
        FileNotFoundError: a file is missing; the message names it and the stage that writes it.
        ReportInputError: a file lacks a key, column or array, was written for another seed, or its
            sizes disagree with the others or with the probe set.
    """
    measure = dissection.MEASURE
    stage = measure.stage_of(model)
    summary = dissection.DissectionSummary.read(measure.path(layout, model, dissection.SUMMARY), stage, "report")
    measure.check_seed(layout, model, dissection.SUMMARY, summary.seed)
    units = _read_units(measure.path(layout, model, dissection.UNITS), stage)
    thresholds_path = _existing(measure.path(layout, model, dissection.THRESHOLDS), stage)
    thresholds = np.load(thresholds_path)
    if thresholds.shape != (len(units),):
        raise _stale(thresholds_path, stage, f"shape {thresholds.shape} differs from the {len(units)} units "
                                             "of units.csv")
    top = _read_top_images(measure.path(layout, model, dissection.TOP_IMAGES), stage, len(units), num_images)
    role = model.role if model.role in study.ROLES else None
    return ModelDissection(model.key, model.name, model.seed, role, color, summary, units, thresholds, **top)


def load_models(params: Params, layout: study.Layout, num_images: int) -> list[ModelDissection]:
    """Every (model, seed), grouped by model in the figures' order (roles first), seeds in params order."""
    colors = model_colors(params)
    return [load_dissection(layout, model, num_images, color=colors[model.name]) for model in ordered_models(params)]
