"""The study's DVC metrics (kdinterp.reporting.headline): one file per model, the same keys for every model."""

from __future__ import annotations

import json
from pathlib import Path

from kdinterp.core import study
from kdinterp.reporting.headline import HEADLINE, write_headline
from kdinterp.reporting.results import load_run
from tests.test_figures import _params, _write_outputs


def _written(tmp_path: Path) -> tuple[study.Layout, dict[str, dict]]:
    params = _params(controls=True)
    layout = _write_outputs(tmp_path / "outputs", params)
    write_headline(params, load_run(params, layout), layout)
    return layout, {path.stem: json.loads(path.read_text()) for path in sorted(layout.headline_dir.iterdir())}


def test_every_model_has_one_file_with_the_same_keys(tmp_path: Path) -> None:
    _, files = _written(tmp_path)
    assert set(files) == {"teacher", *(f"{name}-{seed}" for name in ("scratch", "ls", "kd", "random_init")
                                       for seed in (0, 1, 2))}
    keys = [h.key for h in HEADLINE]
    assert len(set(keys)) == len(keys)
    assert all(sorted(numbers) == sorted(keys) for numbers in files.values()), {k: sorted(v) for k, v in files.items()}


def test_numbers_are_the_measures_and_null_where_not_measured(tmp_path: Path) -> None:
    _, files = _written(tmp_path)
    kd1, teacher = files["kd-1"], files["teacher"]
    assert (kd1["top1"], kd1["top5"], kd1["detectors"]) == (63.6, 95.0, 54.0)
    assert kd1["diffroar"] is not None and teacher["diffroar"] is None       # DiffROAR: students only
    assert kd1["calibrated"] is None and kd1["fb_pixel_acc"] is None          # not calibrated; no saliency section
    assert files["random_init-0"]["diffroar"] is None                         # a control has no DiffROAR stage


def test_a_model_no_longer_in_the_study_loses_its_file(tmp_path: Path) -> None:
    layout, _ = _written(tmp_path)
    (layout.headline_dir / "gone-0.json").write_text("{}")
    params = _params(controls=True)
    write_headline(params, load_run(params, layout), layout)
    assert not (layout.headline_dir / "gone-0.json").exists() and (layout.headline_dir / "kd-0.json").is_file()
