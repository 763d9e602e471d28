"""Saliency maps of a classifier, computed with Captum, and the activation map of the paper's grid (the paper: layer4; here `saliency.layer`).

Every map here is ``(N, H, W)`` float32, non-negative, at the input resolution, for images
``(N, 3, H, W)`` normalised as for training and their classes ``(N,)`` int64. The attribution is
taken for the class given in ``targets`` (the true class: the ground truth of
:mod:`kdinterp.measures.saliency.five_band` is the true class's object), through the model in eval mode.

Methods (:data:`kdinterp.measures.saliency.METHODS`; Captum 0.9, https://captum.ai/api/):

* ``input_gradient``: ``captum.attr.Saliency`` (Simonyan et al., ICLR 2014 workshop): the absolute
  gradient of the target logit w.r.t. each input channel, summed over the three channels (the channel
  reduction of the five-band reference code, Tjoa & Guan 2020: ``sum_pixels_over_channels``).
* ``input_x_gradient``: ``captum.attr.InputXGradient`` (Shrikumar et al., 2016): ``x * dlogit/dx``,
  summed over channels (the first-order contribution of a pixel), then its absolute value.
* ``grad_cam``: ``captum.attr.LayerGradCam`` on ``saliency.layer`` (default ``layer4``) (Selvaraju et al., ICCV 2017): channel
  weights = spatial mean of the target logit's gradient, ReLU of the weighted channel sum, then
  ``LayerAttribution.interpolate`` (bilinear) to the input size and a ReLU (bilinear interpolation
  keeps values >= 0 anyway).
* ``smoothgrad``: ``captum.attr.NoiseTunnel(Saliency)`` with ``nt_type="smoothgrad"`` (Smilkov et
  al., 2017): the mean of ``smoothgrad_samples`` absolute gradients at ``x + N(0, stdev^2)``,
  summed over channels. ``stdev`` is in normalised input units (the stage passes the
  ``saliency.smoothgrad_noise`` share of the pixel range divided by the normalisation std).

For P14 (research/paper.md §4.2): :func:`loss_gradient` (the absolute input gradient of the
cross-entropy loss, summed over channels; ``Saliency`` of the log-softmax, whose gradient is
minus the loss's) and :func:`activation_map` (a layer's channel-mean activation, upsampled), with
:func:`overlay`, the paper code's ``(act * 0.8 + 0.2) * image``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdinterp.measures.saliency import METHODS

__all__ = ["DEFAULT_LAYER", "activation_map", "attribute", "loss_gradient", "minmax", "overlay"]

#: The layer of Grad-CAM and of the activation map: the ResNet's last stage, as dissected.
DEFAULT_LAYER = "layer4"


def _check(images: torch.Tensor, targets: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    if targets.shape != (images.shape[0],):
        raise ValueError(f"targets must be ({images.shape[0]},), got {tuple(targets.shape)}")


def _layer(model: nn.Module, layer: str) -> nn.Module:
    try:
        return model.get_submodule(layer)
    except AttributeError:
        children = ", ".join(n for n, _ in model.named_children())
        raise ValueError(f"model has no layer '{layer}' (top-level layers: {children})") from None


def attribute(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, method: str, *,
              layer: str = DEFAULT_LAYER, smoothgrad_samples: int = 16, smoothgrad_stdev: float = 0.4) -> torch.Tensor:
    """Attribution maps of ``method`` (see the module docstring) for the classes ``targets``.

    Args:
        model: a classifier returning logits ``(N, K)``; put in eval mode here (left in eval mode).
        images: ``(N, 3, H, W)`` float, normalised as in training.
        targets: ``(N,)`` int64 class indices to explain.
        method: one of :data:`METHODS`.
        layer: Grad-CAM's layer (dotted module name).
        smoothgrad_samples: noisy copies per image (``smoothgrad``).
        smoothgrad_stdev: noise std in normalised input units (``smoothgrad``); the noise is drawn
            from torch's global generator (seed it for reproducible maps).

    Returns:
        ``(N, H, W)`` float32, >= 0, on ``images``' device, detached.

    Raises:
        ValueError: unknown method or layer, or shapes that do not match.
    """
    from captum.attr import InputXGradient, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency

    _check(images, targets)
    model.eval()
    x = images.detach().clone().requires_grad_(True)
    if method == "input_gradient":
        maps = Saliency(model).attribute(x, target=targets, abs=True).sum(1)
    elif method == "input_x_gradient":
        maps = InputXGradient(model).attribute(x, target=targets).sum(1).abs()
    elif method == "grad_cam":
        cam = LayerGradCam(model, _layer(model, layer)).attribute(x, target=targets, relu_attributions=True)
        maps = LayerAttribution.interpolate(cam, tuple(images.shape[-2:]), interpolate_mode="bilinear")[:, 0].clamp_min(0)
    elif method == "smoothgrad":
        maps = NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=smoothgrad_samples,
                                                      stdevs=float(smoothgrad_stdev), target=targets,
                                                      abs=True).sum(1)
    else:
        raise ValueError(f"unknown saliency method '{method}'; known: {', '.join(METHODS)}")
    return maps.detach().float()


def loss_gradient(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The absolute input gradient of the cross-entropy loss, summed over channels: ``(N, H, W)`` float32 >= 0.

    The loss-gradient maps of the paper's Figure (perceptually aligned gradients, Tsipras et al.
    2018): ``|d CE(y, softmax(f(x))) / dx|``, computed as Captum ``Saliency`` of ``log_softmax(f(x))[y]``
    (its gradient is minus the loss's, and the absolute value drops the sign).

    Raises:
        ValueError: shapes that do not match.
    """
    from captum.attr import Saliency

    _check(images, targets)
    model.eval()
    log_prob = nn.Sequential(model, nn.LogSoftmax(dim=1))
    x = images.detach().clone().requires_grad_(True)
    return Saliency(log_prob).attribute(x, target=targets, abs=True).sum(1).detach().float()


@torch.no_grad()
def activation_map(model: nn.Module, images: torch.Tensor, layer: str = DEFAULT_LAYER) -> torch.Tensor:
    """The channel mean of ``layer``'s output, upsampled bilinearly to the input size: ``(N, H, W)`` float32.

    ResNet stages end in a ReLU, so the map is >= 0 (clamped at 0 for other layers). It is not
    normalised: :func:`minmax` it for display (:func:`overlay`); mass shares use it as is.

    Raises:
        ValueError: no such layer, or images not ``(N, 3, H, W)``.
    """
    from kdinterp.training.hooks import retain_layer

    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    _layer(model, layer)
    with retain_layer(model, layer) as retained:
        model.eval()(images)
        act = retained.get().float().mean(1, keepdim=True)
    return F.interpolate(act, size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False)[:, 0].clamp_min(0)


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Each map of ``(N, H, W)`` scaled to [0, 1] (``(m - min) / (max - min)``; a constant map becomes 0)."""
    flat = maps.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    span = (high - low).clamp_min(torch.finfo(maps.dtype).tiny)
    return ((maps - low[:, None, None]) / span[:, None, None]).clamp(0, 1)


def overlay(images: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """The paper code's activation overlay ``(act * 0.8 + 0.2) * image``.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1] (not normalised).
        act: ``(N, H, W)`` activation maps; min-max scaled to [0, 1] here.

    Returns:
        ``(N, 3, H, W)`` float32 in [0, 1].
    """
    return (minmax(act)[:, None] * 0.8 + 0.2) * images
