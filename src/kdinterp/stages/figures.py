"""Stage ``figures``: the paper-figure counterparts, ``REPRODUCTION.md`` and the DVC metrics, from the run's outputs.

Every input is read through the measures (:func:`kdinterp.reporting.results.load_run`) and checked
before anything is written; the figures are drawn by :mod:`kdinterp.reporting.figures` and
:mod:`kdinterp.reporting.grids`, the report by :mod:`kdinterp.reporting.reproduction`, the headline metrics per model
(``outputs/metrics/<key>.json``, dvc.yaml's ``metrics``) by :mod:`kdinterp.reporting.headline`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from kdinterp.core import study
from kdinterp.core.io import write_text
from kdinterp.core.params import Params
from kdinterp.core.study import FIG1_FILE, PER_CATEGORY_FILE, REPRODUCTION_FILE, SENSITIVITY_FILE
from kdinterp.reporting.dvc_plots import write_plot_tables
from kdinterp.reporting.figures import (
    STYLE,
    plot_accuracy_detectors,
    plot_detectors_per_category,
    plot_sensitivity,
    save_figure,
)
from kdinterp.reporting.grids import draw_grids
from kdinterp.reporting.headline import write_headline
from kdinterp.reporting.reproduction import reproduction_markdown
from kdinterp.reporting.results import RunResults, load_run

__all__ = ["make_figures"]


def make_figures(params: Params, layout: study.Layout, out: Path) -> None:
    """Stage ``figures``: write the three figures, the two P14 grids (when params.yaml has a ``saliency``
    section) and ``REPRODUCTION.md`` into ``out``, the plot-ready tables of ``dvc plots show``
    (:func:`kdinterp.reporting.dvc_plots.write_plot_tables`) into ``layout``, and every model's headline
    metrics into ``outputs/metrics/`` (:func:`kdinterp.reporting.headline.write_headline`).

    Args:
        params: the run's parameters.
        layout: where the pipeline's outputs are (``study.Layout(Path("outputs"))``).
        out: the destination directory (``paper_figures/``), created if missing.

    Raises:
        FileNotFoundError: an input is missing; the message names the file and the stage that writes it.
        ParamsError: a paper role has no model in ``params.paper_models``.
        StaleOutputError: an input is incomplete or stale.
    """
    run = load_run(params, layout)
    out = Path(out)
    figures: dict[str, Callable[[Params, RunResults], Figure]] = {
        FIG1_FILE: plot_accuracy_detectors, PER_CATEGORY_FILE: plot_detectors_per_category,
        SENSITIVITY_FILE: plot_sensitivity}
    with matplotlib.rc_context(STYLE):
        grids = draw_grids(params, layout)  # P14 grids (with a saliency section): read before anything is written
        for name, draw in figures.items():
            save_figure(draw(params, run), out / name)
        for name, grid in grids.items():
            save_figure(grid, out / name)
    write_text(out / REPRODUCTION_FILE, reproduction_markdown(params, run))
    write_plot_tables(params, layout, run)
    write_headline(params, run, layout)
