"""The real pipeline (`dvc repro` on dvc.yaml) on a tiny concept world with tiny models.

This is issue 2's "done when" list at test scale: the whole study runs, `dvc metrics show` lists
the headline metrics of every model, one row each, the figures and REPRODUCTION.md exist, a second
`dvc repro` does nothing, and a corrupted tally table stops the pipeline at `validate` with a
readable message while nothing downstream runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kdinterp.measures import dissection, evaluation, saliency
from kdinterp.reporting.headline import HEADLINE
from tests.conftest import run_dvc as _dvc
from tests.tiny_study import copy_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tiny_study: Path) -> Path:
    """The tiny study of conftest.py after one `dvc repro` (shared with the remote tests; not modified here)."""
    return tiny_study


def test_whole_study_runs_and_reports_every_model_and_seed(project: Path) -> None:
    from kdinterp.core import study
    from kdinterp.measures.registry import load_params

    shown = _dvc(project, "metrics", "show").stdout
    layout = study.Layout(Path("outputs"))
    models = study.models(load_params(project / "params.yaml"))
    assert [m.key for m in models] == ["teacher", *[f"{name}-{seed}" for seed in (0, 1) for name in (
        "scratch", "ls", "kd", "random_init", "scratch_epoch2")]]
    for model in models:  # the students' snapshots along training, as DVC outputs
        if model.group.snapshots:
            assert (project / layout.snapshot(model, 1)).is_file()
    rows = shown.splitlines()[1:]   # one row per model: the headline metrics, nothing else (README)
    assert [row.split()[0] for row in rows] == sorted(str(layout.headline(m)) for m in models), shown
    assert shown.split()[1:1 + len(HEADLINE)] == sorted(h.key for h in HEADLINE), shown
    assert max(len(line) for line in shown.splitlines()) <= 160
    for model in models:
        assert str(evaluation.MEASURE.path(layout, model, evaluation.METRICS)) not in shown
        assert (project / dissection.MEASURE.path(layout, model, dissection.SUMMARY)).is_file()
        assert (project / saliency.MEASURE.path(layout, model, saliency.FIVE_BAND)).is_file()
    for name in ("fig1_accuracy_detectors.png", "fig_detectors_per_category.png", "fig_sensitivity.png",
                 "fig_activation_grid.png", "fig_loss_gradient_grid.png", "REPRODUCTION.md"):
        assert (project / "paper_figures" / name).stat().st_size > 0
    report = (project / "paper_figures" / "REPRODUCTION.md").read_text()
    assert all(f"| P{i}" in report for i in (*range(1, 8), 12, 14))
    for section in ("## Controls", "## Sensitivity of the detector verdicts", "## How much of a detector count",
                    "## Environment"):
        assert section in report
    assert "**Untrained initialisation** (`random_init`" in report and "**Rotated basis**" in report
    assert all(f"| `{name}` |" in report for name in ("random_init", "scratch_epoch2"))
    assert "## Control ladder" in report.split("## Results per model")[0]  # the ladder comes first


def test_second_repro_does_nothing(project: Path) -> None:
    done = _dvc(project, "repro")
    assert "Running stage" not in done.stdout
    assert "Data and pipelines are up to date." in done.stdout


def test_corrupted_tally_stops_the_pipeline_at_validate(project: Path, tmp_path: Path) -> None:
    project = copy_study(project, tmp_path / "copy")  # the shared study stays intact
    tally = project / "outputs" / "dissection" / "kd-1" / "tally.csv"
    lines = tally.read_text().splitlines()
    header, first = lines[0].split(","), lines[1].split(",")
    first[header.index("iou")] = "1.5"
    tally.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    report = project / "paper_figures" / "REPRODUCTION.md"
    before = report.stat().st_mtime_ns
    done = _dvc(project, "repro", "--single-item", "validate", "figures", check=False)
    assert done.returncode != 0
    message = done.stdout + done.stderr
    assert "outputs/dissection/kd-1/tally.csv" in message
    assert "expect_column_values_to_be_between(iou" in message and "iou=1.5" in message
    assert report.stat().st_mtime_ns == before  # figures did not run
