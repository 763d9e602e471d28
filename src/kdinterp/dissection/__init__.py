"""Network Dissection (Bau et al., CVPR 2017) of one layer on a Broden-layout probe set.

Reading order as in NetDissect-Lite (``research/dissection.md`` §1): activations -> thresholds ->
tally -> tables. Activations are streamed twice instead of being stored (Lite keeps them all in a
float64 memmap, §3.1):

1. thresholds (:mod:`~kdinterp.dissection.thresholds`) and each unit's top-activating images
   (:mod:`~kdinterp.dissection.topimages`);
2. the tally (:mod:`~kdinterp.dissection.upsample`, :mod:`~kdinterp.dissection.tally`).

Memory is bounded by the batch, the per-unit top-k buffers and a fixed upsampling budget,
whatever the number of probe images.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from kdinterp.broden import BrodenDataset, collate_broden
from kdinterp.dissection.tables import DissectionResult, summary, tally_table, units_table
from kdinterp.dissection.tally import ActivationRule, Tally
from kdinterp.dissection.thresholds import QuantileConvention, TopQuantile
from kdinterp.dissection.topimages import TopImages, TopImagesResult
from kdinterp.dissection.upsample import ActivePixels, active_pixels, bilinear_matrix, unit_masks
from kdinterp.hooks import LayerOutput, retain_layer
from kdinterp.progress import progress_bar

__all__ = [
    "ActivePixels",
    "DissectionResult",
    "TopImagesResult",
    "active_pixels",
    "bilinear_matrix",
    "dissect",
    "summary",
    "tally_table",
    "unit_masks",
    "units_table",
]


@torch.no_grad()
def dissect(model: nn.Module, layer: str, dataset: BrodenDataset, *, quantile: float, batch_size: int,
            device: torch.device, num_workers: int = 0, quantile_convention: QuantileConvention = "exact",
            activation_rule: ActivationRule = "lite", top_images: int = 8) -> DissectionResult:
    """Dissect ``layer`` of ``model`` on ``dataset``.

    Args:
        model: a classifier; run in eval mode on ``device``.
        layer: module path, e.g. ``"layer4"``; its output must be ``(B, U, h, w)``.
        dataset: the probe set (images already normalised as the model expects).
        quantile: upper tail mass for the per-unit thresholds (0.005 in the paper).
        batch_size: images per batch.
        device: where the model, the thresholds and the tally run.
        num_workers: DataLoader workers for reading images and PNGs.
        quantile_convention: ``exact`` or ``lite`` (:func:`~kdinterp.dissection.thresholds.quantile_level`).
        activation_rule: ``lite`` or ``netdissect`` (:mod:`~kdinterp.dissection.tally`).
        top_images: top-activating images kept per unit.

    Returns:
        The counts, IoUs and top images (:class:`DissectionResult`).

    Raises:
        ValueError: the layer's output is not finite on some image (the model is broken).
    """
    model.eval().to(device)
    size = (dataset.broden.rows[0].sh, dataset.broden.rows[0].sw)
    with retain_layer(model, layer) as retained:
        thresholds, top = _first_pass(model, retained, dataset, quantile, quantile_convention, top_images,
                                      _loader(dataset, batch_size, num_workers, segmentation=False), device)
        tally = _tally(model, retained, dataset.broden.label_category, len(dataset.broden.categories), thresholds,
                       size, activation_rule, _loader(dataset, batch_size, num_workers, segmentation=True), device)
    return DissectionResult(
        layer=layer, thresholds=thresholds.cpu().numpy(), intersection=tally.intersection.cpu().numpy(),
        unit_area=tally.unit_area.cpu().numpy(), concept_area=tally.concept_area.cpu().numpy(),
        iou=tally.iou().cpu().numpy(), label_names=dataset.broden.label_names,
        label_category=dataset.broden.label_category, categories=dataset.broden.categories,
        num_images=tally.num_images, top_images=top)


def _loader(dataset: BrodenDataset, batch_size: int, num_workers: int, *, segmentation: bool) -> DataLoader:
    source = BrodenDataset(dataset.broden, dataset.transform, segmentation=segmentation)
    return DataLoader(source, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate_broden)


def _activations(model: nn.Module, retained: LayerOutput, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    model(images.to(device))
    return retained.get()


def _first_pass(model: nn.Module, retained: LayerOutput, dataset: BrodenDataset, quantile: float,
                convention: QuantileConvention, top_images: int, loader: DataLoader,
                device: torch.device) -> tuple[torch.Tensor, TopImagesResult]:
    """Pass 1: exact thresholds ``(U,)`` float64 and the top images of every unit."""
    stream, top = None, TopImages(top_images)
    with progress_bar(f"thresholds ({retained.name})", total=len(loader)) as advance:
        for images, _, _ in loader:
            acts = _activations(model, retained, images, device)
            _check_finite(acts, top.seen, dataset)
            units = acts.shape[1]
            if stream is None:
                stream = TopQuantile(units, len(dataset) * acts.shape[2] * acts.shape[3], quantile, device,
                                     convention)
            stream.update(acts.transpose(0, 1).reshape(units, -1))
            top.update(acts)
            advance(1, "")
    return stream.thresholds(), top.result()


def _check_finite(acts: torch.Tensor, first: int, dataset: BrodenDataset) -> None:
    bad = (~torch.isfinite(acts)).flatten(1).any(1).nonzero()[:, 0]
    if bad.numel():
        images = [dataset.broden.rows[first + int(i)].image for i in bad[:3]]
        raise ValueError(f"the dissected layer's output is NaN or infinite on {bad.numel()} image(s) of a batch, "
                         f"e.g. {images}; the model is broken (check its checkpoint and training history)")


def _tally(model: nn.Module, retained: LayerOutput, label_category, num_categories: int, thresholds: torch.Tensor,
           size: tuple[int, int], rule: ActivationRule, loader: DataLoader, device: torch.device) -> Tally:
    """Pass 2: the IoU counts."""
    tally = Tally(len(thresholds), label_category, num_categories, device, rule)
    with progress_bar(f"tally ({retained.name})", total=len(loader)) as advance:
        for images, planes, scalars in loader:
            active = active_pixels(_activations(model, retained, images, device), thresholds, size)
            tally.update(active, planes.flatten(2), scalars)
            advance(1, "")
    return tally
