"""Feature-based distillers of the study: AT, FT, CRD and SSKD, each with or without logit KD.

Han et al. (ICML 2023), ``research/paper.md`` §3.3: "feature-based KD methods with and without
an added logit-distillation term" (prediction P10). Every method is a
:class:`~kdinterp.training.distill.Distiller` whose loss is

    ``loss_ce + [loss_kd] + <feature terms>``,

where ``alpha = 0`` ("without logit KD") gives ``loss_ce = CE(y, z_s)`` alone and ``alpha > 0``
("with logit KD") adds exactly :func:`kdinterp.training.losses.kd_terms` (``(1 - alpha) * CE`` and
``alpha * T^2 * KL``; torchdistill's ``KDLoss`` calls ``1 - alpha`` its ``alpha``). Feature terms are
computed with torchdistill 1.1.5's loss modules (the library the paper's code used) on features
read by forward hooks:

* ``at``: ``loss_at`` on layer3 and layer4 (``ATLoss``); no preliminary stage.
* ``ft``: ``loss_ft`` on layer4 factors (``FTLoss``, ``Paraphraser4FactorTransfer``,
  ``Translator4FactorTransfer``); ``prepare`` trains the paraphraser (1 epoch).
* ``crd``: ``loss_crd`` on avgpool embeddings (``CRDLoss``, ``Normalizer4CRD``; the negative
  sampler is ours); ``prepare`` records the training labels.
* ``sskd``: ``loss_ss``, ``loss_tf`` on rotated copies of the batch (``SSKDLoss``,
  ``AuxSSKDLoss``); ``prepare`` trains the teacher's self-supervision head (30 epochs).

Options (``params.yaml``) are validated by the frozen dataclasses :class:`ATOptions`,
:class:`FTOptions`, :class:`CRDOptions`, :class:`SSKDOptions`, whose defaults are the paper's
torchdistill configs (KD_XAI, ``research/paper.md`` §9). One deliberate difference for all four:
the CE weight is ``1 - alpha`` (1.0 without logit KD), where KD_XAI's AT and CRD configs use 0.1
and 0.0; see each class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from kdinterp.core import study
from kdinterp.training.feature_kd._base import FeatureDistiller
from kdinterp.training.feature_kd.at import AT, ATOptions
from kdinterp.training.feature_kd.crd import CRD, CRDOptions
from kdinterp.training.feature_kd.ft import FT, FTOptions
from kdinterp.training.feature_kd.sskd import SSKD, SSKDOptions

__all__ = ["AT", "CRD", "FT", "SSKD", "ATOptions", "CRDOptions", "FTOptions", "FeatureDistiller", "SSKDOptions",
           "build_feature_distiller", "check_classes", "feature_methods"]


def feature_methods() -> list[str]:
    """The feature-KD methods of the method table (:data:`kdinterp.core.study.METHODS`), in table order."""
    return [name for name, method in study.METHODS.items() if method.distiller is not None]


def check_classes(student: nn.Module, teacher: nn.Module | None, num_classes: int) -> None:
    """Both networks' ``fc`` output ``num_classes`` logits.

    Raises:
        ValueError: a network outputs another number of classes.
    """
    for role, model in (("student", student), ("teacher", teacher)):
        fc = getattr(model, "fc", None)
        if isinstance(fc, nn.Linear) and fc.out_features != num_classes:
            raise ValueError(f"the {role} outputs {fc.out_features} classes, the data set has {num_classes}")


def build_feature_distiller(method: str, student: nn.Module, teacher: nn.Module, *, temperature: float,
                            alpha: float, options: Mapping[str, Any] | Any | None, num_classes: int,
                            num_samples: int, where: str = "options") -> FeatureDistiller:
    """Build the distiller of a feature-based KD method of the method table.

    Args:
        method: ``at``, ``ft``, ``crd`` or ``sskd`` (:func:`feature_methods`).
        student: the student (torchvision ResNet; trained).
        teacher: the teacher (torchvision ResNet; frozen, kept in eval mode).
        temperature: KD temperature T of the logit term (SSKD: also the config's ``kl_temp``).
        alpha: the paper's alpha, weight of the logit-KD term; 0 = the method without logit KD.
        options: the method's settings (:func:`kdinterp.core.study.parse_options`).
        num_classes: classes of the data set; both models' ``fc`` must output this many.
        num_samples: size of the training set (CRD's memory banks and negatives).
        where: dotted path of ``options`` in ``params.yaml``, for error messages.

    Returns:
        A :class:`FeatureDistiller`; call ``prepare`` before training (the trainer does).

    Raises:
        ValueError: not a feature method, or a network outputs another number of classes.
        kdinterp.core.config.ParamsError: bad options (the message names the dotted key).
    """
    if method not in feature_methods():
        raise ValueError(f"unknown feature-KD method '{method}'; known: {', '.join(feature_methods())}")
    parsed = study.parse_options(method, options, where)
    check_classes(student, teacher, num_classes)
    cls = study.resolve(study.METHODS[method].distiller)
    extra = (num_samples,) if method == "crd" else ()
    return cls(student, teacher, temperature, alpha, parsed, *extra)
