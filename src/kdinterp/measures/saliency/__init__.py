"""Measure ``saliency`` (stage ``saliency_*@``): saliency maps on the val images, scored against the ground truth.

For P12 (five-band scores, Tjoa & Guan 2020: :mod:`kdinterp.measures.saliency.five_band`) and P14
(object mass shares of the loss gradient and the activation of ``saliency.layer``, research/paper.md §4.2). The maps
are Captum's (:mod:`kdinterp.measures.saliency.attribution`). Outputs per model under
``outputs/saliency/<key>/``: ``five_band.csv`` (:data:`FIVE_BAND_COLUMNS`; committed), ``summary.json``
(:class:`SaliencySummary`; committed;
headline numbers in ``outputs/metrics/``) and ``maps.npz`` (a few images' maps for the
P14 grids; cached). ``saliency: null`` in params.yaml turns the measure off (data without ground truth).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kdinterp.core.config import check_ranges, ranged
from kdinterp.core.params import Params, require
from kdinterp.core.records import Record
from kdinterp.core.study import Layout, Model
from kdinterp.measures.base import Measure, Output

__all__ = ["FIVE_BAND", "FIVE_BAND_COLUMNS", "MAPS", "MEASURE", "METHODS", "SUMMARY", "FiveBandScores",
           "SaliencyParams", "SaliencySummary"]

#: The attribution methods (the one list), in report order; :func:`kdinterp.measures.saliency.attribution.attribute`
#: implements each.
METHODS: tuple[str, ...] = ("input_gradient", "input_x_gradient", "grad_cam", "smoothgrad")

#: ``five_band.csv``: one row per attribution method, means (and sds) over images.
FIVE_BAND_COLUMNS: tuple[str, ...] = ("method", "num_images", "pixel_acc", "precision", "recall", "fpr",
                                      "pixel_acc_sd", "precision_sd", "recall_sd", "fpr_sd", "object_mass")

MAPS = Output("maps.npz", description="a few images' maps, for the P14 grids")
FIVE_BAND = Output("five_band.csv", cache=False, description="five-band scores per attribution method")
SUMMARY = Output("summary.json", cache=False, description="five-band means and object mass shares")


@dataclass(frozen=True)
class SaliencyParams:
    """Saliency maps, five-band scores and object mass shares on the validation images (stage ``saliency_*@``).

    ``methods``: attribution methods of :data:`METHODS`. ``ground_truth_dir``: the
    ground-truth saliency maps of ``data.val_dir``'s images (same relative paths;
    :mod:`kdinterp.world.saliency`). ``num_images``: validation images scored, spread evenly over
    the sorted file list (null: all). ``smoothgrad_samples``: noisy copies per image;
    ``smoothgrad_noise``: the noise std as a share of the pixel range [0, 1] (Smilkov et al. 2017
    use 0.1-0.2). ``thresholds``: the four five-band thresholds (:mod:`kdinterp.measures.saliency.five_band`; the
    reference's -0.7, -0.3, 0.3, 0.7). ``grid_images``: images whose maps go into ``maps.npz`` for
    the P14 grids. ``layer``: Grad-CAM's and the activation map's layer.
    """

    ground_truth_dir: str
    methods: tuple[str, ...] = METHODS
    num_images: int | None = ranged(None, ge=1)
    batch_size: int = ranged(100, ge=1)
    smoothgrad_samples: int = ranged(16, ge=1)
    smoothgrad_noise: float = ranged(0.15, ge=0.0, le=1.0)
    thresholds: tuple[float, ...] = ranged((-0.7, -0.3, 0.3, 0.7), ge=-1.0, le=1.0)
    grid_images: int = ranged(8, ge=1)
    layer: str = "layer4"
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        check_ranges(self)
        unknown = sorted(set(self.methods) - set(METHODS))
        require(bool(self.methods) and not unknown, "methods",
               f"unknown {unknown}; use some of {list(METHODS)}")
        require(len(self.thresholds) == 4 and all(a < b for a, b in zip(self.thresholds, self.thresholds[1:])),
               "thresholds", f"must be 4 increasing numbers, got {list(self.thresholds)}")


@dataclass(frozen=True)
class FiveBandScores(Record):
    """One method's five-band scores, means over images (:func:`kdinterp.measures.saliency.five_band.five_band_scores`)."""

    pixel_acc: float
    precision: float
    recall: float
    fpr: float


@dataclass(frozen=True)
class SaliencySummary(Record):
    """``summary.json``: one model's saliency scores.

    Attributes:
        model, seed, group, role: which model.
        num_images: validation images scored.
        thresholds: the five-band thresholds used.
        five_band: method -> its mean scores.
        object_mass: map (``loss_gradient``, ``activation``, each method) -> mean share of its mass
            inside the object region (None where every map was zero).
    """

    model: str
    seed: int
    group: str
    role: str
    num_images: int
    thresholds: tuple[float, ...]
    five_band: dict[str, FiveBandScores]
    object_mass: dict[str, float | None]


def run(params: Params, model: Model, layout: Layout) -> SaliencySummary:
    """Score ``model``'s saliency maps (:func:`kdinterp.measures.saliency.compute.saliency_model`)."""
    from kdinterp.measures.saliency.compute import saliency_model

    return saliency_model(params, model, layout)


def read(params: Params, layout: Layout, model: Model) -> SaliencySummary | None:
    """The model's ``summary.json`` (None when params.yaml has no ``saliency`` section).

    Raises:
        FileNotFoundError, StaleOutputError: missing, stale, or without a method of ``saliency.methods``.
    """
    from kdinterp.core.records import StaleOutputError

    if params.saliency is None:
        return None
    path, stage = MEASURE.path(layout, model, SUMMARY), MEASURE.stage_of(model)
    summary = SaliencySummary.read(path, stage)
    MEASURE.check_seed(layout, model, SUMMARY, summary.seed)
    missing = sorted(set(params.saliency.methods) - set(summary.five_band))
    if missing:
        raise StaleOutputError(f"{path}: no five-band scores for {missing} (saliency.methods); rerun `dvc repro -s {stage}`")
    return summary


MEASURE = Measure(
    name="saliency", stage="saliency",
    help="Saliency maps of model KEY on the val images: five-band scores, object mass shares.",
    outputs=(MAPS, FIVE_BAND, SUMMARY), run=run, read=read, module="kdinterp.measures.saliency.compute",
    section="saliency", schema=SaliencyParams, required=False)
