"""Distillers: a student plus how it is supervised (mdistiller's ``Distiller`` pattern).

Each distiller's ``forward_train(images, targets, indices)`` returns the student logits and a
dict of *named* loss terms; the trainer sums the dict and logs each term. ``indices`` are the
samples' positions in the training set (contrastive methods keep per-sample memories). A teacher,
when present, is frozen: it stays in eval mode whatever ``.train()`` is called with, has no
gradients, and runs under ``torch.no_grad`` once per batch. Methods with a preliminary stage
(e.g. training an auxiliary module on the teacher) do it in ``prepare``, which the trainer calls
once before the first epoch; everything but the teacher is checkpointed
(``trainable_state_dict``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from kdinterp.training.losses import cross_entropy, kd_terms

__all__ = ["Distiller", "LogitKD", "Vanilla"]


def check_classes(student: nn.Module, teacher: nn.Module | None, num_classes: int) -> None:
    """Both networks' ``fc`` output ``num_classes`` logits.

    Raises:
        ValueError: a network outputs another number of classes.
    """
    for role, model in (("student", student), ("teacher", teacher)):
        fc = getattr(model, "fc", None)
        if isinstance(fc, nn.Linear) and fc.out_features != num_classes:
            raise ValueError(f"the {role} outputs {fc.out_features} classes, the data set has {num_classes}")


class Distiller(nn.Module):
    """Base class: wraps the student; ``forward`` is the student's forward (for evaluation)."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None,
                indices: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Student logits ``(N, K)`` for images ``(N, 3, H, W)``; with ``targets``, :meth:`forward_train`.

        The training computation goes through ``forward`` so that DistributedDataParallel, which
        hooks ``forward``, can wrap a distiller and synchronise every learnable parameter.
        """
        if targets is None:
            return self.student(images)
        if indices is None:
            indices = torch.arange(len(targets), device=targets.device)
        return self.forward_train(images, targets, indices)

    def forward_train(self, images: torch.Tensor, targets: torch.Tensor,
                      indices: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One training batch.

        Args:
            images: ``(N, 3, H, W)`` augmented, normalised images.
            targets: ``(N,)`` class indices.
            indices: ``(N,)`` positions of the samples in the training set.

        Returns:
            ``(student_logits (N, K), {term_name: scalar loss})``.
        """
        raise NotImplementedError

    def prepare(self, train_set: Dataset, device: torch.device, seed: int) -> None:
        """Preliminary stage run once before the first epoch (none by default)."""

    def learnable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates: everything but the (frozen) teacher."""
        return [p for name, p in self.named_parameters() if not name.startswith("teacher.")]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The state to checkpoint: everything but the teacher's weights."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("teacher.")}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`trainable_state_dict` output (the teacher is left as it is)."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("teacher.")]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint does not fit this distiller: missing {missing}, unexpected {unexpected}")


class Vanilla(Distiller):
    """Training from labels alone: cross-entropy, with label smoothing when ``label_smoothing > 0``.

    Szegedy et al., "Rethinking the Inception Architecture for Computer Vision" (CVPR 2016) for
    label smoothing; the paper's f_scratch (eps = 0) and f_LS (eps > 0).
    """

    Options = None

    def __init__(self, student: nn.Module, label_smoothing: float = 0.0) -> None:
        super().__init__(student)
        self.label_smoothing = label_smoothing

    @classmethod
    def from_recipe(cls, student: nn.Module, teacher: nn.Module | None, recipe: Any, options: None,
                    num_classes: int, num_samples: int) -> Vanilla:
        """The study's constructor (:mod:`kdinterp.training.methods`): the recipe's ``label_smoothing``."""
        return cls(student, recipe.label_smoothing)

    def forward_train(self, images: torch.Tensor, targets: torch.Tensor,
                      indices: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.student(images)
        return logits, {"loss_ce": cross_entropy(logits, targets, self.label_smoothing)}


class LogitKD(Distiller):
    """Hinton et al., "Distilling the Knowledge in a Neural Network" (2015): the paper's f_KD.

    Loss: see :func:`kdinterp.training.losses.kd_terms` (paper's alpha weights the distillation term).
    """

    Options = None

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float, alpha: float) -> None:
        super().__init__(student)
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature = temperature
        self.alpha = alpha

    @classmethod
    def from_recipe(cls, student: nn.Module, teacher: nn.Module, recipe: Any, options: None, num_classes: int,
                    num_samples: int) -> LogitKD:
        """The study's constructor (:mod:`kdinterp.training.methods`): the recipe's ``temperature`` and ``alpha``.

        Raises:
            ValueError: a network outputs another number of classes than ``num_classes``.
        """
        check_classes(student, teacher, num_classes)
        return cls(student, teacher, recipe.temperature, recipe.alpha)

    def train(self, mode: bool = True) -> LogitKD:
        """Set the student's mode; the teacher always stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def forward_train(self, images: torch.Tensor, targets: torch.Tensor,
                      indices: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        logits = self.student(images)
        return logits, kd_terms(logits, teacher_logits, targets, self.temperature, self.alpha)
