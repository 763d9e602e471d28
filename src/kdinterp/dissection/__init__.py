"""Network Dissection (Bau et al., CVPR 2017) of one layer on a Broden-layout probe set.

Reading order as in NetDissect-Lite (``research/dissection.md`` §1): activations -> thresholds ->
tally -> tables, in two passes over the probe set (Lite keeps all activations in a float64 memmap, §3.1):

1. thresholds (:mod:`~kdinterp.dissection.thresholds`) and each unit's top-activating images
   (:mod:`~kdinterp.dissection.topimages`);
2. the tally (:mod:`~kdinterp.dissection.upsample`, :mod:`~kdinterp.dissection.tally`).

When the layer's activations over the whole probe set fit in :data:`KEEP_ACTIVATIONS_BYTES`
(float32, exactly what the model produced), pass 1 keeps them and pass 2 reads only the label
planes; otherwise pass 2 runs the model again.

Further tallies (:mod:`~kdinterp.dissection.variants`: other quantiles, the rotated-basis control)
ride on the same two passes, and the main tally can be split into blocks of probe images for the
probe bootstrap (:mod:`~kdinterp.dissection.sensitivity`).

Memory is bounded by the batch, the per-unit top-k buffers and a fixed upsampling budget,
whatever the number of probe images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from kdinterp.broden import BrodenDataset, collate_broden
from kdinterp.dissection.tables import DissectionResult, summary, tally_table, units_table
from kdinterp.dissection.tally import ActivationRule, Tally
from kdinterp.dissection.thresholds import QuantileConvention, TopQuantile
from kdinterp.dissection.topimages import TopImages, TopImagesResult
from kdinterp.dissection.upsample import ActivePixels, active_pixels, bilinear_matrix, unit_masks
from kdinterp.dissection.variants import BlockCounts, Variant, VariantResult
from kdinterp.hooks import LayerOutput, retain_layer
from kdinterp.progress import progress_bar

__all__ = [
    "ActivePixels",
    "BlockCounts",
    "DissectionResult",
    "TopImagesResult",
    "Variant",
    "VariantResult",
    "active_pixels",
    "bilinear_matrix",
    "dissect",
    "summary",
    "tally_table",
    "unit_masks",
    "units_table",
]


#: Keep the layer's activations between the passes when they take at most this many bytes (float32).
KEEP_ACTIVATIONS_BYTES = 1 << 30


@torch.no_grad()
def dissect(model: nn.Module, layer: str, dataset: BrodenDataset, *, quantile: float, batch_size: int,
            device: torch.device, num_workers: int = 0, quantile_convention: QuantileConvention = "exact",
            activation_rule: ActivationRule = "lite", top_images: int = 8, variants: Sequence[Variant] = (),
            blocks: int = 0) -> DissectionResult:
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
        variants: further tallies from the same passes (:mod:`~kdinterp.dissection.variants`), each
            with its own thresholds (same convention and rule).
        blocks: split the main tally's counts over this many consecutive blocks of probe batches
            (``min(blocks, batches)``; 0: no split), for the probe bootstrap.

    Returns:
        The counts, IoUs and top images (:class:`DissectionResult`), with ``variants`` in the order
        given and ``blocks`` when asked for.

    Raises:
        ValueError: the layer's output is not finite on some image (the model is broken).
    """
    model.eval().to(device)
    size = (dataset.broden.rows[0].sh, dataset.broden.rows[0].sw)
    views = [Variant("unit", quantile), *variants]
    with retain_layer(model, layer) as retained:
        thresholds, top, kept = _first_pass(model, retained, dataset, views, quantile_convention, top_images,
                                            _loader(dataset, batch_size, num_workers, segmentation=False), device)
        tallies, block_counts = _tally(model, retained, dataset.broden.label_category,
                                       len(dataset.broden.categories), views, thresholds, size, activation_rule,
                                       _loader(dataset, batch_size, num_workers, segmentation=True,
                                               images=kept is None), device, blocks, kept)
    tally = tallies[0]
    return DissectionResult(
        layer=layer, thresholds=thresholds[0].cpu().numpy(), intersection=tally.intersection.cpu().numpy(),
        unit_area=tally.unit_area.cpu().numpy(), concept_area=tally.concept_area.cpu().numpy(),
        iou=tally.iou().cpu().numpy(), label_names=dataset.broden.label_names,
        label_category=dataset.broden.label_category, categories=dataset.broden.categories,
        num_images=tally.num_images, top_images=top,
        variants=tuple(VariantResult(v.basis, v.quantile, t.cpu().numpy(), other.iou().cpu().numpy())
                       for v, t, other in zip(variants, thresholds[1:], tallies[1:], strict=True)),
        blocks=block_counts)


