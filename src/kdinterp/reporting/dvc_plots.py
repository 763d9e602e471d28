"""Plot-ready tables for ``dvc plots show`` (dvc.yaml's top-level ``plots:``), written by stage ``figures``.

DVC draws one line per file or per column; it cannot pick rows of a table or group them by a column.
These tables are long: one row per model, seed and x value, with the model's name in column
``model`` and its seed in ``seed``; the templates in ``.dvc/plots/`` colour by ``model`` and draw
each seed as a thin line and the mean over seeds as a thick one. The paths are
:meth:`kdinterp.core.study.Layout.plot_table`:

* ``training.csv``: every trained model's history (``training/<key>.csv``), epoch by epoch:
  ``val_top1``, ``train_top1`` and ``loss``;
* ``detectors_vs_iou.csv``: unit-basis detectors against the IoU threshold, at the params' quantile;
* ``detectors_vs_quantile.csv``: unit-basis detectors against the activation quantile, at the
  params' IoU threshold.

Both detector tables are read off each model's ``sensitivity.csv`` (the grid that
``fig_sensitivity.png`` draws), so the page and the figure show the same counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kdinterp.core import study
from kdinterp.core.io import atomic_path
from kdinterp.core.params import Params
from kdinterp.reporting.paper import ordered_models
from kdinterp.reporting.results import RunResults
from kdinterp.reporting.robustness import sensitivity_grid

__all__ = ["HISTORY_COLUMNS", "detector_tables", "training_table", "write_plot_tables"]

#: The history columns every trained model has (a distilled student's ``loss_kd`` is left out).
HISTORY_COLUMNS: tuple[str, ...] = ("val_top1", "train_top1", "loss")


def training_table(params: Params, layout: study.Layout) -> pd.DataFrame:
    """Every trained model's training history, one row per model, seed and epoch.

    Args:
        params: the run's parameters (which models exist).
        layout: where the histories are (:meth:`kdinterp.core.study.Layout.history`).

    Returns:
        Columns ``model, seed, epoch`` and :data:`HISTORY_COLUMNS`, in the figures' model order.

    Raises:
        FileNotFoundError: a trained model has no history (its train stage has not run).
    """
    frames = []
    for model in ordered_models(params):
        if not model.group.trained:
            continue
        path = layout.history(model)
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `dvc repro {model.stage('train')}`")
        history = pd.read_csv(path)
        frames.append(history[["epoch", *HISTORY_COLUMNS]].assign(model=model.name, seed=model.seed))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["epoch", *HISTORY_COLUMNS])
    return table[["model", "seed", "epoch", *HISTORY_COLUMNS]]


def detector_tables(run: RunResults) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Unit-basis detectors against the IoU threshold (at the params' quantile) and against the quantile
    (at the params' IoU threshold), one row per model, seed and x value.

    Args:
        run: this run's results (``ModelResult.dissection.sensitivity``).

    Returns:
        ``(model, seed, iou_threshold, detectors)`` and ``(model, seed, quantile, detectors)``; a model
        lacking a grid point is left out of that table (the grid is the one every model has).
    """
    quantiles, thresholds = sensitivity_grid(run)
    at_quantile = next((q for q in quantiles if np.isclose(q, run.quantile)), None)      # the params' grid point
    at_threshold = next((t for t in thresholds if np.isclose(t, run.iou_threshold)), None)
    by_iou, by_quantile = [], []
    for m in run.models.values():
        grid = m.dissection.sensitivity
        by_iou += [(m.name, m.seed, t, grid["unit", at_quantile, t][0]) for t in thresholds
                   if ("unit", at_quantile, t) in grid]
        by_quantile += [(m.name, m.seed, q, grid["unit", q, at_threshold][0]) for q in quantiles
                        if ("unit", q, at_threshold) in grid]
    return (pd.DataFrame(by_iou, columns=["model", "seed", "iou_threshold", "detectors"]),
            pd.DataFrame(by_quantile, columns=["model", "seed", "quantile", "detectors"]))


def write_plot_tables(params: Params, layout: study.Layout, run: RunResults) -> None:
    """Write :data:`kdinterp.core.study.PLOT_TABLES` (stage ``figures``), each atomically.

    Args:
        params: the run's parameters.
        layout: where the histories are read and the tables written (:meth:`~kdinterp.core.study.Layout.plot_table`).
        run: this run's results.
    """
    by_iou, by_quantile = detector_tables(run)
    tables = {study.TRAINING_PLOT: training_table(params, layout), study.IOU_PLOT: by_iou,
              study.QUANTILE_PLOT: by_quantile}
    for name, table in tables.items():
        path = layout.plot_table(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
