"""The paper's side of every comparison: its reference values, its roles, and how each role is drawn.

Reference values come from ``research/paper.md`` and are shown beside ours, never written into our
measurements. Each model *name* has one colour in every figure and in the report (every seed of a
model shares it): the paper's roles theirs, other models the extra colours in order.
"""

from __future__ import annotations

import itertools

from kdinterp.core import study
from kdinterp.core.params import Params

__all__ = ["EXTRA_COLORS", "PAPER_DETECTORS", "PAPER_ENTROPY", "PAPER_LABEL", "PAPER_NOTATION", "PAPER_NUM_UNITS",
           "PAPER_TOP1_PERCENT", "ROLE_COLORS", "ROLE_LABELS", "STUDENT_ROLES", "model_colors", "model_order",
           "ordered_models", "signed"]

#: The paper's roles, in the order of its Figure 1: (a) scratch, (b) KD, (c) LS.
STUDENT_ROLES: tuple[str, ...] = tuple(role for role in study.ROLES if role != "teacher")

# Paper reference values: research/paper.md §6 "Figure 1" [FIG1] (ImageNet val, ResNet-18 student,
# ResNet-34 teacher; layer4, Broden, quantile 0.005, IoU >= 0.05) and §5 [SUM].
#: Top-1 accuracy on ImageNet val, in percent (research/paper.md §6, Figure 1).
PAPER_TOP1_PERCENT: dict[str, float] = {"scratch": 69.94, "kd": 70.80, "ls": 70.13}
#: Number of concept detectors among ResNet-18's layer4 units (research/paper.md §6, Figure 1).
PAPER_DETECTORS: dict[str, int] = {"scratch": 275, "kd": 312, "ls": 219}
#: Units in ResNet-18's layer4, over which the paper counts detectors (research/paper.md §4.1).
PAPER_NUM_UNITS = 512
#: Within-class output entropy in nats (research/paper.md §5, [SUM]).
PAPER_ENTROPY: dict[str, float] = {"kd": 2.9041, "scratch": 2.8986, "ls": 2.6040}
PAPER_LABEL = "paper (ImageNet, ResNet-18)"

#: One colour per role, shared by every figure; other models take EXTRA_COLORS in order.
ROLE_COLORS: dict[str, str] = {"teacher": "#5e3c99", "scratch": "#8c8c8c", "kd": "#1f6fb4", "ls": "#e08214"}
EXTRA_COLORS: tuple[str, ...] = (  # 16 distinct colours: the all_students profile has 15 more models
    "#1a9850", "#d73027", "#8c510a", "#c51b7d", "#01665e", "#4d4d4d", "#66bd63", "#f46d43",
    "#bf812d", "#de77ae", "#35978f", "#9e9ac8", "#a6d96a", "#fdae61", "#80cdc1", "#000000")
ROLE_LABELS: dict[str, str] = {"teacher": "Teacher", "scratch": "Scratch", "kd": "KD", "ls": "LS"}
#: The paper's notation for each role (research/paper.md §1).
PAPER_NOTATION: dict[str, str] = {"teacher": "teacher", "scratch": "f_scratch", "kd": "f_KD", "ls": "f_LS"}


def model_order(params: Params) -> list[str]:
    """Model names for figures and the report: the paper's roles first (teacher, scratch, kd, ls), then
    the rest in params order (:func:`kdinterp.core.study.models`).

    Raises:
        ParamsError: see :func:`kdinterp.core.study.check`.
    """
    roles = [params.paper_models[role] for role in study.ROLES if role in params.paper_models]
    return list(dict.fromkeys([*roles, *(m.name for m in study.models(params))]))


def model_colors(params: Params) -> dict[str, str]:
    """Model name -> colour: ``ROLE_COLORS`` for the paper's roles, ``EXTRA_COLORS`` in order for the rest.

    Every seed of a model has its name's colour.
    """
    role_of = {name: role for role, name in params.paper_models.items() if role in study.ROLES}
    extra = itertools.cycle(EXTRA_COLORS)
    return {name: ROLE_COLORS[role_of[name]] if name in role_of else next(extra) for name in model_order(params)}


def ordered_models(params: Params) -> list[study.Model]:
    """Every study model (:func:`kdinterp.core.study.models`), grouped by name in :func:`model_order`
    (roles first), each name's seeds in ``params.seeds`` order: the order of figures, tables and the report.

    Raises:
        ParamsError: see :func:`kdinterp.core.study.check`.
    """
    rank = {name: i for i, name in enumerate(model_order(params))}
    seed_rank = {seed: i for i, seed in enumerate(params.seeds)}
    return sorted(study.models(params), key=lambda m: (rank[m.name], seed_rank.get(m.seed, -1) if m.group.per_seed
                                                       else -1))


def signed(value: float, fmt: str) -> str:
    """``+37`` / ``-0.56``; the minus sign is a real one for print, and a value that rounds to 0 is ``+0``."""
    if float(f"{value:{fmt}}") == 0:
        value = abs(value)
    return f"{value:+{fmt}}".replace("-", "\u2212")
