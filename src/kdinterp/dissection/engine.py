"""The dissection engine: :func:`dissect` runs the two passes over the probe set that the package
docstring (:mod:`kdinterp.dissection`) describes, and returns a :class:`DissectionResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from kdinterp.core.errors import NonFiniteError
from kdinterp.core.progress import progress_bar
from kdinterp.dissection.activations import ActivationStorage, ActivationStore
from kdinterp.dissection.broden import BrodenDataset, collate_broden
from kdinterp.dissection.calibrated import CalibratedCollector, CalibratedOptions, CalibratedResult, split_halves
from kdinterp.dissection.calibrated_null import run_tests
from kdinterp.dissection.tables import DissectionResult, summary, tally_table, units_table
from kdinterp.dissection.tally import ActivationRule, Tally
from kdinterp.dissection.thresholds import TopQuantile
from kdinterp.dissection.topimages import TopImages, TopImagesResult
from kdinterp.dissection.upsample import ActivePixels, active_pixels, bilinear_matrix, unit_masks
from kdinterp.dissection.variants import BlockCounts, Variant, VariantResult
from kdinterp.training.hooks import LayerOutput, retain_layer

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


#: ``activations="auto"`` keeps the layer's activations in memory up to this many bytes (float32), else on disk.
KEEP_ACTIVATIONS_BYTES = 1 << 30


@torch.no_grad()
def dissect(model: nn.Module, layer: str, dataset: BrodenDataset, *, quantile: float, batch_size: int,
            device: torch.device, num_workers: int = 0, activation_rule: ActivationRule = "lite", top_images: int = 8,
            variants: Sequence[Variant] = (), blocks: int = 0, activations: ActivationStorage = "auto",
            activation_memory_bytes: int = KEEP_ACTIVATIONS_BYTES, scratch_dir: str | Path | None = None,
            batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
            calibrated: CalibratedOptions | None = None, calibrated_rotated: bool = True) -> DissectionResult:
    """Dissect ``layer`` of ``model`` on ``dataset``.

    Args:
        model: a classifier; run in eval mode on ``device``.
        layer: module path, e.g. ``"layer4"``; its output must be ``(B, U, h, w)``.
        dataset: the probe set; its images, after ``batch_transform``, are what the model expects.
        quantile: upper tail mass for the per-unit thresholds (0.005 in the paper): each threshold is the
            exact quantile at level ``1 - quantile`` (:mod:`~kdinterp.dissection.thresholds`).
        batch_size: images per batch.
        device: where the model, the thresholds and the tally run.
        num_workers: DataLoader workers for reading images and PNGs.
        activation_rule: ``lite`` or ``netdissect`` (:mod:`~kdinterp.dissection.tally`).
        top_images: top-activating images kept per unit.
        variants: further tallies from the same passes (:mod:`~kdinterp.dissection.variants`), each
            with its own thresholds (same rule).
        blocks: split the main tally's counts over this many consecutive blocks of probe batches
            (``min(blocks, batches)``; 0: no split), for the probe bootstrap.
        activations: where the layer's activations wait for the tally (:mod:`~kdinterp.dissection.activations`):
            ``auto`` (memory up to ``activation_memory_bytes``, else a memmap), ``disk`` or ``recompute``.
        activation_memory_bytes: the in-memory cap of ``auto``.
        scratch_dir: where the memmap's temporary directory is made (None: the system's temp directory).
        batch_transform: applied to each batch of images ``(B, 3, H, W)`` on ``device`` before the model
            (e.g. :func:`kdinterp.training.memory_data.to_normalized`, so that images are normalised a batch at a time);
            None: the dataset's images go to the model as they are.
        calibrated: also test each unit against a permutation null (:mod:`~kdinterp.dissection.calibrated`),
            from the main tally's unit masks during the tally pass; None: not run.
        calibrated_rotated: run that test in the first rotated-basis variant too (when ``variants`` has one);
            False: only in the unit basis (the result's ``calibrated_rotated`` is None).

    Returns:
        The counts, IoUs and top images (:class:`DissectionResult`), with ``variants`` in the order
        given, ``blocks`` and ``calibrated`` when asked for.

    Raises:
        NonFiniteError: the layer's output is not finite on some image (the model is broken); the
            message names the layer and up to 3 probe images.
        ValueError: an unknown ``activations``, or ``calibrated`` with fewer than 2 probe images.
    """
    model.eval().to(device)
    size = (dataset.broden.rows[0].sh, dataset.broden.rows[0].sw)
    views = [Variant("unit", quantile), *variants]
    forward = _Forward(model, batch_transform, device)
    collectors: dict[int, list[CalibratedCollector]] = {}   # view index -> one collector per split
    with retain_layer(model, layer) as forward.retained, \
            ActivationStore(activations, len(dataset), activation_memory_bytes, scratch_dir) as kept:
        thresholds, top = _first_pass(forward, dataset, views, top_images,
                                      _loader(dataset, batch_size, num_workers, segmentation=False), kept)
        if calibrated is not None:  # the main view and the rotated one; per split: seeds split_seed, split_seed + 1, ...
            for index in _calibrated_views(views, calibrated_rotated):
                collectors[index] = [CalibratedCollector(len(dataset), len(thresholds[0]),
                                                         dataset.broden.label_category, len(dataset.broden.categories),
                                                         split_halves(len(dataset), options.split_seed))
                                     for options in calibrated.per_split()]
        tallies, block_counts = _tally(forward, dataset.broden.label_category, len(dataset.broden.categories),
                                       views, thresholds, size, activation_rule,
                                       _loader(dataset, batch_size, num_workers, segmentation=True,
                                               images=not kept.kept), blocks, kept, collectors)
    tally = tallies[0]
    return DissectionResult(
        layer=layer, thresholds=thresholds[0].cpu().numpy(), intersection=tally.intersection.cpu().numpy(),
        unit_area=tally.unit_area.cpu().numpy(), concept_area=tally.concept_area.cpu().numpy(),
        iou=tally.iou().cpu().numpy(), label_names=dataset.broden.label_names,
        label_category=dataset.broden.label_category, categories=dataset.broden.categories,
        num_images=tally.num_images, top_images=top,
        variants=tuple(VariantResult(v.basis, v.quantile, t.cpu().numpy(), other.iou().cpu().numpy())
                       for v, t, other in zip(variants, thresholds[1:], tallies[1:], strict=True)),
        blocks=block_counts, calibrated=_calibrated_results(collectors, 0, calibrated),
        calibrated_rotated=_calibrated_results(collectors, next(iter(_calibrated_views(views, calibrated_rotated)[1:]), -1),
                                               calibrated))


def _calibrated_views(views: list[Variant], rotated: bool = True) -> list[int]:
    """The views the calibrated detector runs on: the main one (0), and (``rotated``) the first rotated-basis
    variant if any."""
    found = [i for i, view in enumerate(views) if i > 0 and view.basis == "rotated"]
    return [0, *found[:1]] if rotated else [0]


def _calibrated_results(collectors: dict[int, list[CalibratedCollector]], index: int,
                        calibrated: CalibratedOptions | None) -> tuple[CalibratedResult, ...] | None:
    """The test's result on view ``index``, one per split; None when not run there."""
    if calibrated is None or index not in collectors:
        return None
    return tuple(run_tests(c, o) for c, o in zip(collectors[index], calibrated.per_split(), strict=True))


def _worker_init(_worker: int) -> None:
    """DataLoader workers decode with one torch thread, so that they and the main process share the cores."""
    torch.set_num_threads(1)


def _loader(dataset: BrodenDataset, batch_size: int, num_workers: int, *, segmentation: bool,
            images: bool = True) -> DataLoader:
    source = BrodenDataset(dataset.broden, dataset.transform, segmentation=segmentation, images=images)
    return DataLoader(source, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate_broden, worker_init_fn=_worker_init if num_workers else None)


class _Forward:
    """The model, its input transform and the hook on the dissected layer."""

    def __init__(self, model: nn.Module, batch_transform: Callable[[torch.Tensor], torch.Tensor] | None,
                 device: torch.device) -> None:
        self.model, self.batch_transform, self.device = model, batch_transform, device
        self.retained: LayerOutput | None = None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """The layer's output ``(B, U, h, w)`` on a batch of images."""
        images = images.to(self.device)
        if self.batch_transform is not None:
            images = self.batch_transform(images)
        self.model(images)
        return self.retained.get()


def _first_pass(forward: _Forward, dataset: BrodenDataset, views: list[Variant], top_images: int, loader: DataLoader,
                kept: ActivationStore) -> tuple[list[torch.Tensor], TopImagesResult]:
    """Pass 1: exact thresholds ``(U,)`` float64 of every view (the main one first) and the top images of every
    unit; the activations of every batch go to ``kept``."""
    streams: list[TopQuantile] = []
    top = TopImages(top_images)
    with progress_bar(f"thresholds ({forward.retained.name})", total=len(loader)) as advance:
        for images, _, _ in loader:
            acts = forward(images)
            _check_finite(acts, top.seen, dataset, forward.retained.name)
            units = acts.shape[1]
            if not streams:
                total = len(dataset) * acts.shape[2] * acts.shape[3]
                streams = [TopQuantile(units, total, view.quantile, forward.device) for view in views]
            kept.append(acts)
            for view, stream in zip(views, streams, strict=True):
                stream.update(view.apply(acts).transpose(0, 1).reshape(units, -1))
            top.update(acts)
            advance(1, "")
    return [stream.thresholds() for stream in streams], top.result()


def _check_finite(acts: torch.Tensor, first: int, dataset: BrodenDataset, layer: str) -> None:
    """Raise :class:`NonFiniteError` naming up to 3 probe images if the batch ``acts (B, U, h, w)`` is not finite."""
    bad = (~torch.isfinite(acts)).flatten(1).any(1).nonzero()[:, 0]
    if bad.numel():
        images = [dataset.broden.rows[first + int(i)].image for i in bad[:3]]
        raise NonFiniteError(f"dissection: layer '{layer}' output is NaN or infinite on {bad.numel()} image(s) of a "
                             f"batch, e.g. {images}; the model is broken (check its checkpoint and training history)")


def _tally(forward: _Forward, label_category, num_categories: int, views: list[Variant],
           thresholds: list[torch.Tensor], size: tuple[int, int], rule: ActivationRule, loader: DataLoader,
           blocks: int, kept: ActivationStore,
           collectors: dict[int, list[CalibratedCollector]] | None = None) -> tuple[list[Tally], BlockCounts | None]:
    """Pass 2: the IoU counts of every view; the main view's counts per block of batches when ``blocks > 0``;
    a view's unit masks and the labels go to its ``collectors`` too (view index -> the calibrated detector per split).

    The activations come from ``kept`` when it kept them (the loader then reads labels only), else from
    the model. The labels of a batch are prepared once for all views.
    """
    tallies = [Tally(len(t), label_category, num_categories, forward.device, rule) for t in thresholds]
    blocks = min(blocks, len(loader))
    snapshots: list[tuple[torch.Tensor, ...]] = []
    start = 0
    with progress_bar(f"tally ({forward.retained.name})", total=len(loader)) as advance:
        for batch, (images, planes, scalars) in enumerate(loader):
            stop = start + planes.shape[0]
            acts = kept.get(start, stop, forward.device) if kept.kept else forward(images)
            labels = tallies[0].prepare(planes.flatten(2), scalars, size[0] * size[1])  # the same for every view
            for index, (view, limit, tally) in enumerate(zip(views, thresholds, tallies, strict=True)):
                active = active_pixels(view.apply(acts), limit, size)
                tally.add(active, labels)
                for collector in (collectors or {}).get(index, ()):
                    collector.add(start, active, planes.flatten(2), scalars)
            start = stop
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
