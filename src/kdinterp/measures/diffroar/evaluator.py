"""DiffROAR: how discriminative are the pixels an attribution ranks highest? (Shah et al., NeurIPS 2021).

Shah, Jain, Netrapalli, "Do input gradients highlight discriminative features?" (NeurIPS 2021),
§3: an attribution ranks each image's input coordinates; the *top-k* data set keeps the fraction
``k`` ranked highest and masks the rest, the *bottom-k* data set keeps the fraction ``k`` ranked
lowest. A model retrained on each masked training set is evaluated on the equally masked test set,
and

    DiffROAR(k) = acc(top-k) - acc(bottom-k)

is > 0 when the attribution puts the discriminative features first, 0 for a random ranking, and
< 0 when it puts them last (their "feature inversion"). Everything here is a pure function of
images, labels and attribution maps; the attribution of the model under assessment comes from
:func:`kdinterp.measures.saliency.attribution.attribute` in the stage (:mod:`kdinterp.measures.diffroar`).

What matches the authors' code (github.com/harshays/inputgradients, ``scripts/saliency_utils.py``
``SaliencyMap.get_attribution_indices`` and ``scripts/misc_utils.py`` ``get_masked_data``):

* ranking by attribution value (their ``np.argsort`` of ``|G|``; our maps are already >= 0);
* the number of kept entries is ``int(round(k * D))`` (Python's ``round``, as theirs);
* masked entries are set to the mean of the normalised training data (their ``mask_val = X.mean()``);
  here per channel (:func:`channel_mean`), which is 0 in every channel when the normalisation uses
  the data set's own mean and std;
* the same masking of the training set (for retraining) and of the test set (for evaluation).

Where it differs, and why:

* **pixels, not coordinates**: Shah et al. rank the ``C * H * W`` coordinates of the raw input
  gradient; here the ``H * W`` pixels of an ``(N, H, W)`` map (channels reduced by the attribution
  method), and a pixel's channels are kept or masked together. This is the pixel ranking the
  KD paper describes (research/paper.md §4.2: "the top-k% vs. the bottom-k% of pixels").
* **ties** are broken deterministically: among equal attributions the pixel with the lower
  row-major index ranks higher (a stable sort; theirs is NumPy's unstable quicksort). So top-k and
  bottom-k are complements at ``k = 0.5`` even on constant maps.
* **the evaluator** is one fixed small CNN (:class:`Evaluator`), not the assessed architecture,
  trained for a few epochs with Adam and no augmentation (the CPU budget of issue 14), from the
  same seed (initialisation and batch order) for top-k and bottom-k and for every assessed model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Evaluator", "EvaluatorSettings", "accuracy", "apply_keep", "channel_mean", "diffroar", "keep_masks",
           "pixel_order", "train_evaluator"]


def _check_maps(attributions: torch.Tensor) -> None:
    if attributions.ndim != 3:
        raise ValueError(f"attributions must be (N, H, W), got {tuple(attributions.shape)}")
    if not torch.isfinite(attributions).all():
        raise ValueError("attributions contain NaN or infinite values")


def pixel_order(attributions: torch.Tensor) -> torch.Tensor:
    """Each image's pixels from the highest attribution to the lowest.

    Args:
        attributions: ``(N, H, W)`` float, finite.

    Returns:
        int64 ``(N, H * W)``: row ``i`` lists the row-major pixel indices of image ``i``, highest
        attribution first; equal attributions keep row-major order (lower index first: a stable sort).

    Raises:
        ValueError: not ``(N, H, W)``, or a NaN/infinite value.
    """
    _check_maps(attributions)
    flat = attributions.reshape(attributions.shape[0], -1)
    return torch.sort(flat, dim=1, descending=True, stable=True).indices


def keep_masks(attributions: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixels kept in the top-k and in the bottom-k version of each image.

    ``m = int(round(fraction * H * W))`` pixels are kept (Shah et al.'s count): top-k keeps the
    first ``m`` of :func:`pixel_order`, bottom-k the last ``m``.

    Args:
        attributions: ``(N, H, W)`` float, finite.
        fraction: ``k``, the share of pixels kept, in ``(0, 1]``.

    Returns:
        ``(top, bottom)``: bool ``(N, H, W)`` each, True where a pixel is kept; ``m`` per image.

    Raises:
        ValueError: bad shape or values, or ``fraction`` outside ``(0, 1]``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction (k) must be in (0, 1], got {fraction}")
    order = pixel_order(attributions)
    n, pixels = order.shape
    kept = int(round(fraction * pixels))
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels).expand(n, pixels))  # rank[i, p]: position of pixel p, 0 = highest
    shape = attributions.shape
    return (rank < kept).reshape(shape), (rank >= pixels - kept).reshape(shape)


def apply_keep(images: torch.Tensor, keep: torch.Tensor, fill: torch.Tensor | float) -> torch.Tensor:
    """``images`` where ``keep``, else ``fill`` (every channel of a masked pixel).

    Args:
        images: ``(N, C, H, W)`` float (normalised).
        keep: bool ``(N, H, W)``.
        fill: the masked value: a float, or ``(C,)`` one per channel (:func:`channel_mean`).

    Returns:
        A new ``(N, C, H, W)`` tensor of ``images``' dtype.

    Raises:
        ValueError: the shapes do not match.
    """
    if images.ndim != 4 or keep.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"keep must be (N, H, W) of images (N, C, H, W); got {tuple(keep.shape)} and "
                         f"{tuple(images.shape)}")
    fill = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
    if fill.ndim == 1:
        if fill.shape[0] != images.shape[1]:
            raise ValueError(f"fill has {fill.shape[0]} channels, images have {images.shape[1]}")
        fill = fill[None, :, None, None]
    return torch.where(keep[:, None], images, fill)


def channel_mean(images: torch.Tensor) -> torch.Tensor:
    """The per-channel mean of ``(N, C, H, W)`` images (float64 accumulation), as float32 ``(C,)``."""
    return images.double().mean(dim=(0, 2, 3)).float()


class Evaluator(nn.Module):
    """The fixed small CNN retrained on masked data: three 3x3 conv blocks and a linear classifier.

    ``conv(3->w, stride 2) BN ReLU | conv(w->2w) BN ReLU maxpool2 | conv(2w->4w) BN ReLU |
    global average pool | linear(4w->K)``. The strided first conv (its 3x3 kernel still sees every
    pixel) keeps the cost at about 2.5 M multiply-adds per 32 x 32 image for ``w = 16``. Input
    ``(N, 3, H, W)``, any ``H, W >= 4``; output logits ``(N, K)``.
    """

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True)]

        self.features = nn.Sequential(*block(3, w, stride=2), *block(w, 2 * w), nn.MaxPool2d(2), *block(2 * w, 4 * w),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@dataclass(frozen=True)
class EvaluatorSettings:
    """How the evaluator is trained: Adam at a constant ``lr``, ``epochs`` passes in batches of ``batch_size``.

    ``seed`` fixes the initialisation (``torch.manual_seed`` right before the model is built) and
    the batch order (a ``torch.Generator`` seeded with it); ``width`` is :class:`Evaluator`'s.
    """

    epochs: int = 4
    batch_size: int = 128
    lr: float = 0.005
    seed: int = 0
    width: int = 16


def train_evaluator(images: torch.Tensor, targets: torch.Tensor, num_classes: int,
                    settings: EvaluatorSettings) -> Evaluator:
    """Train a fresh :class:`Evaluator` on ``images`` (no augmentation) and return it in eval mode.

    Args:
        images: ``(N, 3, H, W)`` float, the (masked) training set, on the training device.
        targets: int64 ``(N,)`` class indices, same device.
        num_classes: ``K``.
        settings: epochs, batch size, learning rate, seed, width.

    Returns:
        The trained evaluator (on ``images``' device).
    """
    torch.manual_seed(settings.seed)
    net = Evaluator(num_classes, settings.width).to(images.device)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    net.train()
    for _ in range(settings.epochs):
        order = torch.randperm(images.shape[0], generator=generator).to(images.device)
        for start in range(0, images.shape[0], settings.batch_size):
            batch = order[start:start + settings.batch_size]
            loss = F.cross_entropy(net(images[batch]), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy (a fraction) of ``net`` on ``(N, 3, H, W)`` images with int64 ``(N,)`` targets."""
    net.eval()
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        logits = net(images[start:start + batch_size])
        correct += int((logits.argmax(1) == targets[start:start + batch_size]).sum())
    return correct / images.shape[0]


Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def diffroar(train: Split, val: Split,
             fractions: Sequence[float], num_classes: int, settings: EvaluatorSettings,
             fill: torch.Tensor | float | None = None) -> list[dict[str, float]]:
    """DiffROAR(k) = acc(top-k) - acc(bottom-k) for each ``k`` of ``fractions`` (Shah et al. 2021, §3).

    For each ``k``: mask the training and the validation images to their top-k and bottom-k pixels
    (:func:`keep_masks`, :func:`apply_keep`), train one :class:`Evaluator` on each masked training
    set (:func:`train_evaluator`, same settings and seed), and evaluate it on the validation set
    masked the same way.

    Args:
        train: ``(images (N, 3, H, W) float normalised, targets (N,) int64, attributions (N, H, W))``.
        val: the same for the validation set.
        fractions: the ``k`` grid, each in ``(0, 1]`` (share of pixels kept).
        num_classes: ``K``.
        settings: the evaluator's training.
        fill: the masked value; None: :func:`channel_mean` of the training images.

    Returns:
        One dict per ``k``, in the given order: ``k``, ``acc_top``, ``acc_bottom`` (fractions) and
        ``diffroar`` (their difference).

    Raises:
        ValueError: shapes disagree, a map has NaN/inf, or a ``k`` is outside ``(0, 1]``.
    """
    for name, (images, targets, maps) in (("train", train), ("val", val)):
        if images.ndim != 4 or targets.shape != images.shape[:1] or maps.shape != (images.shape[0], *images.shape[2:]):
            raise ValueError(f"{name}: images (N, C, H, W), targets (N,) and attributions (N, H, W) must agree; got "
                             f"{tuple(images.shape)}, {tuple(targets.shape)}, {tuple(maps.shape)}")
    fill = channel_mean(train[0]) if fill is None else fill
    results = []
    for k in fractions:
        if not 0.0 < k <= 1.0 or math.isnan(k):
            raise ValueError(f"fraction (k) must be in (0, 1], got {k}")
        train_keep, val_keep = keep_masks(train[2], k), keep_masks(val[2], k)
        acc = []
        for side in (0, 1):  # 0: top-k, 1: bottom-k
            net = train_evaluator(apply_keep(train[0], train_keep[side], fill), train[1], num_classes, settings)
            acc.append(accuracy(net, apply_keep(val[0], val_keep[side], fill), val[1]))
        results.append({"k": float(k), "acc_top": acc[0], "acc_bottom": acc[1], "diffroar": acc[0] - acc[1]})
    return results
