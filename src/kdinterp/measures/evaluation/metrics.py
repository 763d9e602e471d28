"""Classification metrics on the validation split: top-1, top-5, NLL and calibration (ECE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from kdinterp.core.progress import progress_bar

__all__ = ["classification_metrics", "expected_calibration_error", "predict"]


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device, label: str = "predict") -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` in eval mode over ``loader``.

    Returns:
        ``(logits, targets)``: float32 ``(N, K)`` and int64 ``(N,)``, on the CPU, in loader order.
    """
    model.eval().to(device)
    logits, targets = [], []
    with progress_bar(label, total=len(loader)) as advance:
        for images, y in loader:
            logits.append(model(images.to(device)).float().cpu())
            targets.append(y)
            advance(1, "")
    return torch.cat(logits), torch.cat(targets)


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al., ICML 2017, eq. 3).

    Args:
        probs: ``(N, K)`` predicted probabilities.
        targets: ``(N,)`` class indices.
        bins: number of bins over (0, 1].

    Returns:
        ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|`` as a fraction.
    """
    confidence, predicted = probs.max(1)
    correct = (predicted == targets).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.float().mean() * (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
    return float(ece)


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Top-1/top-5 accuracy (fractions), mean NLL (nats) and ECE of ``logits (N, K)`` against ``targets (N,)``."""
    k = min(5, logits.shape[1])
    top5 = (logits.topk(k, dim=1).indices == targets[:, None]).any(1).float().mean()
    return {
        "top1": float((logits.argmax(1) == targets).float().mean()),
        "top5": float(top5),
        "nll": float(F.cross_entropy(logits, targets)),
        "ece": expected_calibration_error(logits.softmax(1), targets),
        "num_images": int(len(targets)),
    }
