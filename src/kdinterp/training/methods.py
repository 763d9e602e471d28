"""The builders of the method table (:data:`kdinterp.core.study.METHODS`), one signature for all.

``build(student, teacher, model, num_classes, num_samples) -> Distiller``: ``student`` is a freshly
initialised network, ``teacher`` the frozen network it learns from (None for ``ce``), ``model`` the
:class:`kdinterp.core.study.Model` being trained (its ``recipe`` holds ``label_smoothing``, or
``temperature``, ``alpha`` (the paper's weight of the logit-KD term) and ``options``),
``num_classes`` the data set's classes and ``num_samples`` its size (CRD's memory banks).
"""

from __future__ import annotations

from torch import nn

from kdinterp.core import study
from kdinterp.training.distill import Distiller, LogitKD, Vanilla
from kdinterp.training.feature_kd import build_feature_distiller, check_classes

__all__ = ["build_ce", "build_feature", "build_kd"]


def build_ce(student: nn.Module, teacher: nn.Module | None, model: study.Model, num_classes: int,
             num_samples: int) -> Distiller:
    """Cross-entropy from labels, with the recipe's ``label_smoothing`` (f_scratch, f_LS, teachers)."""
    return Vanilla(student, model.recipe.label_smoothing)


def build_kd(student: nn.Module, teacher: nn.Module, model: study.Model, num_classes: int,
             num_samples: int) -> Distiller:
    """Hinton KD in the paper's form: ``(1 - alpha) * CE + alpha * T^2 * KL`` (f_KD)."""
    check_classes(student, teacher, num_classes)
    return LogitKD(student, teacher, model.recipe.temperature, model.recipe.alpha)


def build_feature(student: nn.Module, teacher: nn.Module, model: study.Model, num_classes: int,
                  num_samples: int) -> Distiller:
    """A feature-KD method (``at``, ``ft``, ``crd``, ``sskd``) with its validated options.

    Raises:
        kdinterp.core.config.ParamsError: bad options (the message names the key).
        ValueError: a network does not output ``num_classes`` logits.
    """
    spec = model.recipe
    return build_feature_distiller(spec.method, student, teacher, temperature=spec.temperature, alpha=spec.alpha,
                                   options=spec.options, num_classes=num_classes, num_samples=num_samples,
                                   where=f"{model.group.section}.{model.name}.options")
