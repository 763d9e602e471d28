"""The method table: how a student is trained, from a method's name to its distiller class in one hop.

Every method is a :class:`~kdinterp.training.distill.Distiller` class with one constructor for the
study, ``from_recipe(student, teacher, recipe, options, num_classes, num_samples)``: ``student`` a
freshly initialised network, ``teacher`` the frozen network it learns from (None for ``ce``),
``recipe`` its params entry (``label_smoothing``, or ``temperature``, ``alpha`` (the paper's weight
of the logit-KD term) and ``options``), ``options`` the validated options (:attr:`Method.options`),
``num_classes`` the data set's classes and ``num_samples`` its size (CRD's memory banks). Each entry
imports its class lazily (reading the table loads no torch code), in a function the import graph
can follow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kdinterp.core.config import ParamsError, from_mapping
from kdinterp.core.params import Params

if TYPE_CHECKING:
    from torch import nn

    from kdinterp.training.distill import Distiller

__all__ = ["METHODS", "Method", "build", "check", "feature_methods", "parse_options"]


def _vanilla() -> type[Distiller]:
    from kdinterp.training.distill import Vanilla
    return Vanilla


def _logit_kd() -> type[Distiller]:
    from kdinterp.training.distill import LogitKD
    return LogitKD


def _at() -> type[Distiller]:
    from kdinterp.training.feature_kd.at import AT
    return AT


def _ft() -> type[Distiller]:
    from kdinterp.training.feature_kd.ft import FT
    return FT


def _crd() -> type[Distiller]:
    from kdinterp.training.feature_kd.crd import CRD
    return CRD


def _sskd() -> type[Distiller]:
    from kdinterp.training.feature_kd.sskd import SSKD
    return SSKD


@dataclass(frozen=True)
class Method:
    """A way to train a student.

    Attributes:
        name: its key (``method:`` in params.yaml).
        distiller: returns its :class:`~kdinterp.training.distill.Distiller` class (imported on call);
            the class's ``Options`` is the frozen dataclass of its ``options:`` (None: it takes none).
        source: the paper the loss comes from, and the implementation it follows.
        feature: a feature-based method (AT, FT, CRD, SSKD), with or without logit KD; these take
            ``options:`` (validated by their class's ``Options``), the others take none.
    """

    name: str
    distiller: Callable[[], type[Distiller]]
    source: str
    feature: bool = False


#: Method name -> how a student is trained with it.
METHODS: dict[str, Method] = {
    "ce": Method("ce", _vanilla, "cross-entropy; label smoothing: Szegedy et al., CVPR 2016"),
    "kd": Method("kd", _logit_kd, "Hinton et al., 2015; torchdistill KDLoss"),
    "at": Method("at", _at, "Zagoruyko & Komodakis, ICLR 2017; torchdistill ATLoss", feature=True),
    "ft": Method("ft", _ft, "Kim et al., NeurIPS 2018; torchdistill FTLoss", feature=True),
    "crd": Method("crd", _crd, "Tian et al., ICLR 2020; torchdistill CRDLoss", feature=True),
    "sskd": Method("sskd", _sskd, "Xu et al., ECCV 2020; torchdistill SSKDLoss", feature=True),
}


def feature_methods() -> list[str]:
    """The feature-KD methods of :data:`METHODS`, in table order."""
    return [name for name, method in METHODS.items() if method.feature]


def parse_options(method: str, options: Any, where: str = "options") -> Any:
    """Validate a method's ``options`` from params.yaml into its options dataclass.

    Args:
        method: a key of :data:`METHODS`.
        options: a mapping (missing keys take the paper's defaults), None, or an options object.
        where: the dotted key of ``options``, for messages.

    Returns:
        The frozen options object, or None for a method without options.

    Raises:
        ParamsError: unknown method, options given to a method without any, unknown key or bad value.
    """
    if method not in METHODS:
        raise ParamsError(f"{where}: unknown method '{method}'; known: {', '.join(METHODS)}")
    if not METHODS[method].feature:
        if options:
            raise ParamsError(f"{where}: method '{method}' takes no options")
        return None
    cls = METHODS[method].distiller().Options
    return options if isinstance(options, cls) else from_mapping(cls, dict(options or {}), where)


def build(method: str, student: nn.Module, teacher: nn.Module | None, recipe: Any, num_classes: int,
          num_samples: int, where: str = "options") -> Distiller:
    """The distiller that trains ``student`` with ``method``.

    Args:
        method: a key of :data:`METHODS`.
        student: the freshly initialised student ``(N, 3, H, W) -> (N, num_classes)``.
        teacher: the frozen teacher (None for ``ce``).
        recipe: the model's params entry (``StudentParams``, ``TeacherParams`` or ``DistilledParams``).
        num_classes: classes of the data set; both networks' ``fc`` must output this many.
        num_samples: size of the training set.
        where: the dotted key of the recipe's options, for messages.

    Raises:
        ParamsError: unknown method or bad options (the message names ``where``).
        ValueError: a network outputs another number of classes.
    """
    options = parse_options(method, getattr(recipe, "options", None), where)
    return METHODS[method].distiller().from_recipe(student, teacher, recipe, options, num_classes, num_samples)


def check(params: Params) -> None:
    """Every distilled and self-distilled student names a distillation method with valid options.

    Raises:
        ParamsError: the message names the dotted key and the known methods.
    """
    for section in ("distilled", "self_distilled"):
        for name, spec in getattr(params, section).items():
            where = f"{section}.{name}"
            if spec.method not in METHODS or spec.method == "ce":
                raise ParamsError(f"{where}.method: '{spec.method}' is not a distillation method; "
                                  f"known: {', '.join(m for m in METHODS if m != 'ce')}")
            parse_options(spec.method, spec.options, f"{where}.options")
