"""Self-supervision KD (SSKD): Xu, Liu, Li & Loy, "Knowledge Distillation Meets Self-Supervision"
(ECCV 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from torchdistill.losses.mid_level import SSKDLoss

from kdinterp.training.feature_kd._base import (
    FeatureDistiller,
    fc_in_features,
    full_precision,
    train_auxiliary,
)

__all__ = ["SSKD", "SSKDOptions", "cosine_matrix", "rotation_recognition_loss", "rotations"]


@dataclass(frozen=True)
class SSKDOptions:
    """SSKD settings; defaults are the paper's ``sskd-resnet18_from_resnet34.yaml`` (KD_XAI).

    The config's ``loss_weights [CE, KL, SS, TF] = [1.0, 0.0, 10.0, 2.7]`` and ``kl_temp 4`` map
    to the study's ``alpha`` and ``temperature`` (CE weight ``1 - alpha``, KL weight
    ``alpha * T^2``; ``alpha = 0`` is the config) and to ``ss_weight``/``tf_weight`` here.

    Attributes:
        ss_temp: temperature of the self-supervision similarity distributions (0.5).
        tf_temp: temperature of the class distributions on rotated images (4.0).
        ss_ratio: share of the teacher's wrongly-ranked rotated samples kept for the SS term (0.75).
        tf_ratio: share of the teacher's wrongly-classified rotated samples kept for the TF term (1.0).
        ss_weight, tf_weight: factors of the two terms (10.0, 2.7).
        ss_head_epochs, ss_head_batch_size, ss_head_lr, ss_head_momentum, ss_head_weight_decay,
        ss_head_milestones, ss_head_gamma: stage 1, training the teacher's self-supervision head
            (config: 30 epochs, SGD lr 0.1, momentum 0.9, weight decay 5e-4, lr x 0.1 at epochs 10
            and 20; batch 85 per GPU on 3 GPUs. The loss ranks each rotated image among the
            originals of its own per-GPU batch, so the batch size here is the config's 85).
    """

    ss_temp: float = 0.5
    tf_temp: float = 4.0
    ss_ratio: float = 0.75
    tf_ratio: float = 1.0
    ss_weight: float = 10.0
    tf_weight: float = 2.7
    ss_head_epochs: int = 30
    ss_head_batch_size: int = 85
    ss_head_lr: float = 0.1
    ss_head_momentum: float = 0.9
    ss_head_weight_decay: float = 5e-4
    ss_head_milestones: tuple[int, ...] = (10, 20)
    ss_head_gamma: float = 0.1

    def __post_init__(self) -> None:
        if not (self.ss_temp > 0 and self.tf_temp > 0):
            raise ValueError(f"ss_temp and tf_temp must be > 0, got {self.ss_temp}, {self.tf_temp}")
        if not (0.0 <= self.ss_ratio <= 1.0 and 0.0 <= self.tf_ratio <= 1.0):
            raise ValueError(f"ss_ratio and tf_ratio must be in [0, 1], got {self.ss_ratio}, {self.tf_ratio}")
        if self.ss_weight < 0 or self.tf_weight < 0:
            raise ValueError(f"ss_weight and tf_weight must be >= 0, got {self.ss_weight}, {self.tf_weight}")
        if self.ss_head_epochs < 0 or self.ss_head_batch_size < 1 or self.ss_head_lr <= 0:
            raise ValueError("ss_head_epochs must be >= 0, ss_head_batch_size >= 1, ss_head_lr > 0")


def cosine_matrix(features: torch.Tensor, normal: torch.Tensor, rotated: torch.Tensor) -> torch.Tensor:
    """``A[j, i] = cos(features[rotated][j], features[normal][i])``, ``(3N, N)`` for masks over ``4N`` rows.

    What torchdistill computes with ``F.cosine_similarity`` on both sides expanded to
    ``(3N, D, N)`` (``O(N^2 D)`` memory; 20-30x slower at N = 64 on the CPU), here as a product of
    L2-normalised rows (same values up to float rounding; tested against torchdistill).
    """
    unit = F.normalize(features, dim=1, eps=1e-8)
    return unit[rotated] @ unit[normal].T


class _SSKDLoss(SSKDLoss):
    """torchdistill's ``SSKDLoss`` with :func:`cosine_matrix` for its similarity matrices."""

    @staticmethod
    def compute_cosine_similarities(ss_module_outputs: torch.Tensor, normal_indices: torch.Tensor,
                                    aug_indices: torch.Tensor, three_forth_batch_size: int,
                                    one_forth_batch_size: int) -> torch.Tensor:
        return cosine_matrix(ss_module_outputs, normal_indices.to(ss_module_outputs.device),
                             aug_indices.to(ss_module_outputs.device))


def rotation_recognition_loss(ss_outputs: torch.Tensor) -> torch.Tensor:
    """torchdistill's ``AuxSSKDLoss`` (SSKD stage 1) with :func:`cosine_matrix`.

    ``CE(A, source)``: each rotated image's cosine similarities to the N originals of its batch
    (rows ``4i`` of ``ss_outputs``, ``(4N, D)``) as logits, its own original as the target.
    """
    batch_size = len(ss_outputs)
    three_fourths = int(batch_size * 3 / 4)
    position = torch.arange(batch_size, device=ss_outputs.device) % 4
    similarities = cosine_matrix(ss_outputs, position == 0, position != 0)
    sources = torch.arange(batch_size - three_fourths, device=ss_outputs.device).repeat_interleave(3)
    return F.cross_entropy(similarities, sources[:three_fourths])


def ss_head(dim: int) -> nn.Sequential:
    """The self-supervision head of torchdistill's ``SSWrapper4SSKD``: Linear-ReLU-Linear, ``dim -> dim``."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))


def rotations(images: torch.Tensor) -> torch.Tensor:
    """``(N, 3, S, S)`` -> ``(4N, 3, S, S)``: each image followed by its 90, 180, 270 degree rotations.

    The layout SSKD's losses expect (rows ``4i`` are the originals).
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"SSKD rotates images by 90 degrees and needs square ones, got {tuple(images.shape[-2:])}")
    return torch.stack([torch.rot90(images, k, dims=(2, 3)) for k in range(4)], dim=1).flatten(0, 1)


