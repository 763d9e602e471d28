"""Stage ``dissect_*@``: Network Dissection of one model, written as tables."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import torch
from torch import nn
from torchvision.transforms import v2

from kdinterp.core.io import atomic_path
from kdinterp.core.params import CATEGORIES, Params
from kdinterp.core.progress import log
from kdinterp.core.runtime import configure_torch, resolve_device
from kdinterp.core.study import ROTATION_ROLES, Layout, Model
from kdinterp.dissection import engine as dissection
from kdinterp.dissection.broden import BrodenDataset, load_broden
from kdinterp.dissection.calibrated import CalibratedResult
from kdinterp.dissection.sensitivity import probe_bootstrap, sensitivity_table
from kdinterp.dissection.variants import Variant, random_rotation
from kdinterp.measures.dissection import (
    CALIBRATED,
    CALIBRATED_COLUMNS,
    MEASURE,
    SENSITIVITY,
    SUMMARY,
    TALLY,
    THRESHOLDS,
    TOP_IMAGES,
    UNITS,
    CalibratedParams,
    CalibratedSummary,
    DissectionParams,
    DissectionSummary,
    ProbeBootstrap,
)
from kdinterp.training.hooks import retain_layer
from kdinterp.training.memory_data import to_normalized
from kdinterp.training.models import load_model

__all__ = ["calibrated_summary", "calibrated_table", "dissect_model"]


def dissect_model(params: Params, model: Model, layout: Layout) -> DissectionSummary:
    """Stage ``dissect_*@<key>``: Network Dissection of ``dissection.layer``.

    Writes under ``outputs/dissection/<key>/``: ``thresholds.npy`` (``(U,)`` float64), ``tally.csv``, ``units.csv``,
    ``summary.json`` (:class:`~kdinterp.measures.dissection.DissectionSummary`: :mod:`kdinterp.dissection.tables`, plus ``probe_bootstrap``:
    :func:`kdinterp.dissection.sensitivity.probe_bootstrap`), ``sensitivity.csv``
    (:func:`kdinterp.dissection.sensitivity.sensitivity_table`: the main tally, the further
    quantiles and the rotated basis over the IoU grid), ``top_images.npz``
    (:class:`kdinterp.dissection.TopImagesResult`: ``image_index (U, k)`` int64 into the reader's
    rows, ``max_activation (U, k)`` float32, ``maps (U, k, h, w)`` float32) and ``calibrated.csv``
    (:func:`calibrated_table`; the summary's ``calibrated``: :func:`calibrated_summary`).
    """
    configure_torch()
    spec = params.dissection
    device = resolve_device(spec.device, "dissection.device")  # before any work: cuda without a GPU is refused
    net, _ = load_model(layout.model_file(model), model.arch)
    broden = load_broden(spec.broden_dir, spec.categories, spec.quantile, batch_size=spec.batch_size)
    dataset = BrodenDataset(broden, v2.PILToTensor())  # uint8 (3, H, W); normalised a batch at a time
    normalize = partial(to_normalized, mean=params.data.mean, std=params.data.std)
    band = spec.sensitivity
    result = dissection.dissect(net, spec.layer, dataset, quantile=spec.quantile, batch_size=spec.batch_size,
                                device=device, num_workers=params.data.num_workers,
                                activation_rule=spec.activation_rule, top_images=spec.top_images,
                                variants=_variants(spec, _layer_units(net, spec.layer, dataset, normalize)),
                                blocks=band.bootstrap_blocks, activations=spec.activations,
                                activation_memory_bytes=spec.activation_memory_mb << 20,
                                scratch_dir=layout.measure(MEASURE.name, model), batch_transform=normalize,
                                calibrated=spec.calibrated.options(),
                                calibrated_rotated=model.role in ROTATION_ROLES)
    units = dissection.units_table(result, spec.iou_threshold)
    bootstrap = probe_bootstrap(result.blocks, result.label_category, spec.iou_threshold,
                                replicates=band.bootstrap_replicates, seed=model.seed)
    summary = DissectionSummary(**dissection.summary(units, result, quantile=spec.quantile,
                                                     iou_threshold=spec.iou_threshold, model=model.name,
                                                     seed=model.seed),
                                probe_bootstrap=ProbeBootstrap(**bootstrap),
                                calibrated=calibrated_summary(result.calibrated, spec.calibrated, result.label_names,
                                                              result.categories),
                                calibrated_rotated=calibrated_summary(result.calibrated_rotated, spec.calibrated,
                                                                      result.label_names, result.categories))
    grid = sorted({*band.iou_thresholds, spec.iou_threshold})
    with atomic_path(MEASURE.path(layout, model, THRESHOLDS)) as tmp:
        np.save(tmp, result.thresholds)
    with atomic_path(MEASURE.path(layout, model, TALLY)) as tmp:
        dissection.tally_table(result).to_csv(tmp, index=False)
    with atomic_path(MEASURE.path(layout, model, UNITS)) as tmp:
        units.to_csv(tmp, index=False)
    with atomic_path(MEASURE.path(layout, model, SENSITIVITY)) as tmp:
        sensitivity_table(result, spec.quantile, grid).to_csv(tmp, index=False)
    with atomic_path(MEASURE.path(layout, model, TOP_IMAGES)) as tmp, open(tmp, "wb") as f:
        result.top_images.save(f)
    with atomic_path(MEASURE.path(layout, model, CALIBRATED)) as tmp:
        pd.concat([calibrated_table(result.calibrated, result.label_names, result.categories, "unit"),
                   calibrated_table(result.calibrated_rotated, result.label_names, result.categories, "rotated")],
                  ignore_index=True).to_csv(tmp, index=False)
    summary.write(MEASURE.path(layout, model, SUMMARY))
    log(f"{model.key}: {summary.num_detectors}/{summary.num_units} units are detectors covering "
        f"{summary.num_unique_concepts} concepts (IoU >= {spec.iou_threshold}); {summary.detectors}")
    if summary.calibrated is not None:
        c = summary.calibrated
        log(f"{model.key}: {c.detectors:g}/{summary.num_units} units are calibrated detectors (BH q <= {c.fdr}, "
            f"{c.null} null, mean of {c.splits} splits): {c.primary:g} of {list(c.primary_categories)}, {c.low_level} low-level; {c.per_category}")
    return summary


def calibrated_table(results: tuple[CalibratedResult, ...] | None, label_names: tuple[str, ...],
                     categories: tuple[str, ...], basis: str = "unit") -> pd.DataFrame:
    """``calibrated.csv`` rows of one basis: one row per split and unit (:data:`~kdinterp.measures.dissection.CALIBRATED_COLUMNS`).

    ``basis`` is ``unit`` or ``rotated``; ``split`` is the split's seed; ``concept`` and ``category`` are names (empty where the unit
    overlaps nothing on half A); ``intersection_b``, ``null_mean`` and ``null_sd`` are pixels;
    ``images_b`` is ``|J|``. With ``results`` None (``dissection.calibrated.enabled: false``) the
    table has the columns and no rows.
    """
    if results is None:
        return pd.DataFrame({c: [] for c in CALIBRATED_COLUMNS})
    names = np.asarray(label_names, dtype=object)
    tables = []
    for result in results:
        category = np.asarray([*categories, ""], dtype=object)[result.category]      # -1 -> ""
        tables.append(pd.DataFrame({
            "basis": basis, "split": np.full(result.num_units, result.options.split_seed, dtype=np.int64),
            "unit": np.arange(result.num_units, dtype=np.int64),
            "concept": np.where(result.concept > 0, names[result.concept], ""), "category": category,
            "iou_a": result.iou_a, "iou_b": result.iou_b, "intersection_b": result.intersection_b,
            "null_mean": result.null_mean, "null_sd": result.null_sd, "z": result.z, "p": result.p, "q": result.q,
            "detector": result.detector, "images_b": result.images_b}))
    return pd.concat(tables, ignore_index=True)[list(CALIBRATED_COLUMNS)]


def calibrated_summary(results: tuple[CalibratedResult, ...] | None, spec: CalibratedParams,
                       label_names: tuple[str, ...], categories: tuple[str, ...]) -> CalibratedSummary | None:
    """The summary's ``calibrated`` record: each count is its mean over the splits (None when not run)."""
    if results is None:
        return None
    primary_index = [categories.index(c) for c in spec.primary_categories if c in categories]
    shown = [c for c in CATEGORIES if c in categories]
    counts = []
    for result in results:
        detected = result.category[result.detector]
        primary = int(np.isin(detected, primary_index).sum())
        counts.append({"detectors": len(detected), "primary": primary, "low_level": len(detected) - primary,
                       "unique_concepts": len({label_names[c] for c in result.concept[result.detector]}),
                       **{c: int((detected == categories.index(c)).sum()) for c in shown}})
    mean = {key: float(np.mean([c[key] for c in counts])) for key in counts[0]}
    return CalibratedSummary(
        fdr=spec.fdr, permutations=spec.permutations, null=spec.null_distribution, split_seed=spec.split_seed,
        min_iou=spec.min_iou, primary_categories=spec.primary_categories, detectors=mean["detectors"],
        primary=mean["primary"], low_level=mean["low_level"], per_category={c: mean[c] for c in shown},
        unique_concepts=mean["unique_concepts"], splits=len(results))


def _variants(spec: DissectionParams, units: int) -> list[Variant]:
    """The further tallies of ``dissection.sensitivity``: other quantiles (unit basis), then the rotated basis."""
    band = spec.sensitivity
    variants = [Variant("unit", q) for q in sorted(set(band.quantiles) - {spec.quantile})]
    if band.rotation_seed is not None:
        variants.append(Variant("rotated", spec.quantile, random_rotation(units, band.rotation_seed)))
    return variants


@torch.no_grad()
def _layer_units(net: nn.Module, layer: str, dataset: BrodenDataset, normalize) -> int:
    """``U``: the dissected layer's channels, from one forward pass on the first probe image (``normalize``d)."""
    with retain_layer(net, layer) as retained:
        net.eval()(normalize(dataset[0][0][None]))
        return int(retained.get().shape[1])
