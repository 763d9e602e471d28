"""Distillers: a student plus how it is supervised (mdistiller's ``Distiller`` pattern).

Each distiller's ``forward_train(images, targets)`` returns the student logits and a dict of
*named* loss terms; the trainer sums the dict and logs each term. A teacher, when present, is
frozen: it stays in eval mode whatever ``.train()`` is called with, has no gradients, and runs
under ``torch.no_grad`` once per batch.
"""

from __future__ import annotations

import torch
from torch import nn

from kdinterp.losses import cross_entropy, kd_terms

__all__ = ["Distiller", "LogitKD", "Vanilla"]


class Distiller(nn.Module):
    """Base class: wraps the student; ``forward`` is the student's forward (for evaluation)."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Student logits ``(N, K)`` for images ``(N, 3, H, W)``."""
        return self.student(images)

    def forward_train(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return ``(student_logits (N, K), {term_name: scalar loss})`` for one batch."""
        raise NotImplementedError

    def learnable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates (the student's)."""
        return list(self.student.parameters())


class Vanilla(Distiller):
    """Training from labels alone: cross-entropy, with label smoothing when ``label_smoothing > 0``.

    Szegedy et al., "Rethinking the Inception Architecture for Computer Vision" (CVPR 2016) for
    label smoothing; the paper's f_scratch (eps = 0) and f_LS (eps > 0).
    """

    def __init__(self, student: nn.Module, label_smoothing: float = 0.0) -> None:
        super().__init__(student)
        self.label_smoothing = label_smoothing

    def forward_train(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.student(images)
        return logits, {"loss_ce": cross_entropy(logits, targets, self.label_smoothing)}


class LogitKD(Distiller):
    """Hinton et al., "Distilling the Knowledge in a Neural Network" (2015): the paper's f_KD.

    Loss: see :func:`kdinterp.losses.kd_terms` (paper's alpha weights the distillation term).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float, alpha: float) -> None:
        super().__init__(student)
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature = temperature
        self.alpha = alpha

    def train(self, mode: bool = True) -> LogitKD:
        """Set the student's mode; the teacher always stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def forward_train(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        logits = self.student(images)
        return logits, kd_terms(logits, teacher_logits, targets, self.temperature, self.alpha)
