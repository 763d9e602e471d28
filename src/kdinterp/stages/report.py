"""Stage ``report``: static HTML pages of every model's dissection, in the spirit of NetDissect's.

Outputs, in ``out`` (``outputs/report``):

* ``index.html``: every (model, seed) side by side, grouped by model: detectors / units, unique
  concepts, detectors per category (table; bar chart of each model's mean over seeds), detectors
  per concept seed by seed, strongest units; links to the pages.
* ``<key>.html``: one model at one seed: summary and bar chart of detectors per category, then
  every unit by IoU (highest first): concept, category, IoU, detector badge and a strip of its
  top-k probe images (:mod:`kdinterp.reporting.strips`).

The inputs are read by :mod:`kdinterp.reporting.dissections`; the pages (:mod:`kdinterp.reporting.html`)
are plain HTML and CSS with inline SVG charts: no script, no network, relative links only, so the
directory opens from disk. Same inputs, same bytes.
"""

from __future__ import annotations

import functools
from pathlib import Path

from kdinterp.core import study
from kdinterp.core.io import write_text
from kdinterp.core.params import Params
from kdinterp.core.progress import log
from kdinterp.dissection.broden import load_broden
from kdinterp.reporting.dissections import load_models
from kdinterp.reporting.html import index_page, model_page
from kdinterp.reporting.strips import PICTURE_CACHE, TILE, read_picture, stored_height, write_strips

__all__ = ["write_report"]


def write_report(params: Params, layout: study.Layout, out: Path, *, tile: int = TILE) -> None:
    """Stage ``report``: write ``index.html``, one page per (model, seed) and the unit strips under ``out``.

    The dissection outputs of every model and seed are read and checked before anything is
    written; then come the strips, the pages (``<key>.html``) and ``index.html`` last, each file
    written atomically. Files of an earlier report that this one does not rewrite are left alone
    (DVC removes the stage's output directory before it runs).

    Args:
        params: the run's parameters (models, seeds, roles, probe set, categories).
        layout: where the dissection outputs are (measure ``dissection``, per study model).
        out: the report directory (``outputs/report``).
        tile: displayed height in pixels of one probe image in a strip.

    Raises:
        FileNotFoundError: a dissection output or a probe image is missing.
        ReportInputError: a dissection output is malformed, stale (another seed) or does not fit the probe set.
        BrodenError: the probe set is malformed.
        ParamsError: the params fail :func:`kdinterp.core.study.check`.
    """
    broden = load_broden(params.dissection.broden_dir, params.dissection.categories, one_size=False)  # shown only
    models = load_models(params, layout, len(broden.rows))
    height = stored_height(broden, tile)
    picture = functools.lru_cache(maxsize=PICTURE_CACHE)(functools.partial(read_picture, height=height))
    for model in models:
        strips = write_strips(model, broden, out, picture, tile)
        write_text(out / f"{model.key}.html", model_page(params, models, model, strips))
    write_text(out / "index.html", index_page(params, models))
    log(f"report: {out / 'index.html'} ({len(models)} dissections of {len({m.name for m in models})} models)")
