"""Class-similarity information in a model's outputs (paper §5 of ``research/paper.md``).

The paper reports the "entropy of the model's output distribution within the same class"
(KD 2.9041 > scratch 2.8986 > LS 2.6040 on ImageNet) without its formula. ``research/paper.md`` §5
lists two candidates; kdinterp computes both:

* ``class_mean_probs``: ``M[c] = mean over validation images x of class c of softmax(z(x))``,
  a ``(K, K)`` row-stochastic matrix (row = true class, column = predicted class).
* candidate (a), ``within_class_entropy = (1 / K) * sum_c H(M[c])`` in nats,
  ``H(p) = -sum_k p_k log p_k``. This was kdinterp's definition from its first commit, chosen
  before any result was seen;
* candidate (b), ``nontarget_entropy = (1 / K) * sum_c H(N[c])`` in nats, where ``N[c]`` is row
  ``M[c]`` without its diagonal entry, renormalised to sum to 1 (:func:`nontarget_distribution`).
  Added after (a)'s results were known (issue "Every claim with a confidence interval"); both are
  reported, neither is picked.

(a) mixes confidence with similarity: a model that is less sure of the true class scores higher.
(b) measures only how the remaining mass spreads over the other classes.

A model that spreads probability over similar classes has a higher value. Two further measures
use the non-target part of ``M`` (each row without its diagonal entry, renormalised to sum to 1),
which describes *which* other classes a model finds similar, independent of its confidence:

* ``similarity_agreement(M_teacher, M_student)``: Pearson correlation of the two models'
  non-target distributions over all off-diagonal entries (teacher -> student transfer).
* ``same_group_mass(M, groups)``: mean share of non-target mass on classes of the same group
  (in the concept world: subtypes of the same object type, the true similarity structure).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["chance_same_group_mass", "class_mean_probs", "nontarget_distribution", "nontarget_entropy",
           "same_group_mass", "similarity_agreement", "within_class_entropy"]


def class_mean_probs(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> np.ndarray:
    """Mean softmax output per true class.

    Args:
        logits: ``(N, K)``.
        targets: ``(N,)`` class indices.
        num_classes: ``K``.

    Returns:
        float64 ``(K, K)``; row c is the mean predicted distribution over images of class c.

    Raises:
        ValueError: a class has no image.
    """
    probs = logits.double().softmax(1)
    sums = torch.zeros(num_classes, num_classes, dtype=torch.float64).index_add_(0, targets, probs)
    counts = torch.bincount(targets, minlength=num_classes)
    if (counts == 0).any():
        raise ValueError(f"classes without validation images: {torch.nonzero(counts == 0).flatten().tolist()}")
    return (sums / counts[:, None]).numpy()


def _entropy(rows: np.ndarray) -> np.ndarray:
    """Entropy in nats of each row of a row-stochastic ``(K, M)`` array: ``(K,)``."""
    return -(rows * np.log(np.clip(rows, 1e-300, 1.0))).sum(1)


def within_class_entropy(mean_probs: np.ndarray) -> float:
    """Candidate (a): mean over classes of the entropy (nats) of the class-mean prediction ``(K, K)``."""
    return float(np.mean(_entropy(mean_probs)))


def nontarget_entropy(mean_probs: np.ndarray) -> float:
    """Candidate (b): mean over classes of the entropy (nats) of the renormalised non-target part of ``(K, K)``.

    At most ``log(K - 1)`` (uniform over the other classes).
    """
    return float(np.mean(_entropy(nontarget_distribution(mean_probs))))


def nontarget_distribution(mean_probs: np.ndarray) -> np.ndarray:
    """Each row of ``(K, K)`` without its diagonal, renormalised: ``(K, K - 1)``."""
    k = mean_probs.shape[0]
    off = mean_probs[~np.eye(k, dtype=bool)].reshape(k, k - 1)
    return off / off.sum(1, keepdims=True)


def similarity_agreement(teacher: np.ndarray, student: np.ndarray) -> float:
    """Pearson correlation of two models' non-target distributions (both ``(K, K)`` class-mean matrices)."""
    a, b = nontarget_distribution(teacher).ravel(), nontarget_distribution(student).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def same_group_mass(mean_probs: np.ndarray, groups: list[str]) -> float:
    """Mean share of non-target probability on classes of the same group.

    Args:
        mean_probs: ``(K, K)`` class-mean predictions.
        groups: group name of each class (e.g. its object type), length ``K``.

    Returns:
        A fraction; a model blind to the group structure scores ``(s - 1) / (K - 1)`` for groups
        of size ``s`` (see :func:`chance_same_group_mass`).
    """
    k = len(groups)
    same = np.array([[groups[i] == groups[j] for j in range(k)] for i in range(k)])
    same_off = same[~np.eye(k, dtype=bool)].reshape(k, k - 1)
    return float(np.mean((nontarget_distribution(mean_probs) * same_off).sum(1)))


def chance_same_group_mass(groups: list[str]) -> float:
    """:func:`same_group_mass` of a uniform non-target distribution."""
    k = len(groups)
    return float(np.mean([(groups.count(g) - 1) / (k - 1) for g in groups]))
