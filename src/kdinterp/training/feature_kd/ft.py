"""Factor transfer (FT): Kim, Park & Kwak, "Paraphrasing Complex Network: Network Compression via
Factor Transfer" (NeurIPS 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from torchdistill.losses.mid_level import FTLoss
from torchdistill.models.wrapper import (
    Paraphraser4FactorTransfer,
    Translator4FactorTransfer,
)

from kdinterp.training.feature_kd._base import (
    FeatureDistiller,
    full_precision,
    layer_channels,
    train_auxiliary,
)

__all__ = ["FT", "FTOptions"]


@dataclass(frozen=True)
class FTOptions:
    """FT settings; defaults are the paper's ``ft-resnet18_from_resnet34.yaml`` (KD_XAI).

    Attributes:
        layer: the stage whose output is paraphrased (teacher) and translated (student).
        rate: paraphrase rate k: the factor has ``int(k * C_teacher)`` channels.
        p: order of the norm in FTLoss (1 in the paper).
        weight: factor of the FT term (the config's 1000).
        paraphraser_epochs, paraphraser_batch_size, paraphraser_lr, paraphraser_momentum,
        paraphraser_weight_decay: stage 1, the paraphraser's reconstruction training (config:
            1 epoch, batch 256, SGD lr 0.01, momentum 0.9, weight decay 1e-4).
    """

    layer: str = "layer4"
    rate: float = 0.5
    p: int = 1
    weight: float = 1000.0
    paraphraser_epochs: int = 1
    paraphraser_batch_size: int = 256
    paraphraser_lr: float = 0.01
    paraphraser_momentum: float = 0.9
    paraphraser_weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        if not 0.0 < self.rate <= 1.0:
            raise ValueError(f"rate must be in (0, 1], got {self.rate}")
        if self.p < 1:
            raise ValueError(f"p must be >= 1, got {self.p}")
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")
        if self.paraphraser_epochs < 0 or self.paraphraser_batch_size < 1 or self.paraphraser_lr <= 0:
            raise ValueError("paraphraser_epochs must be >= 0, paraphraser_batch_size >= 1, paraphraser_lr > 0")


class FT(FeatureDistiller):
    """Factor transfer (Kim, Park & Kwak, NeurIPS 2018) from the teacher's ``options.layer`` to the student's.

    Stage 1 (:meth:`prepare`): a paraphraser P (torchdistill ``Paraphraser4FactorTransfer``:
    three 3x3 convs ``C_t -> C_t -> kC_t -> kC_t`` with LeakyReLU(0.1), no BN, and a mirrored
    transposed-conv decoder) is trained on the frozen teacher's layer output x to minimise
    ``MSE(decoder(encoder(x)), x)``; then it is frozen (eval, no gradients, excluded from
    :meth:`learnable_parameters`, but checkpointed).

    Stage 2 (training): the student's layer output goes through a trainable translator T
    (torchdistill ``Translator4FactorTransfer``: three 3x3 convs ``C_s -> C_s -> kC_t -> kC_t``,
    no BN); with the teacher factor ``F_t = encoder(x_t)`` and the student factor
    ``F_s = T(x_s)``, both flattened per sample (D values),

    ``loss_ft = weight * mean_{n, d} | F_s[n]/||F_s[n]||_2 - F_t[n]/||F_t[n]||_2 |``   (p = 1),

    torchdistill's ``FTLoss`` (for p > 1: ``weight * mean_n ||F_s/||F_s|| - F_t/||F_t|| ||_p``).
    The FT paper's loss is the p-norm of that difference (averaged over the batch); torchdistill's p = 1 branch
    (``l1_loss``, mean over all N x D elements) also divides by D, which the config's weight
    1000 compensates. We use torchdistill's form, as the paper's code did.

    Total: ``loss_ce + [loss_kd] + loss_ft``. CE weight ``1 - alpha`` (config: 1.0 x CE, the same
    without logit KD).

    Uses: ``Paraphraser4FactorTransfer``, ``Translator4FactorTransfer`` (torchdistill's modules,
    built directly; its ``Teacher4FactorTransfer``/``Student4FactorTransfer`` wrappers only add
    file checkpoints and DDP wrapping) and ``FTLoss`` as is.
    """

    Options = FTOptions

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float, alpha: float,
                 options: FTOptions) -> None:
        super().__init__(student, teacher, temperature, alpha)
        self.options = options
        teacher_channels = layer_channels(teacher, options.layer, "teacher")
        student_channels = layer_channels(student, options.layer, "student")
        factor_channels = int(teacher_channels * options.rate)
        if factor_channels < 1:
            raise ValueError(f"rate {options.rate} leaves no factor channels of the teacher's {teacher_channels}")
        self.paraphraser = Paraphraser4FactorTransfer(options.rate, teacher_channels, kernel_size=3, stride=1,
                                                      padding=1, uses_bn=False, uses_decoder=True)
        self.paraphraser.requires_grad_(False).eval()
        self.translator = Translator4FactorTransfer(student_channels, factor_channels, kernel_size=3, stride=1,
                                                    padding=1, uses_bn=False)
        self.ft_loss_fn = FTLoss(p=options.p, reduction="mean")

    def frozen_modules(self) -> list[nn.Module]:
        return [self.paraphraser]

    def prepare(self, train_set: Dataset, device: torch.device, seed: int) -> None:
        """Stage 1: train the paraphraser to reconstruct the teacher's layer output (seeded)."""
        layer = self.options.layer

        def reconstruction(images: torch.Tensor) -> torch.Tensor:
            target = self.teacher_forward(images, [layer])[1][layer]
            return F.mse_loss(self.paraphraser(target), target)

        o = self.options
        train_auxiliary(self.paraphraser, reconstruction, train_set, device, seed, epochs=o.paraphraser_epochs,
                        batch_size=o.paraphraser_batch_size, lr=o.paraphraser_lr, momentum=o.paraphraser_momentum,
                        weight_decay=o.paraphraser_weight_decay, label="FT paraphraser")

    def ft_loss(self, student_factor: torch.Tensor, teacher_factor: torch.Tensor) -> torch.Tensor:
        """``weight * FTLoss`` on factors ``(N, kC_t, H, W)`` (or any ``(N, ...)`` of equal size)."""
        if student_factor.shape != teacher_factor.shape:
            raise ValueError(f"FT factors differ in shape: student {tuple(student_factor.shape)}, teacher "
                             f"{tuple(teacher_factor.shape)} (use the same stem for both models)")
        with full_precision(student_factor):
            return self.options.weight * self.ft_loss_fn({"translator": {"output": student_factor.float()}},
                                                         {"paraphraser": {"output": teacher_factor.float()}})

    def forward_train(self, images: torch.Tensor, targets: torch.Tensor,
                      indices: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        layer = self.options.layer
        teacher_logits, teacher_maps = self.teacher_forward(images, [layer])
        with torch.no_grad():
            teacher_factor = self.paraphraser.encoder(teacher_maps[layer])
        logits, student_maps = self.student_forward(images, [layer])
        terms = self.logit_terms(logits, teacher_logits, targets)
        terms["loss_ft"] = self.ft_loss(self.translator(student_maps[layer]), teacher_factor)
        return logits, terms
