"""Measure ``dissection`` (stage ``dissect_*@``): Network Dissection of one layer (Bau et al., CVPR 2017).

NetDissect-Lite semantics, as in the paper's code (``research/dissection.md``); the engine is
:mod:`kdinterp.dissection`. Outputs per model under ``outputs/dissection/<key>/``:
``thresholds.npy``, ``tally.csv`` (:data:`~kdinterp.dissection.tables.TALLY_COLUMNS`), ``units.csv``
(:data:`~kdinterp.dissection.tables.UNITS_COLUMNS`), ``top_images.npz``, ``sensitivity.csv``
(:data:`~kdinterp.dissection.sensitivity.SENSITIVITY_COLUMNS`), ``calibrated.csv`` (:data:`CALIBRATED_COLUMNS`,
the calibrated detector of :mod:`kdinterp.dissection.calibrated`; all DVC-cached) and ``summary.json``
(:class:`DissectionSummary`; committed;
headline numbers in ``outputs/metrics/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from kdinterp.core.config import check_ranges, ranged
from kdinterp.core.params import CATEGORIES, SEED_MAX, Params, require
from kdinterp.core.records import Record, StaleOutputError, require_input
from kdinterp.core.study import Layout, Model
from kdinterp.measures.base import Measure, Output

__all__ = ["CALIBRATED", "CALIBRATED_COLUMNS", "CALIBRATED_RECORDS", "MEASURE", "SENSITIVITY", "SUMMARY", "TALLY", "THRESHOLDS", "TOP_IMAGES",
           "UNITS", "CalibratedParams", "CalibratedSummary", "DissectionNumbers", "DissectionParams", "DissectionSummary",
           "ProbeBootstrap", "SUMMARY_KEYS", "SensitivityParams"]

THRESHOLDS = Output("thresholds.npy", description="per-unit activation thresholds")
TALLY = Output("tally.csv", description="one row per (unit, concept): intersection, areas, IoU")
UNITS = Output("units.csv", description="one row per unit: best concept overall and per category, detector flag")
TOP_IMAGES = Output("top_images.npz", description="each unit's top-activating probe images and maps")
SENSITIVITY = Output("sensitivity.csv", description="detectors over quantiles x IoU thresholds, rotated basis")
CALIBRATED = Output("calibrated.csv", description="one row per unit: concept chosen on half A, permutation test on "
                    "half B, BH q-value, calibrated detector flag")
SUMMARY = Output("summary.json", cache=False, description="detectors, unique concepts, probe bootstrap")


@dataclass(frozen=True)
class SensitivityParams:
    """What the dissect stage adds to the main tally (``sensitivity.csv`` and the summary's ``probe_bootstrap``).

    ``quantiles``: further tallies at these threshold quantiles (the main ``dissection.quantile`` is
    always tallied). ``iou_thresholds``: the grid at which every tally's detectors are counted.
    ``rotation_seed``: the rotated-basis control (Bau et al. 2017 §3.2), the layer output times a
    random orthogonal matrix drawn with this seed, tallied at the main quantile; null: off.
    ``bootstrap_replicates`` resamplings of ``bootstrap_blocks`` blocks of probe images for the
    probe bootstrap of the detector count.
    """

    quantiles: tuple[float, ...] = ranged((0.0025, 0.005, 0.01), gt=0, lt=0.5)
    iou_thresholds: tuple[float, ...] = ranged((0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10), gt=0, le=1)
    rotation_seed: int | None = ranged(0, ge=0, le=SEED_MAX)
    bootstrap_replicates: int = ranged(1000, ge=2)
    bootstrap_blocks: int = ranged(20, ge=2)

    def __post_init__(self) -> None:
        check_ranges(self)
        require(bool(self.iou_thresholds), "iou_thresholds", "give at least one IoU threshold, e.g. [0.05]")


#: ``calibrated.csv``: one row per unit (:func:`kdinterp.measures.dissection.compute.calibrated_table`); empty
#: (header only) when ``dissection.calibrated.enabled`` is false.
CALIBRATED_COLUMNS: tuple[str, ...] = ("basis", "split", "unit", "concept", "category", "iou_a", "iou_b", "intersection_b", "null_mean",
                                       "null_sd", "z", "p", "q", "detector", "images_b")


@dataclass(frozen=True)
class CalibratedParams:
    """The calibrated detector (:mod:`kdinterp.dissection.calibrated`), reported beside the fixed IoU threshold.

    ``enabled``: run it (``calibrated.csv``, the summary's ``calibrated``); false: ``calibrated.csv`` is
    a header only and the summary's ``calibrated`` is null. ``fdr``: Benjamini-Hochberg (1995) level
    over the units. ``split_seed``: seeds the split of the probe images into halves A (concept
    selection) and B (test), and the permutations. ``permutations``: R Monte Carlo permutations
    per test; the smallest p-value is ``1 / (R + 1)``, which must lie below ``fdr``, and well below
    ``fdr / units`` for a single detector to be found. ``null_distribution`` (not ``null``, which YAML
    reads as a null key): ``permutation`` (Monte Carlo) or ``normal`` (Hoeffding's 1951 exact
    moments, normal tail; anti-conservative far out).
    ``min_iou``: a detector must also reach this IoU on half B. ``primary_categories``: the
    summary's ``primary`` counts detectors whose concept is of these categories; ``low_level`` the rest.
    ``splits``: the test runs on this many splits (seeds ``split_seed``, ``split_seed + 1``, ...) and
    the summary's counts are means over them (one split's count varies with the split about as much
    as between training seeds: docs/instrument.md).
    """

    enabled: bool = True
    fdr: float = ranged(0.05, gt=0, lt=1)
    split_seed: int = ranged(0, ge=0, le=SEED_MAX)
    permutations: int = ranged(4999, ge=1)
    null_distribution: Literal["permutation", "normal"] = "permutation"
    min_iou: float = ranged(0.0, ge=0, le=1)
    primary_categories: tuple[str, ...] = ("object", "part", "scene")
    splits: int = ranged(5, ge=1)

    def __post_init__(self) -> None:
        check_ranges(self)
        require(1.0 / (self.permutations + 1) < self.fdr, "permutations",
                f"the smallest p-value 1/(permutations+1) = {1.0 / (self.permutations + 1):.3g} is not below fdr "
                f"{self.fdr}, so no unit could ever be a detector; use e.g. 9999")
        unknown = sorted(set(self.primary_categories) - set(CATEGORIES))
        require(not unknown, "primary_categories", f"unknown {unknown}; Broden has {list(CATEGORIES)}")

    def options(self):
        """The engine's :class:`kdinterp.dissection.calibrated.CalibratedOptions` (None when not ``enabled``)."""
        from kdinterp.dissection.calibrated import CalibratedOptions

        if not self.enabled:
            return None
        return CalibratedOptions(fdr=self.fdr, split_seed=self.split_seed, permutations=self.permutations,
                                 null=self.null_distribution, min_iou=self.min_iou, splits=self.splits)


@dataclass(frozen=True)
class DissectionParams:
    """Network Dissection of one layer on a Broden-layout probe set (NetDissect-Lite semantics).

    ``quantile``: each unit's threshold is the exact quantile at level ``1 - quantile`` of its raw
    activations (:mod:`kdinterp.dissection.thresholds`; NetDissect-Lite's sketch estimate is not reproduced).
    ``activation_rule`` (:mod:`kdinterp.dissection.tally`): a unit's active pixels in an image count
    toward category c, with ``lite``, if some of them lie on a label of c or the image has an
    image-level label of c; with ``netdissect``, if c is present anywhere in the image.
    ``top_images``: top-activating probe images kept per unit (``top_images.npz``).
    ``activations`` (:mod:`kdinterp.dissection.activations`): where the layer's activations wait
    between the threshold pass and the tally pass: ``auto`` in memory up to ``activation_memory_mb``
    MiB, else in a float32 memmap in the output directory; ``disk`` always the memmap; ``recompute``
    a second forward pass instead (for GPUs). The results are the same either way.
    """

    broden_dir: str
    layer: str = "layer4"
    quantile: float = ranged(0.005, gt=0, lt=0.5)
    iou_threshold: float = ranged(0.05, gt=0, le=1)
    categories: tuple[str, ...] = CATEGORIES
    batch_size: int = ranged(64, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    activation_rule: Literal["lite", "netdissect"] = "lite"
    top_images: int = ranged(8, ge=1)
    activations: Literal["auto", "disk", "recompute"] = "auto"
    activation_memory_mb: int = ranged(1024, ge=0)
    sensitivity: SensitivityParams = field(default_factory=SensitivityParams)
    calibrated: CalibratedParams = field(default_factory=CalibratedParams)

    def __post_init__(self) -> None:
        check_ranges(self)
        unknown = sorted(set(self.categories) - set(CATEGORIES))
        require(not unknown, "categories", f"unknown {unknown}; Broden has {list(CATEGORIES)}")


@dataclass(frozen=True)
class ProbeBootstrap(Record):
    """The detector count over block-bootstrap resamplings of the probe set
    (:func:`kdinterp.dissection.sensitivity.probe_bootstrap`): mean, sample sd, 2.5 and 97.5 percentiles."""

    replicates: int
    blocks: int
    mean: float
    sd: float
    low: float
    high: float


@dataclass(frozen=True)
class CalibratedSummary(Record):
    """The calibrated detector count (:mod:`kdinterp.dissection.calibrated`), with the settings it was made with.

    Attributes:
        fdr, permutations, split_seed, min_iou, primary_categories, splits: ``dissection.calibrated``.
        null: its ``null_distribution``, ``permutation`` or ``normal``.
        detectors: units whose test is rejected by Benjamini-Hochberg at ``fdr`` (and reach ``min_iou``).
        primary: those whose concept's category is one of ``primary_categories``.
        low_level: the others (``detectors - primary``).
        per_category: detectors per category of their concept (every selected category).
        unique_concepts: distinct concepts among the detectors.
        Every count is the mean over the ``splits`` splits (``calibrated.csv`` has each split's rows).
    """

    fdr: float
    permutations: int
    null: str
    split_seed: int
    min_iou: float
    primary_categories: tuple[str, ...]
    detectors: float
    primary: float
    low_level: float
    per_category: dict[str, float]
    unique_concepts: float
    splits: int = 1


@dataclass(frozen=True)
class DissectionSummary(Record):
    """``summary.json``: the numbers the paper reports for one model (:func:`kdinterp.dissection.tables.summary`).

    Attributes:
        model, seed: which model.
        layer: the dissected module; num_units: its channels; num_images: probe images tallied.
        quantile, iou_threshold: the settings the counts were made with.
        num_detectors: units whose best concept has IoU >= ``iou_threshold``.
        num_unique_concepts: distinct concepts among the detectors.
        detectors, unique_concepts: the same per category (the category of each unit's best concept).
        probe_bootstrap: the detector count's spread over probe-set resamplings.
        calibrated: the calibrated detector count; None when ``dissection.calibrated.enabled`` is
            false, and in summaries written before it existed.
        calibrated_rotated: the same in the rotated basis (the layer output times the random
            orthogonal matrix of ``sensitivity.rotation_seed``; Bau et al. 2017 §3.2); None without a
            rotation or a calibrated count.
    """

    model: str
    seed: int | None
    layer: str
    num_units: int
    num_images: int
    quantile: float
    iou_threshold: float
    num_detectors: int
    num_unique_concepts: int
    detectors: dict[str, int]
    unique_concepts: dict[str, int]
    probe_bootstrap: ProbeBootstrap
    calibrated: CalibratedSummary | None = None
    calibrated_rotated: CalibratedSummary | None = None


#: The summary's optional records of :class:`CalibratedSummary` (null when not measured).
CALIBRATED_RECORDS: tuple[str, ...] = ("calibrated", "calibrated_rotated")


def _flat(record: type, prefix: str = "") -> tuple[str, ...]:
    keys: list[str] = []
    for f in fields(record):
        if f.name in ("detectors", "unique_concepts") and record is DissectionSummary or f.name == "per_category":
            keys += [f"{prefix}{f.name}.{c}" for c in CATEGORIES]
        elif f.name == "probe_bootstrap":
            keys += _flat(ProbeBootstrap, f"{prefix}{f.name}.")
        elif f.name in CALIBRATED_RECORDS:
            keys += _flat(CalibratedSummary, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return tuple(keys)


#: ``summary.json``'s keys, nested keys flattened with a dot (per category for the counts); with
#: a record of :data:`CALIBRATED_RECORDS` null its keys are the one key (``calibrated``).
SUMMARY_KEYS: tuple[str, ...] = _flat(DissectionSummary)


@dataclass(frozen=True)
class DissectionNumbers:
    """What the reports read of one model's dissection.

    Attributes:
        summary: its ``summary.json``.
        sensitivity: ``(basis, quantile, iou_threshold) -> (num_detectors, mean_best_iou)`` from
            ``sensitivity.csv``, the keys' numbers rounded to 10 decimals (:func:`sensitivity_key`).
    """

    summary: DissectionSummary
    sensitivity: dict[tuple[str, float, float], tuple[int, float]]

    def __getattr__(self, name: str):
        """The summary's fields: ``numbers.num_detectors`` is ``numbers.summary.num_detectors``."""
        if name == "summary":
            raise AttributeError(name)
        return getattr(self.summary, name)


def sensitivity_key(basis: str, quantile: float, iou_threshold: float) -> tuple[str, float, float]:
    """The key of :attr:`DissectionNumbers.sensitivity` for a setting."""
    return basis, round(float(quantile), 10), round(float(iou_threshold), 10)


def run(params: Params, model: Model, layout: Layout) -> DissectionSummary:
    """Dissect ``model`` (:func:`kdinterp.measures.dissection.compute.dissect_model`)."""
    from kdinterp.measures.dissection.compute import dissect_model

    return dissect_model(params, model, layout)


def read(params: Params, layout: Layout, model: Model) -> DissectionNumbers:
    """The model's ``summary.json`` and ``sensitivity.csv``.

    Raises:
        FileNotFoundError: a file is missing (the message names the stage).
        StaleOutputError: written by other code, for another seed or with another IoU threshold.
    """
    import math

    import pandas as pd

    from kdinterp.dissection.sensitivity import SENSITIVITY_COLUMNS

    stage = MEASURE.stage_of(model)
    path = MEASURE.path(layout, model, SUMMARY)
    summary = DissectionSummary.read(path, stage)
    MEASURE.check_seed(layout, model, SUMMARY, summary.seed)
    if not math.isclose(summary.iou_threshold, params.dissection.iou_threshold):
        raise StaleOutputError(f"{path}: iou_threshold {summary.iou_threshold} differs from params.yaml "
                               f"dissection.iou_threshold {params.dissection.iou_threshold}; rerun `dvc repro -s {stage}`")
    table_path = MEASURE.path(layout, model, SENSITIVITY)
    table = pd.read_csv(require_input(table_path, stage, "figures"))
    missing = [c for c in SENSITIVITY_COLUMNS if c not in table.columns]
    if missing:
        raise StaleOutputError(f"{table_path}: columns {missing} are missing; rerun `dvc repro -f -s {stage}`")
    sensitivity = {sensitivity_key(row.basis, row.quantile, row.iou_threshold):
                   (int(row.num_detectors), float(row.mean_best_iou)) for row in table.itertuples()}
    return DissectionNumbers(summary, sensitivity)


MEASURE = Measure(
    name="dissection", stage="dissect", help="Network Dissection of model KEY on the probe set.",
    outputs=(THRESHOLDS, TALLY, UNITS, TOP_IMAGES, SENSITIVITY, CALIBRATED, SUMMARY), run=run, read=read,
    module="kdinterp.measures.dissection.compute", section="dissection", schema=DissectionParams)
