"""Stage ``diffroar_*@``: DiffROAR of one model's attributions (Shah et al., NeurIPS 2021; P13)."""

from __future__ import annotations

import time

import torch

from kdinterp.core.params import Params
from kdinterp.core.progress import log
from kdinterp.core.runtime import configure_torch, resolve_device
from kdinterp.core.study import Layout, Model
from kdinterp.core.subsets import evenly_spread
from kdinterp.measures.diffroar import MEASURE, SUMMARY, DiffROARPoint, DiffROARSummary, EvaluatorRecord
from kdinterp.measures.diffroar.evaluator import EvaluatorSettings, channel_mean, diffroar
from kdinterp.measures.saliency.attribution import attribute
from kdinterp.training.memory_data import InMemoryImages, to_normalized
from kdinterp.training.models import load_trained

__all__ = ["diffroar_model", "model_attributions"]


def model_attributions(net: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, method: str,
                       batch_size: int) -> torch.Tensor:
    """``attribute(net, images, targets, method)`` a batch at a time (:func:`kdinterp.measures.saliency.attribution.attribute`).

    Args:
        net: the assessed model (put in eval mode by ``attribute``).
        images: ``(N, 3, H, W)`` float, normalised, on the model's device.
        targets: int64 ``(N,)``, the true classes (the attribution is taken for them).
        method: an attribution method of :data:`kdinterp.measures.saliency.METHODS`.
        batch_size: images per pass.

    Returns:
        float32 ``(N, H, W)``, >= 0, on the CPU.
    """
    maps = [attribute(net, images[s:s + batch_size], targets[s:s + batch_size], method).float().cpu()
            for s in range(0, images.shape[0], batch_size)]
    return torch.cat(maps)


def diffroar_model(params: Params, model: Model, layout: Layout) -> DiffROARSummary:
    """Stage ``diffroar_*@<key>``: DiffROAR(k) of ``model``'s attributions for each k of ``diffroar.fractions``.

    The model's attributions (``diffroar.method``, for the true class; teacher-free) are computed in
    memory on the validation images and ``diffroar.train_images`` training images (:func:`kdinterp.core.subsets.evenly_spread`;
    ``data.train_dir``/``val_dir`` decoded by
    :class:`~kdinterp.training.memory_data.InMemoryImages` with ``train=False``: no augmentation, ``S x S``,
    normalised with ``data.mean``/``std``). The masked pixels are set to the per-channel mean of
    the normalised training images. Then :func:`kdinterp.measures.diffroar.evaluator.diffroar` retrains the evaluator
    on the top-k and bottom-k training sets. The global RNG is seeded with ``diffroar.seed`` before
    the attributions (SmoothGrad's noise).

    Writes ``outputs/diffroar/<key>/summary.json`` (:class:`~kdinterp.measures.diffroar.DiffROARSummary`).

    Raises:
        CheckpointError: the model file is missing or does not match params and data.
        DataError: the data set is missing or its images differ in size.
    """
    configure_torch()
    spec, data = params.diffroar, params.data
    device = resolve_device(spec.device, "diffroar.device")
    started = time.perf_counter()
    net, _, classes = load_trained(params, model, layout.model_file(model))
    net.to(device)
    torch.manual_seed(spec.seed)
    sets = []
    for root, limit in ((data.train_dir, spec.train_images), (data.val_dir, None)):
        folder = InMemoryImages(root, data, train=False)
        keep = torch.from_numpy(evenly_spread(len(folder), limit))
        images = to_normalized(folder.images[keep].to(device), data.mean, data.std)
        targets = folder.targets[keep].to(device)
        sets.append((images, targets, model_attributions(net, images, targets, spec.method,
                                                         spec.attribution_batch_size).to(device)))
    attributed = time.perf_counter()
    settings = EvaluatorSettings(epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr, seed=spec.seed,
                                 width=spec.width)
    fill = channel_mean(sets[0][0])
    rows = diffroar(sets[0], sets[1], spec.fractions, len(classes), settings, fill=fill)
    summary = DiffROARSummary(
        model=model.name, seed=model.seed, group=model.group.kind, role=model.role or "", method=spec.method,
        evaluator=EvaluatorRecord(arch="kdinterp.measures.diffroar.evaluator.Evaluator", **vars(settings)),
        num_train=int(sets[0][1].shape[0]), num_val=int(sets[1][1].shape[0]), fill=tuple(float(v) for v in fill),
        by_k={f"{row['k']:g}": DiffROARPoint(**{key: row[key] for key in ("acc_top", "acc_bottom", "diffroar")})
              for row in rows},
        diffroar_mean=sum(row["diffroar"] for row in rows) / len(rows))
    summary.write(MEASURE.path(layout, model, SUMMARY))
    done = time.perf_counter()
    log(f"{model.key}: DiffROAR ({spec.method}) "
        + ", ".join(f"k={row['k']:g}: {row['acc_top']:.3f} - {row['acc_bottom']:.3f} = {row['diffroar']:+.3f}"
                    for row in rows)
        + f" (attributions {attributed - started:.1f} s, evaluators {done - attributed:.1f} s)")
    return summary