class SSKD(FeatureDistiller):
    """SSKD (Xu, Liu, Li & Loy, ECCV 2020): each batch is extended by rotations (``4N`` images),
    and the student mimics the teacher's self-supervision similarities and its predictions on the
    rotated images.

    Stage 1 (:meth:`prepare`): the teacher's SS head ``phi_t`` (Linear-ReLU-Linear on the
    ``avgpool`` features) is trained, backbone frozen, with torchdistill's ``AuxSSKDLoss``
    (:func:`rotation_recognition_loss`): the cross-entropy of recognising, among the N originals
    of the batch, which one each rotated image comes from, from the cosine similarities
    ``A[j, i] = cos(phi(x_j^rot), phi(x_i))``. Then frozen.

    Stage 2 (training), torchdistill's ``SSKDLoss`` terms, with ``A_s``, ``A_t`` the ``(3N, N)``
    similarity matrices of student (its own trainable SS head) and teacher:

    * ``loss_ss = ss_weight * ss_temp^2 * (1/|S|) sum_{j in S} KL(softmax(A_t[j]/ss_temp) || softmax(A_s[j]/ss_temp))``,
      S = rotated images whose source the teacher ranks first, plus the ``ss_ratio`` share of the
      others with the best rank of the source;
    * ``loss_tf = tf_weight * tf_temp^2 * (1/|R|) sum_{j in R} KL(p_t(x_j) || p_s(x_j))`` with
      ``p(x) = softmax(z(x)/tf_temp)``, over rotated images, R selected likewise by the rank of the
      true class (``tf_ratio``);
    * the logit terms on the N originals (:meth:`FeatureDistiller.logit_terms`): the config's
      ``1.0 x CE + 0.0 x KL(kl_temp 4)`` is ``alpha = 0``; with logit KD the KL term uses the
      study's ``temperature`` (T = 4 = the config's kl_temp) and weight ``alpha * T^2``
      (upstream torchdistill: ``1.0 x CE + 0.9 x 16 x KL``).

    CE weight ``1 - alpha`` (config: 1.0). The student is trained on all 4N images (its BN
    statistics see the rotations, as in SSKD); the returned logits are the originals' ``(N, K)``.
    Teacher and student each run once per batch on ``4N`` images, so a step costs about 4x KD's.

    Uses: torchdistill's ``SSKDLoss`` (twice, with loss weights ``[0, 0, 1, 0]`` and
    ``[0, 0, 0, 1]``, to log SS and TF separately) and the SS head of ``SSWrapper4SSKD``. Written
    here: the cosine-similarity matrix (:func:`cosine_matrix`; torchdistill's, used by
    ``SSKDLoss`` and ``AuxSSKDLoss``, takes 0.2-0.3 s per call at N = 64 on 2 CPU cores, more than
    the networks) and hence ``AuxSSKDLoss``'s short forward (:func:`rotation_recognition_loss`);
    both are tested equal to torchdistill's.
    Differs from torchdistill's ``SSKDDatasetWrapper`` in one detail: that wrapper augments each
    rotated copy independently (its own random crop and flip); we rotate the augmented image, so
    the four copies show the same crop.
    """

    Options = SSKDOptions

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float, alpha: float,
                 options: SSKDOptions) -> None:
        super().__init__(student, teacher, temperature, alpha)
        self.options = options
        self.student_ss_head = ss_head(fc_in_features(student, "student"))
        self.teacher_ss_head = ss_head(fc_in_features(teacher, "teacher")).requires_grad_(False).eval()
        common = {"student_linear_module_path": "fc", "teacher_linear_module_path": "fc",
                  "student_ss_module_path": "ss_module", "teacher_ss_module_path": "ss_module",
                  "kl_temp": temperature, "ss_temp": options.ss_temp, "tf_temp": options.tf_temp,
                  "ss_ratio": options.ss_ratio, "tf_ratio": options.tf_ratio, "reduction": "batchmean"}
        self.ss_loss_fn = _SSKDLoss(**common, loss_weights=[0.0, 0.0, 1.0, 0.0])
        self.tf_loss_fn = _SSKDLoss(**common, loss_weights=[0.0, 0.0, 0.0, 1.0])

    def frozen_modules(self) -> list[nn.Module]:
        return [self.teacher_ss_head]

    def prepare(self, train_set: Dataset, device: torch.device, seed: int) -> None:
        """Stage 1: train the teacher's SS head on rotation recognition (backbone frozen, seeded)."""
        def rotation_recognition(images: torch.Tensor) -> torch.Tensor:
            features = self.teacher_forward(rotations(images), ["avgpool"])[1]["avgpool"].flatten(1)
            return rotation_recognition_loss(self.teacher_ss_head(features))

        o = self.options
        train_auxiliary(self.teacher_ss_head, rotation_recognition, train_set, device, seed,
                        epochs=o.ss_head_epochs, batch_size=o.ss_head_batch_size, lr=o.ss_head_lr,
                        momentum=o.ss_head_momentum, weight_decay=o.ss_head_weight_decay,
                        milestones=o.ss_head_milestones, gamma=o.ss_head_gamma, label="SSKD teacher SS head")

    def sskd_terms(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, student_ss: torch.Tensor,
                   teacher_ss: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss_ss", "loss_tf"}`` for a rotation batch.

        Args:
            student_logits, teacher_logits: ``(4N, K)`` on :func:`rotations` of N images.
            student_ss, teacher_ss: ``(4N, D_s)``, ``(4N, D_t)`` SS-head outputs.
            targets: ``(N,)`` classes of the originals.
        """
        student_io = {"fc": {"output": student_logits.float()}, "ss_module": {"output": student_ss.float()}}
        teacher_io = {"fc": {"output": teacher_logits.float()}, "ss_module": {"output": teacher_ss.float()}}
        with full_precision(student_logits):
            return {"loss_ss": self.options.ss_weight * self.ss_loss_fn(student_io, teacher_io, targets),
                    "loss_tf": self.options.tf_weight * self.tf_loss_fn(student_io, teacher_io, targets)}

    def forward_train(self, images: torch.Tensor, targets: torch.Tensor,
                      indices: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = rotations(images)
        teacher_logits, teacher_feats = self.teacher_forward(batch, ["avgpool"])
        with torch.no_grad():
            teacher_ss = self.teacher_ss_head(teacher_feats["avgpool"].flatten(1))
        logits, student_feats = self.student_forward(batch, ["avgpool"])
        student_ss = self.student_ss_head(student_feats["avgpool"].flatten(1))
        terms = self.logit_terms(logits[0::4], teacher_logits[0::4], targets)
        terms |= self.sskd_terms(logits, teacher_logits, student_ss, teacher_ss, targets)
        return logits[0::4], terms
