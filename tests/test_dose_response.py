"""The dose-response curves: which students form a series, and the table, figure and README written from a run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from test_figures import MODELS, _raw, _write_outputs

from kdinterp.core.config import ParamsError
from kdinterp.core.params import Params
from kdinterp.measures.registry import parse_params
from kdinterp.reporting.dose_response import FIGURE_FILE, README_FILE, TABLE_FILE, series, write_dose_response


def _params() -> Params:
    raw = _raw()
    kd = raw["distilled"]["kd"]
    raw["distilled"].update({
        "kd_t1": {**kd, "temperature": 1.0}, "kd_t8": {**kd, "temperature": 8.0},
        "kd_a90": {**kd, "alpha": 0.9},
        "at": {"teacher": "teacher", "method": "at", "temperature": 1.0, "alpha": 0.0},  # not logit KD: no series
    })
    return parse_params(raw)


def _models() -> dict:
    """kd_t1 < kd < kd_t8 in detectors at every seed (+5 per step); kd_a90 like kd."""
    def shifted(by: int) -> dict:
        detectors = dict(MODELS["kd"]["detectors"])
        detectors["color"] = [c + by for c in detectors["color"]]
        return {**MODELS["kd"], "detectors": detectors}
    return {**MODELS, "kd_t1": shifted(-5), "kd_t8": shifted(+5), "kd_a90": shifted(0), "at": MODELS["scratch"]}


def test_series_are_students_that_differ_in_one_setting() -> None:
    curves = {c.label: c for c in series(_params())}
    assert list(curves) == ["T, from teacher (alpha 0.5)", "alpha, from teacher (temperature 4)"]
    assert curves["T, from teacher (alpha 0.5)"].points == ((1.0, "kd_t1"), (4.0, "kd"), (8.0, "kd_t8"))
    assert curves["alpha, from teacher (temperature 4)"].points == ((0.5, "kd"), (0.9, "kd_a90"))


def test_writes_the_table_the_figure_and_a_readme_with_the_steps(tmp_path: Path) -> None:
    params = _params()
    layout = _write_outputs(tmp_path / "outputs", params, _models())
    table = write_dose_response(params, layout, tmp_path / "docs", "the command")
    assert len(table) == 5 * 3 and set(table["seed"]) == {0, 1, 2}
    assert pd.read_csv(tmp_path / "docs" / TABLE_FILE).shape == table.shape
    with Image.open(tmp_path / "docs" / FIGURE_FILE) as image:
        assert image.format == "PNG" and image.width > 1000
    readme = (tmp_path / "docs" / README_FILE).read_text()
    assert "```\nthe command\n```" in readme
    # detectors +5, +5 at every seed: both steps hold; the alpha step is 0 at every seed: inconclusive
    assert "- #detectors: holds: +5.00 (holds), +5.00 (holds)" in readme
    assert "- #detectors: inconclusive: +0.00 (inconclusive)" in readme
    assert "| 8 | `kd_t8` | " in readme
    # the pre-registered endpoint is a column; these dissections have no calibrated count: n/a, and no trend line
    assert "| #detectors (calibrated, primary categories) |" in readme and "n/a" in readme
    assert "- #detectors (calibrated" not in readme


def test_without_a_series_the_profile_is_named(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="make repro PROFILE=dose_response"):
        write_dose_response(parse_params(_raw()), _write_outputs(tmp_path), tmp_path / "docs", "c")
