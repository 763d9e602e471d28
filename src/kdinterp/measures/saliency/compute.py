"""Stage ``saliency_*@``: saliency maps of one model on the validation images, scored against the ground truth.

For P12 (five-band scores, :mod:`kdinterp.measures.saliency.five_band`) and P14 (object mass shares of the loss
gradient and the activation of ``saliency.layer``, research/paper.md §4.2).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from kdinterp.core.io import atomic_path
from kdinterp.core.params import DataParams, Params
from kdinterp.core.progress import log
from kdinterp.core.runtime import configure_torch, resolve_device
from kdinterp.core.study import Layout, Model
from kdinterp.core.subsets import evenly_spread
from kdinterp.measures.saliency import (
    FIVE_BAND,
    FIVE_BAND_COLUMNS,
    MAPS,
    MEASURE,
    SUMMARY,
    FiveBandScores,
    SaliencyParams,
    SaliencySummary,
    attribution,
    five_band,
)
from kdinterp.training.folders import DataError, image_folder
from kdinterp.training.memory_data import to_normalized
from kdinterp.training.models import load_trained

__all__ = ["saliency_model"]


def _load(data: DataParams, spec: SaliencyParams) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """The selected val images: their indices into the sorted files ``(N,)``, uint8 ``(N, 3, S, S)``, targets
    ``(N,)``, object and discriminative regions ``(N, S, S)`` bool.

    Raises:
        DataError: an image is not ``data.image_size`` square (the ground truth has the image's pixels,
            so the stage scores images as they are, without resizing).
        FileNotFoundError: a ground-truth map is missing.
    """
    folder = image_folder(data.val_dir, transform=None)
    root, truth_root = Path(data.val_dir), Path(spec.ground_truth_dir)
    chosen = evenly_spread(len(folder), spec.num_images)
    images, targets, objects, parts = [], [], [], []
    for i in chosen:
        path, target = folder.samples[i]
        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB"))
        if pixels.shape[:2] != (data.image_size, data.image_size):
            raise DataError(f"{path}: {pixels.shape[1]}x{pixels.shape[0]} px, but data.image_size is "
                            f"{data.image_size}; the saliency stage scores images at their own size")
        obj, part = five_band.read_ground_truth(Path(path), root, truth_root)
        images.append(torch.from_numpy(pixels.copy()).permute(2, 0, 1))
        targets.append(target)
        objects.append(obj)
        parts.append(part)
    return chosen, torch.stack(images), torch.tensor(targets, dtype=torch.int64), np.stack(objects), np.stack(parts)


def _maps(net: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, params: Params,
          device: torch.device) -> dict[str, np.ndarray]:
    """Every method's maps plus ``loss_gradient`` and ``activation``: name -> float32 ``(N, S, S)``."""
    spec = params.saliency
    stdev = spec.smoothgrad_noise / (sum(params.data.std) / 3)  # share of [0, 1] in normalised units
    out: dict[str, list[torch.Tensor]] = {name: [] for name in (*spec.methods, "loss_gradient", "activation")}
    for start in range(0, len(images), spec.batch_size):
        x = to_normalized(images[start:start + spec.batch_size].to(device), params.data.mean, params.data.std)
        y = targets[start:start + spec.batch_size].to(device)
        for method in spec.methods:
            out[method].append(attribution.attribute(net, x, y, method, layer=spec.layer,
                                                  smoothgrad_samples=spec.smoothgrad_samples,
                                                  smoothgrad_stdev=stdev).cpu())
        out["loss_gradient"].append(attribution.loss_gradient(net, x, y).cpu())
        out["activation"].append(attribution.activation_map(net, x, spec.layer).cpu())
    return {name: torch.cat(parts).numpy().astype(np.float32) for name, parts in out.items()}


