"""The P14 grids of stage ``figures``: activation maps and loss gradients of the paper's students on the same images.

The counterparts of the paper's two qualitative figures (research/paper.md §4.2, [FIGS]):

* :data:`ACTIVATION_GRID_FILE`: rows image, scratch, KD, LS; each student's layer4 activation map
  as the overlay of the paper's code, ``(act * 0.8 + 0.2) * image`` (:func:`kdinterp.measures.saliency.attribution.overlay`);
* :data:`GRADIENT_GRID_FILE`: rows image, scratch, KD; the absolute input gradient of the loss,
  min-max scaled per image.

The models are the roles of ``params.paper_models`` at the first seed of ``params.seeds``; the
images and maps come from each model's ``maps.npz`` (stage ``saliency_*@``), which hold the same
validation images for every model. The numbers behind P14 (object mass shares over all validation
images and seeds) are in REPRODUCTION.md.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from kdinterp.core import study
from kdinterp.core.params import Params
from kdinterp.core.records import require_input
from kdinterp.core.study import ACTIVATION_GRID_FILE, GRADIENT_GRID_FILE
from kdinterp.measures import saliency
from kdinterp.measures.saliency import attribution
from kdinterp.reporting.paper import ROLE_LABELS, STUDENT_ROLES
from kdinterp.reporting.results import FiguresInputError

__all__ = ["ACTIVATION_ROLES", "GRADIENT_ROLES", "draw_grids", "plot_grid"]

#: The student rows of each grid, as in the paper's figures.
ACTIVATION_ROLES: tuple[str, ...] = STUDENT_ROLES
GRADIENT_ROLES: tuple[str, ...] = ("scratch", "kd")


def _model(params: Params, role: str) -> study.Model:
    """The student of ``role`` (of :data:`~kdinterp.reporting.paper.STUDENT_ROLES`) at the first seed."""
    return study.find(params, params.paper_models[role], params.seeds[0])


def _load(params: Params, layout: study.Layout, roles: tuple[str, ...], key: str) -> tuple[np.ndarray, list]:
    """The grid images (``(k, 3, S, S)`` float in [0, 1]) and, per role, ``(model, maps (k, S, S))``.

    Raises:
        FileNotFoundError: a maps.npz is missing (the message names the stage that writes it).
        FiguresInputError: the models' maps.npz hold different images (stale outputs).
    """
    images, index, rows = None, None, []
    for role in roles:
        model = _model(params, role)
        path = require_input(saliency.MEASURE.path(layout, model, saliency.MAPS), saliency.MEASURE.stage_of(model),
                             "figures")
        with np.load(path) as npz:
            if index is None:
                index, images = npz["index"], npz["images"].astype(np.float32) / 255
            elif not np.array_equal(npz["index"], index):
                raise FiguresInputError(f"{path}: holds other validation images than the other grid rows; rerun "
                                        f"`dvc repro -s {model.stage('saliency')}`")
            rows.append((model, npz[key].astype(np.float32)))
    return images, rows


def plot_grid(params: Params, layout: study.Layout, kind: str) -> Figure:
    """One P14 grid: ``kind`` is ``activation`` (rows image, scratch, KD, LS) or ``loss_gradient`` (image, scratch, KD).

    Raises:
        ValueError: unknown ``kind``.
        FileNotFoundError, FiguresInputError: see :func:`_load`.
    """
    if kind not in ("activation", "loss_gradient"):
        raise ValueError(f"unknown grid '{kind}'; known: activation, loss_gradient")
    roles = ACTIVATION_ROLES if kind == "activation" else GRADIENT_ROLES
    images, rows = _load(params, layout, roles, kind)
    count = len(images)
    fig = Figure(figsize=(1.3 * count + 1.2, 1.3 * (len(rows) + 1) + 0.5))
    axes = fig.subplots(len(rows) + 1, count, squeeze=False)
    for j in range(count):
        axes[0, j].imshow(images[j].transpose(1, 2, 0))
    for i, (model, maps) in enumerate(rows, start=1):
        if kind == "activation":
            shown = attribution.overlay(torch.from_numpy(images), torch.from_numpy(maps)).numpy().transpose(0, 2, 3, 1)
        else:
            shown = attribution.minmax(torch.from_numpy(maps)).numpy()
        for j in range(count):
            axes[i, j].imshow(shown[j], **({} if kind == "activation" else {"cmap": "gray", "vmin": 0, "vmax": 1}))
        axes[i, 0].set_ylabel(f"{ROLE_LABELS[roles[i - 1]]}\n({model.key})", fontsize=9)
    axes[0, 0].set_ylabel("Image", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    title = ("layer4 activation, (act \u00b7 0.8 + 0.2) \u00b7 image" if kind == "activation"
             else "|input gradient of the loss|, min-max per image")
    fig.suptitle(f"P14: {title}; seed {params.seeds[0]}", fontsize=10)
    return fig


def draw_grids(params: Params, layout: study.Layout) -> dict[str, Figure]:
    """Both grids by output file name (:data:`kdinterp.core.study.ACTIVATION_GRID_FILE`, :data:`~kdinterp.core.study.GRADIENT_GRID_FILE`); none without
    a ``saliency`` section. Every input is read before the caller writes anything.

    Raises:
        FileNotFoundError, FiguresInputError: see :func:`plot_grid`.
    """
    if params.saliency is None:
        return {}
    return {ACTIVATION_GRID_FILE: plot_grid(params, layout, "activation"),
            GRADIENT_GRID_FILE: plot_grid(params, layout, "loss_gradient")}
