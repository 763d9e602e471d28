"""Loss terms of the study, in the paper's notation.

Han et al. (ICML 2023), §2 of ``research/paper.md``:

* KD: ``L_KD = (1 - alpha) * CE(y, softmax(z_s)) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))``
  (Hinton et al., 2015). The paper's code uses torchdistill's ``KDLoss``, whose ``alpha`` is the
  *hard-label* weight, i.e. ``1 - alpha`` here.
* LS: ``L_LS = (1 - eps) * CE(y, softmax(z)) + eps * CE(u, softmax(z))`` with ``u`` uniform over
  the K classes, which is PyTorch's ``cross_entropy(..., label_smoothing=eps)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchdistill.losses.mid_level import KDLoss

__all__ = ["cross_entropy", "kd_terms"]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy with label smoothing ``eps`` (paper §2, L_LS; eps = 0 is plain CE).

    Args:
        logits: ``(N, K)`` unnormalised scores.
        targets: ``(N,)`` class indices.
        label_smoothing: eps in [0, 1); the target is ``(1 - eps) * onehot(y) + eps / K``.

    Returns:
        Scalar mean loss (nats).
    """
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def kd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
             temperature: float, alpha: float) -> dict[str, torch.Tensor]:
    """The two terms of Hinton KD in the paper's form; their sum is ``L_KD``.

    The soft term is computed by torchdistill's ``KDLoss`` (the implementation the paper's code
    used): with its ``alpha=0`` it returns just ``KL(softmax(z_t/T) || softmax(z_s/T))`` averaged
    over the batch (``batchmean``), without the ``T^2`` factor. The sum of the two terms equals torchdistill's
    ``KDLoss(temperature=T, alpha=1 - alpha)`` for every ``alpha < 1`` (tested); at ``alpha = 1``
    torchdistill drops the ``T^2`` factor, which this form keeps.

    Args:
        student_logits: ``(N, K)`` student scores ``z_s`` (gradients flow into them).
        teacher_logits: ``(N, K)`` teacher scores ``z_t`` (treated as constants).
        targets: ``(N,)`` class indices ``y``.
        temperature: ``T > 0``.
        alpha: the paper's alpha in [0, 1], the weight of the distillation term.

    Returns:
        ``{"loss_ce": (1 - alpha) * CE, "loss_kd": alpha * T^2 * KL}``, scalar tensors (nats).
    """
    soft = KDLoss(student_module_path=".", student_module_io="output", teacher_module_path=".",
                  teacher_module_io="output", temperature=temperature, alpha=0.0, reduction="batchmean")
    kl = soft({".": {"output": student_logits}}, {".": {"output": teacher_logits.detach()}})
    return {"loss_ce": (1.0 - alpha) * F.cross_entropy(student_logits, targets),
            "loss_kd": alpha * temperature**2 * kl}
