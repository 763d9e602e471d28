"""Class-similarity measures on hand-made predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdinterp.measures.similarity.scores import (
    chance_same_group_mass,
    class_mean_probs,
    nontarget_entropy,
    same_group_mass,
    similarity_agreement,
    within_class_entropy,
)


def test_class_mean_probs_and_entropy_by_hand() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.5, 1e-12], [1.0, 1e-12, 1e-12], [1 / 3, 1 / 3, 1 / 3], [0.2, 0.2, 0.6]]))
    targets = torch.tensor([0, 0, 1, 2])
    matrix = class_mean_probs(logits, targets, 3)
    np.testing.assert_allclose(matrix[0], [0.75, 0.25, 0.0], atol=1e-9)
    # H(0.75, 0.25) = 0.5623; H(uniform 3) = log 3; H(0.2, 0.2, 0.6) = 0.9503
    expected = (-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) + math.log(3)
                - (0.4 * math.log(0.2) + 0.6 * math.log(0.6))) / 3
    assert within_class_entropy(matrix) == pytest.approx(expected, rel=1e-6)
    # (b): the non-target rows renormalised: (1, 0) -> 0; (1/3, 1/3) and (0.2, 0.2) -> (1/2, 1/2) -> log 2
    assert nontarget_entropy(matrix) == pytest.approx(2 * math.log(2) / 3, rel=1e-6)


def test_candidate_b_ignores_confidence_where_a_does_not() -> None:
    shape = np.array([[0.0, 0.6, 0.3, 0.1], [0.6, 0.0, 0.3, 0.1], [0.3, 0.3, 0.0, 0.4], [0.1, 0.3, 0.6, 0.0]])
    unsure, sure = (np.eye(4) * p + shape * (1 - p) for p in (0.4, 0.9))  # same non-target shape, other confidence
    assert within_class_entropy(sure) < within_class_entropy(unsure) - 0.3
    assert nontarget_entropy(sure) == pytest.approx(nontarget_entropy(unsure), rel=1e-12)


def test_class_without_images_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"classes without validation images: \[2\]"):
        class_mean_probs(torch.zeros(2, 3), torch.tensor([0, 1]), 3)


def test_agreement_and_same_group_mass() -> None:
    groups = ["boat", "boat", "car", "car"]
    structured = np.array([[0.7, 0.2, 0.05, 0.05], [0.2, 0.7, 0.05, 0.05],
                           [0.05, 0.05, 0.7, 0.2], [0.05, 0.05, 0.2, 0.7]])
    uniform = np.full((4, 4), 0.1) + np.eye(4) * 0.6
    assert similarity_agreement(structured, structured) == pytest.approx(1.0)
    assert same_group_mass(structured, groups) == pytest.approx(0.2 / 0.3)
    assert same_group_mass(uniform, groups) == pytest.approx(chance_same_group_mass(groups)) == pytest.approx(1 / 3)