def _loader(dataset: BrodenDataset, batch_size: int, num_workers: int, *, segmentation: bool,
            images: bool = True) -> DataLoader:
    source = BrodenDataset(dataset.broden, dataset.transform, segmentation=segmentation, images=images)
    return DataLoader(source, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate_broden)


def _activations(model: nn.Module, retained: LayerOutput, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    model(images.to(device))
    return retained.get()


def _first_pass(model: nn.Module, retained: LayerOutput, dataset: BrodenDataset, views: list[Variant],
                convention: QuantileConvention, top_images: int, loader: DataLoader,
                device: torch.device) -> tuple[list[torch.Tensor], TopImagesResult, list[torch.Tensor] | None]:
    """Pass 1: exact thresholds ``(U,)`` float64 of every view (the main one first), the top images of every
    unit, and the activations of every batch when they fit in :data:`KEEP_ACTIVATIONS_BYTES` (else None)."""
    streams: list[TopQuantile] = []
    top = TopImages(top_images)
    kept: list[torch.Tensor] | None = []
    with progress_bar(f"thresholds ({retained.name})", total=len(loader)) as advance:
        for images, _, _ in loader:
            acts = _activations(model, retained, images, device)
            _check_finite(acts, top.seen, dataset)
            units = acts.shape[1]
            if not streams:
                total = len(dataset) * acts.shape[2] * acts.shape[3]
                streams = [TopQuantile(units, total, view.quantile, device, convention) for view in views]
                if total * units * 4 > KEEP_ACTIVATIONS_BYTES:
                    kept = None
            if kept is not None:
                kept.append(acts.to(torch.float32, copy=True))
            for view, stream in zip(views, streams, strict=True):
                stream.update(view.apply(acts).transpose(0, 1).reshape(units, -1))
            top.update(acts)
            advance(1, "")
    return [stream.thresholds() for stream in streams], top.result(), kept


def _check_finite(acts: torch.Tensor, first: int, dataset: BrodenDataset) -> None:
    bad = (~torch.isfinite(acts)).flatten(1).any(1).nonzero()[:, 0]
    if bad.numel():
        images = [dataset.broden.rows[first + int(i)].image for i in bad[:3]]
        raise ValueError(f"the dissected layer's output is NaN or infinite on {bad.numel()} image(s) of a batch, "
                         f"e.g. {images}; the model is broken (check its checkpoint and training history)")


def _tally(model: nn.Module, retained: LayerOutput, label_category, num_categories: int, views: list[Variant],
           thresholds: list[torch.Tensor], size: tuple[int, int], rule: ActivationRule, loader: DataLoader,
           device: torch.device, blocks: int,
           kept: list[torch.Tensor] | None) -> tuple[list[Tally], BlockCounts | None]:
    """Pass 2: the IoU counts of every view; the main view's counts per block of batches when ``blocks > 0``.

    ``kept``: pass 1's activations batch by batch (the loader then reads labels only), or None to run the model.
    """
    tallies = [Tally(len(t), label_category, num_categories, device, rule) for t in thresholds]
    blocks = min(blocks, len(loader))
    snapshots: list[tuple[torch.Tensor, ...]] = []
    with progress_bar(f"tally ({retained.name})", total=len(loader)) as advance:
        for batch, (images, planes, scalars) in enumerate(loader):
            acts = kept[batch] if kept is not None else _activations(model, retained, images, device)
            for view, limit, tally in zip(views, thresholds, tallies, strict=True):
                tally.update(active_pixels(view.apply(acts), limit, size), planes.flatten(2), scalars)
            if blocks and (batch + 1) * blocks // len(loader) > batch * blocks // len(loader):  # a block ends
                main = tallies[0]
                snapshots.append(tuple(t.clone() for t in (main.intersection, main.unit_area, main.concept_area))
                                 + (torch.tensor(main.num_images),))
            advance(1, "")
    return tallies, (_block_counts(snapshots) if blocks else None)


def _block_counts(snapshots: list[tuple[torch.Tensor, ...]]) -> BlockCounts:
    """Per-block counts from the cumulative counts at the end of each block."""
    stacked = [torch.stack([s[i] for s in snapshots]).cpu().numpy() for i in range(4)]
    first = [np.zeros_like(a[:1]) for a in stacked]
    intersection, unit_area, concept_area, images = (np.diff(a, axis=0, prepend=f) for a, f in zip(stacked, first))
    return BlockCounts(intersection, unit_area, concept_area, images)
