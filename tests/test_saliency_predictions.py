"""P12 and P14 in stage ``figures``: verdicts from the saliency summaries, the two grids, REPRODUCTION.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdinterp.core import study
from kdinterp.core.params import Params
from kdinterp.core.study import ACTIVATION_GRID_FILE, GRADIENT_GRID_FILE, REPRODUCTION_FILE
from kdinterp.measures import saliency
from kdinterp.measures.registry import parse_params
from kdinterp.measures.saliency import METHODS
from kdinterp.reporting.predictions import check_predictions
from kdinterp.reporting.results import FiguresInputError, load_run
from kdinterp.stages.figures import make_figures
from tests.test_figures import SEEDS, _raw, _verdicts, _write_outputs

#: Per model, per seed: Grad-CAM pixel accuracy, FPR, loss-gradient and activation object mass.
#: kd - scratch: pixel acc +.05/+.06/+.04 (holds), FPR -.03/-.02/-.04 (holds): P12 holds;
#: loss-gradient mass +.01/-.02/+.01 (CI contains 0): P14a inconclusive;
#: activation mass: kd - scratch +.1 each (holds), kd - ls -.1 each (contradicted): P14b contradicted.
SALIENCY = {"scratch": ([0.70, 0.71, 0.72], [0.20, 0.21, 0.22], [0.50, 0.52, 0.49], [0.40, 0.41, 0.39]),
            "kd": ([0.75, 0.77, 0.76], [0.17, 0.19, 0.18], [0.51, 0.50, 0.50], [0.50, 0.51, 0.49]),
            "ls": ([0.72, 0.70, 0.71], [0.20, 0.20, 0.20], [0.50, 0.50, 0.50], [0.60, 0.61, 0.59]),
            "teacher": ([0.8], [0.1], [0.6], [0.6])}
SIZE, GRID = 8, 3


def _params() -> Params:
    raw = _raw()
    raw["saliency"] = {"ground_truth_dir": "data/w/saliency/val"}
    return parse_params(raw)


def _write_saliency(layout: study.Layout, params: Params, index: list[int] | None = None) -> None:
    rng = np.random.default_rng(0)
    for model in study.models(params):
        acc, fpr, grad, act = SALIENCY[model.name]
        i = SEEDS.index(model.seed) if model.group.per_seed else 0
        scores = saliency.FiveBandScores(pixel_acc=acc[i], precision=0.5, recall=0.5, fpr=fpr[i])
        saliency.SaliencySummary(model=model.name, seed=model.seed, group=model.group.kind, role=model.role or "",
                                 num_images=12, thresholds=(-0.7, -0.3, 0.3, 0.7),
                                 five_band={m: scores for m in METHODS},
                                 object_mass={"loss_gradient": grad[i], "activation": act[i], **{m: 0.5 for m in METHODS}}
                                 ).write(saliency.MEASURE.path(layout, model, saliency.SUMMARY))
        maps = {k: rng.random((GRID, SIZE, SIZE), dtype=np.float32) for k in (*METHODS, "loss_gradient", "activation")}
        np.savez(saliency.MEASURE.path(layout, model, saliency.MAPS), index=np.array(index or [0, 5, 9]),
                 images=rng.integers(0, 256, (GRID, 3, SIZE, SIZE), dtype=np.uint8), **maps)


def test_p12_p14_verdicts_grids_and_table(tmp_path: Path) -> None:
    params = _params()
    layout = _write_outputs(tmp_path / "outputs", params)
    _write_saliency(layout, params)
    verdicts = {p.pid: p.verdict for p in check_predictions(params, load_run(params, layout))
                if p.pid in ("P12", "P14a", "P14b")}
    assert verdicts == {"P12": "holds", "P14a": "inconclusive", "P14b": "contradicted"}
    make_figures(params, layout, tmp_path / "paper_figures")
    markdown = (tmp_path / "paper_figures" / REPRODUCTION_FILE).read_text(encoding="utf-8")
    assert {k: _verdicts(markdown)[k] for k in verdicts} == verdicts
    assert "## Saliency: five-band scores and object mass (P12, P14)" in markdown
    assert "| `kd` | grad_cam | 3 | 76.0 \u00b1 1.0 |" in markdown  # Grad-CAM pixel accuracy over 3 seeds, in %
    for name, rows in ((ACTIVATION_GRID_FILE, 4), (GRADIENT_GRID_FILE, 3)):
        with Image.open(tmp_path / "paper_figures" / name) as image:
            assert image.format == "PNG" and image.height > image.width * (rows - 1) / (GRID + 1)


def test_without_a_saliency_section_nothing_is_predicted(tmp_path: Path) -> None:
    params = parse_params(_raw())
    checked = {p.pid for p in check_predictions(params, load_run(params, _write_outputs(tmp_path, params)))}
    assert not checked & {"P12", "P14a", "P14b"}


def test_missing_or_mismatched_saliency_outputs_name_the_stage(tmp_path: Path) -> None:
    params = _params()
    layout = _write_outputs(tmp_path / "outputs", params)
    with pytest.raises(FileNotFoundError, match=r"saliency_teacher@teacher"):
        load_run(params, layout)
    _write_saliency(layout, params)
    kd = study.find(params, "kd", SEEDS[0])
    np.savez(saliency.MEASURE.path(layout, kd, saliency.MAPS), index=np.array([1, 2, 3]),
             images=np.zeros((GRID, 3, SIZE, SIZE), np.uint8), activation=np.zeros((GRID, SIZE, SIZE), np.float32),
             loss_gradient=np.zeros((GRID, SIZE, SIZE), np.float32))
    with pytest.raises(FiguresInputError, match="other validation images"):
        make_figures(params, layout, tmp_path / "paper_figures")
    assert not (tmp_path / "paper_figures").exists()  # nothing partial
