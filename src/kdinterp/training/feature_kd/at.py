"""Attention transfer (AT): Zagoruyko & Komodakis, "Paying More Attention to Attention" (ICLR 2017)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torchdistill.losses.mid_level import ATLoss

from kdinterp.training.feature_kd._base import (
    FeatureDistiller,
    full_precision,
    layer_channels,
)

__all__ = ["AT", "ATOptions"]


@dataclass(frozen=True)
class ATOptions:
    """AT settings; defaults are the paper's ``at-resnet18_from_resnet34.yaml`` (KD_XAI).

    Attributes:
        layers: stages whose outputs are matched, teacher ``layer_i`` with student ``layer_i``
            (each pair has weight 1, as in the config).
        weight: factor of the AT term (the config's 1000).
        mode: torchdistill's ``ATLoss`` mode: ``code`` (the authors' implementation, used by the
            paper) or ``paper`` (Eq. 2 of the AT paper).
    """

    layers: tuple[str, ...] = ("layer3", "layer4")
    weight: float = 1000.0
    mode: Literal["code", "paper"] = "code"

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("layers must name at least one layer")
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")


class AT(FeatureDistiller):
    """Attention transfer (Zagoruyko & Komodakis, ICLR 2017) on the outputs of ``options.layers``.

    Loss (torchdistill ``ATLoss``, mode ``code``, the paper's setting): with the attention map
    ``Q(F) = normalize_2(mean_c F_c^2)`` flattened over ``H x W``,

    ``loss_at = weight * sum_layers mean_{n, hw} (Q(F_s)[n, hw] - Q(F_t)[n, hw])^2``.

    Mode ``paper`` is Eq. 2 of Zagoruyko & Komodakis: ``sum_layers (1/N) sum_n ||q_s - q_t||_2``
    with channel *sums* of squares. The channel mean makes teacher and student widths irrelevant;
    spatial sizes must match (they do for ResNets with the same stem).

    Total: ``loss_ce + [loss_kd] + loss_at`` (see :meth:`FeatureDistiller.logit_terms`).
    CE weight: ``1 - alpha`` (1.0 without logit KD). The paper's KD_XAI config uses 0.1 x CE +
    1000 x AT (upstream torchdistill: 1.0 x CE); we keep the full CE weight so that all
    "without logit KD" students share one CE term and their accuracy is comparable.

    Uses: ``torchdistill.losses.mid_level.ATLoss`` as is, fed by forward hooks.
    """

    Options = ATOptions

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float, alpha: float,
                 options: ATOptions) -> None:
        super().__init__(student, teacher, temperature, alpha)
        for layer in options.layers:  # fail now, with the layer's name, rather than in the first batch
            layer_channels(student, layer, "student")
            layer_channels(teacher, layer, "teacher")
        self.options = options
        pairs = {layer: {"student": {"io": "output", "path": layer}, "teacher": {"io": "output", "path": layer},
                         "weight": 1} for layer in options.layers}
        self.at_loss_fn = ATLoss(at_pairs=pairs, mode=options.mode)

    def at_loss(self, student_maps: dict[str, torch.Tensor], teacher_maps: dict[str, torch.Tensor]) -> torch.Tensor:
        """``weight * ATLoss`` on feature maps ``{layer: (N, C, H, W)}`` (channels may differ)."""
        for layer in self.options.layers:
            s, t = student_maps[layer], teacher_maps[layer]
            if s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[2:]:
                raise ValueError(f"AT needs equal batch and spatial sizes at '{layer}': student {tuple(s.shape)}, "
                                 f"teacher {tuple(t.shape)} (use the same stem for both models)")
        student_io = {layer: {"output": f.float()} for layer, f in student_maps.items()}
        teacher_io = {layer: {"output": f.float()} for layer, f in teacher_maps.items()}
        with full_precision(next(iter(student_maps.values()))):
            return self.options.weight * self.at_loss_fn(student_io, teacher_io)

    def forward_train(self, images: torch.Tensor, targets: torch.Tensor,
                      indices: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        teacher_logits, teacher_maps = self.teacher_forward(images, self.options.layers)
        logits, student_maps = self.student_forward(images, self.options.layers)
        terms = self.logit_terms(logits, teacher_logits, targets)
        terms["loss_at"] = self.at_loss(student_maps, teacher_maps)
        return logits, terms
