"""Distillers: the teacher is frozen and stays in eval mode; loss terms are named."""

from __future__ import annotations

import torch

from kdinterp.core.params import ModelParams
from kdinterp.training.distill import LogitKD, Vanilla
from kdinterp.training.models import build_model

SPEC = ModelParams("resnet10", width=4, small_input=True)


def test_teacher_stays_in_eval_mode_and_gets_no_gradients() -> None:
    teacher, student = build_model(SPEC, 3), build_model(SPEC, 3)
    distiller = LogitKD(student, teacher, temperature=4.0, alpha=0.5).train()
    assert student.training and not teacher.training
    logits, terms = distiller.forward_train(torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0]), torch.arange(4))
    sum(terms.values()).backward()
    assert set(terms) == {"loss_ce", "loss_kd"} and logits.shape == (4, 3)
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    assert {id(p) for p in distiller.learnable_parameters()} == {id(p) for p in student.parameters()}


def test_teacher_batchnorm_statistics_do_not_move() -> None:
    teacher = build_model(SPEC, 3)
    before = teacher.bn1.running_mean.clone()
    LogitKD(build_model(SPEC, 3), teacher, 2.0, 0.5).train().forward_train(torch.randn(4, 3, 16, 16) + 3,
                                                                           torch.zeros(4, dtype=torch.long),
                                                                           torch.arange(4))
    assert torch.equal(teacher.bn1.running_mean, before)


def test_vanilla_uses_label_smoothing() -> None:
    student = build_model(SPEC, 3)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    torch.manual_seed(0)
    plain = Vanilla(student, 0.0).eval().forward_train(x, y, torch.arange(4))[1]["loss_ce"]
    smooth = Vanilla(student, 0.3).eval().forward_train(x, y, torch.arange(4))[1]["loss_ce"]
    assert plain.item() != smooth.item()
