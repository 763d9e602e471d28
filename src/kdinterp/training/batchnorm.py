"""BatchNorm recalibration: running statistics recomputed on data, the weights left as they are.

An untrained network in eval mode normalises with the initial running statistics (mean 0,
variance 1), so its deeper activations are scaled by whatever the random weights make of the
input; a trained network normalises with the statistics of its training images. Recomputing an
untrained network's statistics on the training images (the control ``controls.<name>.batchnorm:
recalibrated``, :class:`kdinterp.core.params.ControlParams`) removes that difference and leaves the
weights alone: the fairer floor for the dissection (cf. ``torch.optim.swa_utils.update_bn``, which
does the same for averaged weights).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from kdinterp.core.params import DataParams
from kdinterp.training.data import eval_loader, load_dataset

__all__ = ["recalibrate_batchnorm", "recalibrate_on_training_images"]


@torch.no_grad()
def recalibrate_batchnorm(net: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                          device: torch.device | str = "cpu") -> int:
    """Recompute the running mean and variance of every BatchNorm layer of ``net`` from ``batches``.

    Every BatchNorm layer's statistics are reset (``reset_running_stats``: mean 0, variance 1,
    ``num_batches_tracked`` 0) and its ``momentum`` set to None, so that train-mode forward passes
    accumulate the cumulative average over batches: ``running_mean`` is the mean of the batch means,
    ``running_var`` the mean of the unbiased batch variances (with one batch of all images, exactly the
    data's per-channel mean and unbiased variance). No gradient is computed and no parameter changes.
    The momenta are restored and ``net`` is left in eval mode on ``device``.

    Args:
        net: the network (changed in place).
        batches: ``(images float32 (B, 3, S, S), targets)`` in a fixed order, e.g.
            :func:`kdinterp.training.data.eval_loader`'s (the targets are unused).
        device: where the forward passes run.

    Returns:
        The number of images seen (0, and nothing changed, if ``net`` has no BatchNorm layer).

    Raises:
        ValueError: ``batches`` is empty (the statistics would be left reset).
    """
    layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    net.to(device).train()
    seen = 0
    try:
        for images, _ in batches:
            net(images.to(device))
            seen += len(images)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        net.eval()
    if not seen:
        raise ValueError("BatchNorm recalibration got no images")
    return seen


def recalibrate_on_training_images(net: nn.Module, data: DataParams, device: torch.device | str = "cpu") -> int:
    """:func:`recalibrate_batchnorm` on ``data.train_dir``'s images, evaluation transform, data-set order.

    The images are read by ``load_dataset(data, train=True, augment=False)`` in batches of
    ``data.eval_batch_size`` (:func:`kdinterp.training.data.eval_loader`): no augmentation, the
    order of ImageFolder's listing, so the statistics are a function of the data alone.

    Returns:
        The number of images seen.

    Raises:
        DataError: the training folder is missing or not an ImageFolder tree.
    """
    dataset = load_dataset(data, train=True, augment=False)
    batches = eval_loader(dataset, data.eval_batch_size, num_workers=data.num_workers, device=device)
    return recalibrate_batchnorm(net, batches, device)