def _mean(values: np.ndarray) -> float | None:
    """The mean of the finite values, or None when there are none (e.g. Grad-CAM all zero on an untrained control)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def _none_if_nan(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _table(maps: dict[str, np.ndarray], truth: np.ndarray, obj: np.ndarray, spec: SaliencyParams) -> pd.DataFrame:
    """``five_band.csv``: per method the mean and sd over images of each score, and the mean object mass share."""
    rows = []
    for method in spec.methods:
        scores = five_band.five_band_scores(maps[method], truth, spec.thresholds)
        row = {"method": method, "num_images": len(truth)}
        row |= {k: float(v.mean()) for k, v in scores.items()}
        row |= {f"{k}_sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan for k, v in scores.items()}
        row["object_mass"] = _mean(five_band.mass_share(maps[method], obj))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(FIVE_BAND_COLUMNS))


def saliency_model(params: Params, model: Model, layout: Layout) -> SaliencySummary:
    """Stage ``saliency_*@<key>``: saliency maps on the val images, five-band scores and object mass shares.

    Writes under ``outputs/saliency/<key>/``: ``five_band.csv`` (:data:`~kdinterp.measures.saliency.FIVE_BAND_COLUMNS`,
    one row per ``saliency.methods``), ``summary.json`` (:class:`~kdinterp.measures.saliency.SaliencySummary`:
    ``five_band`` per method, ``object_mass`` of ``loss_gradient``, ``activation`` and each method: mean
    shares of map mass inside the object region) and ``maps.npz`` for ``saliency.grid_images`` images spread
    over the selection (``index (k,)`` int64 into the sorted val files, ``targets (k,)``, ``images (k, 3, S, S)``
    uint8, ``object``/``discriminative (k, S, S)`` bool, and float32 ``(k, S, S)`` maps per method,
    ``loss_gradient`` and ``activation``). SmoothGrad's noise is seeded with the model's seed.

    Raises:
        ParamsError: params.yaml has no ``saliency`` section.
        DataError, FileNotFoundError, CheckpointError: missing or mismatched data, ground truth or model.
    """
    from kdinterp.core.config import ParamsError

    spec = params.saliency
    if spec is None:
        raise ParamsError("params.yaml: no 'saliency' section; add one (see params.yaml of the default profile)")
    configure_torch()
    device = resolve_device(spec.device, "saliency.device")
    net, _, _ = load_trained(params, model, layout.model_file(model))
    net.to(device)
    chosen, images, targets, obj, part = _load(params.data, spec)
    torch.manual_seed(model.seed)
    maps = _maps(net, images, targets, params, device)
    table = _table(maps, five_band.ground_truth(obj, part), obj, spec)
    rows = table.to_dict("records")
    mass = {name: _mean(five_band.mass_share(maps[name], obj)) for name in ("loss_gradient", "activation")}
    summary = SaliencySummary(
        model=model.name, seed=model.seed, group=model.group.kind, role=model.role or "", num_images=len(images),
        thresholds=tuple(spec.thresholds),
        five_band={r["method"]: FiveBandScores(**{k: r[k] for k in five_band.METRICS}) for r in rows},
        object_mass=mass | {r["method"]: _none_if_nan(r["object_mass"]) for r in rows})
    grid = evenly_spread(len(images), spec.grid_images)
    with atomic_path(MEASURE.path(layout, model, FIVE_BAND)) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(MEASURE.path(layout, model, MAPS)) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, index=chosen[grid], targets=targets.numpy()[grid], images=images.numpy()[grid],
                            object=obj[grid], discriminative=part[grid], **{k: v[grid] for k, v in maps.items()})
    summary.write(MEASURE.path(layout, model, SUMMARY))
    best = table.set_index("method")
    log(f"{model.key}: five-band pixel accuracy " + ", ".join(f"{m} {best.loc[m, 'pixel_acc']:.3f}" for m in spec.methods)
        + f"; object mass: loss gradient {mass['loss_gradient']}, activation {mass['activation']}")
    return summary
