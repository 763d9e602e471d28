"""Loss values: KD in the paper's form equals torchdistill's KDLoss with alpha swapped; LS formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchdistill.losses.mid_level import KDLoss

from kdinterp.training.losses import cross_entropy, kd_terms

STUDENT = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
TEACHER = torch.tensor([[1.0, 1.0, -2.0], [3.0, 0.0, 0.0]])
TARGETS = torch.tensor([0, 2])


def _manual(student, teacher, targets, temperature, alpha):
    p_t = F.softmax(teacher / temperature, 1)
    kl = (p_t * (p_t.log() - F.log_softmax(student / temperature, 1))).sum(1).mean()
    return (1 - alpha) * F.cross_entropy(student, targets) + alpha * temperature**2 * kl


@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 0.9])
def test_kd_equals_torchdistill_with_alpha_swapped(temperature: float, alpha: float) -> None:
    ours = sum(kd_terms(STUDENT, TEACHER, TARGETS, temperature, alpha).values())
    reference = KDLoss(".", "output", ".", "output", temperature=temperature, alpha=1 - alpha)(
        {".": {"output": STUDENT}}, {".": {"output": TEACHER}}, TARGETS)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-6)
    assert ours.item() == pytest.approx(_manual(STUDENT, TEACHER, TARGETS, temperature, alpha).item(), rel=1e-6)


def test_alpha_one_keeps_the_temperature_squared_factor() -> None:
    terms = kd_terms(STUDENT, TEACHER, TARGETS, 4.0, 1.0)
    assert terms["loss_ce"].item() == 0.0
    assert terms["loss_kd"].item() == pytest.approx(_manual(STUDENT, TEACHER, TARGETS, 4.0, 1.0).item(), rel=1e-6)


def test_identical_logits_give_zero_distillation_term() -> None:
    assert kd_terms(STUDENT, STUDENT, TARGETS, 2.0, 0.5)["loss_kd"].item() == pytest.approx(0.0, abs=1e-7)


def test_golden_value() -> None:
    """Worked by hand for one sample: z_s = (0, 0), z_t = (log 3, 0), y = 0, T = 1, alpha = 0.5.

    CE = log 2; p_t = (3/4, 1/4), p_s = (1/2, 1/2); KL = 3/4 log(3/2) + 1/4 log(1/2).
    """
    terms = kd_terms(torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([0]), 1.0, 0.5)
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert terms["loss_ce"].item() == pytest.approx(0.5 * math.log(2.0), rel=1e-6)
    assert terms["loss_kd"].item() == pytest.approx(0.5 * kl, rel=1e-5)


def test_label_smoothing_is_the_papers_ls_loss() -> None:
    eps, k = 0.1, STUDENT.shape[1]
    log_p = F.log_softmax(STUDENT, 1)
    uniform = -log_p.mean(1).mean()
    expected = (1 - eps) * F.cross_entropy(STUDENT, TARGETS) + eps * uniform
    assert cross_entropy(STUDENT, TARGETS, eps).item() == pytest.approx(expected.item(), rel=1e-6)
    assert k == 3
