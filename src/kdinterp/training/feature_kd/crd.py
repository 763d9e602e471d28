"""Contrastive representation distillation (CRD): Tian, Krishnan & Isola, "Contrastive
Representation Distillation" (ICLR 2020)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset
from torchdistill.losses.mid_level import CRDLoss
from torchdistill.models.wrapper import Normalizer4CRD

from kdinterp.training.distill import check_classes
from kdinterp.training.feature_kd._base import (
    FeatureDistiller,
    dataset_labels,
    fc_in_features,
    full_precision,
)

__all__ = ["CRD", "CRDOptions"]


@dataclass(frozen=True)
class CRDOptions:
    """CRD settings; defaults are the paper's ``crd-resnet18_from_resnet34.yaml`` (KD_XAI).

    Attributes:
        feat_dim: embedding size of both ``Linear4CRD`` heads (128).
        num_negatives: negatives per sample (16384); capped at ``num_samples - 1``.
        nce_temp: temperature of the NCE scores (0.07; not the KD temperature).
        momentum: memory-bank momentum (0.5).
        weight: factor of the CRD term (the config's 1.0; upstream torchdistill: 0.8).
    """

    feat_dim: int = 128
    num_negatives: int = 16384
    nce_temp: float = 0.07
    momentum: float = 0.5
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.feat_dim < 1 or self.num_negatives < 1:
            raise ValueError(f"feat_dim and num_negatives must be >= 1, got {self.feat_dim}, {self.num_negatives}")
        if not self.nce_temp > 0:
            raise ValueError(f"nce_temp must be > 0, got {self.nce_temp}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")


class _CRDLoss(CRDLoss):
    """torchdistill's ``CRDLoss``; scores from one matmul with the whole memory bank when that is cheaper.

    ``CRDLoss.contrast_memory`` gathers ``B x (K + 1)`` memory rows (``index_select``) and takes
    batched dot products. When the negatives cover much of the memory (here ``4 (K + 1) >= N``;
    on the concept world ``K = N - 1``), multiplying the embeddings with every row once and
    picking the ``K + 1`` scores per sample is the same arithmetic without copying
    ``B (K + 1) d`` floats (8 vs 230 ms per batch of 64 on the concept world, 2 CPU cores). Normalisation
    constants and the momentum update are torchdistill's, unchanged (tested equal to it).
    """

    def contrast_memory(self, student_embed: torch.Tensor, teacher_embed: torch.Tensor, pos_indices: torch.Tensor,
                        contrast_idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        num_rows = self.memory_v1.size(0)
        if contrast_idx is None or 4 * contrast_idx.size(1) < num_rows:
            return super().contrast_memory(student_embed, teacher_embed, pos_indices, contrast_idx)
        temperature, momentum = self.params[1].item(), self.params[4].item()
        # out_v1[b, k] = exp(M_t[c_bk] . e_s[b] / tau), out_v2[b, k] = exp(M_s[c_bk] . e_t[b] / tau), as (B, K + 1, 1)
        # (copies of the banks: autograd keeps them for the embeddings' gradients; the update below is in place)
        out_v1 = torch.exp((student_embed @ self.memory_v2.clone().T).gather(1, contrast_idx) / temperature)
        out_v2 = torch.exp((teacher_embed @ self.memory_v1.clone().T).gather(1, contrast_idx) / temperature)
        out_v1, out_v2 = out_v1.unsqueeze(2), out_v2.unsqueeze(2)
        if self.params[2].item() < 0:  # Z from the first batch, as torchdistill (which keeps its graph)
            self.params[2] = out_v1.detach().mean() * num_rows
        if self.params[3].item() < 0:
            self.params[3] = out_v2.detach().mean() * num_rows
        out_v1 = torch.div(out_v1, self.params[2].item()).contiguous()
        out_v2 = torch.div(out_v2, self.params[3].item()).contiguous()
        with torch.no_grad():  # torchdistill's update: M[i] <- normalize(m M[i] + (1 - m) e_i)
            for memory, embed in ((self.memory_v1, student_embed), (self.memory_v2, teacher_embed)):
                rows = torch.index_select(memory, 0, pos_indices.view(-1))
                rows.mul_(momentum)
                rows.add_(torch.mul(embed, 1 - momentum))
                memory.index_copy_(0, pos_indices, rows.div(rows.pow(2).sum(1, keepdim=True).pow(0.5)))
        return out_v1, out_v2


class CRD(FeatureDistiller):
    """CRD (Tian, Krishnan & Isola, ICLR 2020) on the penultimate features (``avgpool`` output, flattened).

    Embeddings: ``e_s = g_s(h_s)``, ``e_t = g_t(h_t)``, linear maps to ``feat_dim`` followed by L2
    normalisation (torchdistill ``Normalizer4CRD(Linear)``, as in ``Linear4CRD``); both heads
    are trained (the teacher's backbone is not). Two memory banks hold one embedding per
    training sample: ``M_s`` (student) and ``M_t`` (teacher). For sample i with positive index i
    and K negatives ``j_1..j_K`` drawn uniformly, with replacement, from training samples of
    *other classes* (torchdistill ``CRDDatasetWrapper``, mode ``exact``, ratio 1.0),

    ``h(e, m) = exp(e . m / tau) / Z``  (Z fixed from the first batch: mean score x N),
    ``L_side = -(1/B) sum_i [ log(h_i0 / (h_i0 + K/N + eps)) + sum_k log((K/N) / (h_ik + K/N + eps)) ]``,
    ``loss_crd = weight * (L(e_s vs M_t) + L(e_t vs M_s))``,

    Tian et al.'s NCE objective with a memory bank (noise distribution uniform, ``P_n = 1/N``). After each
    batch the banks move towards the new embeddings: ``M[i] <- normalize(m M[i] + (1 - m) e_i)``.

    Total: ``loss_ce + [loss_kd] + loss_crd``. CE weight ``1 - alpha``. The paper's KD_XAI config
    uses CE weight **0.0** (upstream torchdistill: 1.0 x CE + 0.8 x CRD); with 0.0 the student's
    ``fc`` gets no signal and its accuracy is meaningless, so we keep CE.

    Uses: ``torchdistill.losses.mid_level.CRDLoss`` (its memory banks are this module's buffers,
    so they are checkpointed) and ``Normalizer4CRD``. Written here: the negative sampler, and
    the scores as one matmul with the whole bank when the negatives cover a quarter of it or
    more (``_CRDLoss``: same values as torchdistill's gather, 26x faster on the concept world).
    torchdistill draws negatives in its data-set wrapper; ``CRDLoss.draw`` (the fallback
    without them) is broken in 1.1.5 (it reads ``self.prob``, which does not exist). We draw them
    per batch from the global torch RNG (which the trainer seeds per epoch), always with
    replacement: torchdistill samples without replacement when K is at most the pool of
    other-class samples, which never happens with the cap ``K <= N - 1``.
    The sample labels come from the training set in :meth:`prepare` and are a buffer, so a
    resumed run needs no ``prepare``. Under torchrun (DDP) the memory update covers the global
    batch (:meth:`synchronise_memory`); each process draws the negatives of its own samples.
    """

    Options = CRDOptions

    @classmethod
    def from_recipe(cls, student: nn.Module, teacher: nn.Module, recipe: Any, options: CRDOptions, num_classes: int,
                    num_samples: int) -> CRD:
        """The study's constructor (:mod:`kdinterp.training.methods`); CRD's memory banks hold ``num_samples``.

        Raises:
            ValueError: a network outputs another number of classes than ``num_classes``, or
                ``num_samples < 2``.
        """
        check_classes(student, teacher, num_classes)
        return cls(student, teacher, recipe.temperature, recipe.alpha, options, num_samples)

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float, alpha: float,
                 options: CRDOptions, num_samples: int) -> None:
        super().__init__(student, teacher, temperature, alpha)
        if num_samples < 2:
            raise ValueError(f"CRD needs at least 2 training samples, got {num_samples}")
        self.options = options
        self.num_negatives = min(options.num_negatives, num_samples - 1)
        self.embed_student = Normalizer4CRD(nn.Linear(fc_in_features(student, "student"), options.feat_dim), power=2)
        self.embed_teacher = Normalizer4CRD(nn.Linear(fc_in_features(teacher, "teacher"), options.feat_dim), power=2)
        self.crd_loss_fn = _CRDLoss(student_norm_module_path="embed_student", student_empty_module_path="empty",
                                   teacher_norm_module_path="embed_teacher", input_size=options.feat_dim,
                                   output_size=num_samples, num_negative_samples=self.num_negatives,
                                   num_samples=num_samples, temperature=options.nce_temp,
                                   momentum=options.momentum, eps=1e-7)
        self.register_buffer("sample_labels", torch.full((num_samples,), -1, dtype=torch.long))
        self._pools: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def prepare(self, train_set: Dataset, device: torch.device, seed: int) -> None:
        """Record every training sample's class (the negatives come from other classes)."""
        labels = dataset_labels(train_set)
        if labels.shape != self.sample_labels.shape:
            raise ValueError(f"CRD was built for {len(self.sample_labels)} training samples, "
                             f"but the training set has {len(labels)}")
        if labels.unique().numel() < 2:
            raise ValueError("CRD draws negatives from other classes: the training set needs at least 2 classes")
        self.sample_labels.copy_(labels.to(self.sample_labels.device))
        self._pools = None

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_trainable_state_dict(state)
        self._pools = None

    def draw_contrast_indices(self, indices: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(B, 1 + K)`` sample indices: column 0 the positive (``indices``), then K negatives.

        Negative k of row b is uniform over training samples whose class differs from
        ``targets[b]`` (with replacement), drawn from the global torch RNG.
        """
        labels = self.sample_labels
        if bool((labels < 0).any()):
            raise RuntimeError("CRD does not know the training labels: call prepare(train_set, device, seed) first "
                               "(or load a checkpoint)")
        if self._pools is None or self._pools[0].device != labels.device:
            order = torch.argsort(labels, stable=True)  # sample indices grouped by class
            counts = torch.bincount(labels)
            self._pools = (order, counts, torch.cumsum(counts, 0) - counts)
        order, counts, starts = self._pools
        targets = targets.to(labels.device)
        own, start = counts[targets].unsqueeze(1), starts[targets].unsqueeze(1)
        pool = len(labels) - own  # samples of other classes
        u = torch.rand(len(targets), self.num_negatives, device=labels.device)
        r = torch.minimum((u * pool).long(), pool - 1)  # uniform position among the other classes' samples
        negatives = order[r + own * (r >= start)]  # skip over the block of the sample's own class
        return torch.cat([indices.to(labels.device).unsqueeze(1), negatives], dim=1)

    def crd_loss(self, student_embed: torch.Tensor, teacher_embed: torch.Tensor, indices: torch.Tensor,
                 contrast_indices: torch.Tensor) -> torch.Tensor:
        """``weight * CRDLoss`` on L2-normalised embeddings ``(B, feat_dim)``; updates the memory banks."""
        supp = {"pos_idx": indices, "contrast_idx": contrast_indices}
        student_io = {"embed_student": {"output": student_embed.float()}, "empty": {"input": supp}}
        teacher_io = {"embed_teacher": {"output": teacher_embed.float()}}
        with full_precision(student_embed):
            loss = self.crd_loss_fn(student_io, teacher_io)
        return self.options.weight * loss.reshape(())  # torchdistill returns shape (1,)

    @torch.no_grad()
    def synchronise_memory(self, indices: torch.Tensor, student_embed: torch.Tensor, teacher_embed: torch.Tensor,
                           saved: tuple[torch.Tensor, torch.Tensor], gather: Callable[[torch.Tensor], torch.Tensor],
                           first_batch: bool) -> None:
        """Under torchrun: replace this process's memory update by the update of the *global* batch.

        ``CRDLoss`` updates the rows of this process's samples only, and DDP would then overwrite
        every process's banks with rank 0's. Here each process restores its rows (``saved``, taken
        before the loss) and applies ``M[i] <- normalize(m M[i] + (1 - m) e_i)`` for the samples of
        all processes (``gather`` concatenates a tensor over processes, in rank order), so the
        banks stay identical everywhere and equal to a single-process run on the same global
        batch. On the first batch the normalisation constants Z are averaged over processes.
        """
        memory = self.crd_loss_fn
        memory.memory_v1.index_copy_(0, indices, saved[0])
        memory.memory_v2.index_copy_(0, indices, saved[1])
        rows = gather(indices)
        m = self.options.momentum
        for bank, embed in ((memory.memory_v1, student_embed), (memory.memory_v2, teacher_embed)):
            moved = bank.index_select(0, rows).mul_(m).add_(torch.mul(gather(embed.detach().float()), 1 - m))
            bank.index_copy_(0, rows, moved.div(moved.pow(2).sum(1, keepdim=True).pow(0.5)))
        if first_batch:
            memory.params[2:4] = gather(memory.params[2:4].unsqueeze(0)).mean(0)

    def forward_train(self, images: torch.Tensor, targets: torch.Tensor,
                      indices: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        contrast = self.draw_contrast_indices(indices, targets)
        teacher_logits, teacher_feats = self.teacher_forward(images, ["avgpool"])
        logits, student_feats = self.student_forward(images, ["avgpool"])
        student_embed = self.embed_student(student_feats["avgpool"].flatten(1))
        teacher_embed = self.embed_teacher(teacher_feats["avgpool"].flatten(1))
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if distributed:
            saved = (self.crd_loss_fn.memory_v1[indices].clone(), self.crd_loss_fn.memory_v2[indices].clone())
            first_batch = bool(self.crd_loss_fn.params[2] < 0)
        terms = self.logit_terms(logits, teacher_logits, targets)
        terms["loss_crd"] = self.crd_loss(student_embed, teacher_embed, indices, contrast)
        if distributed:
            self.synchronise_memory(indices, student_embed, teacher_embed, saved, all_gather_rows, first_batch)
        return logits, terms


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (rows may differ in number) over all processes, in rank order."""
    world = dist.get_world_size()
    size = torch.tensor([len(tensor)], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(sizes))
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[:len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:int(n)] for part, n in zip(parts, sizes, strict=True)])
