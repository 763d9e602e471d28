"""The real pipeline (`dvc repro` on dvc.yaml) on a tiny concept world with tiny models.

This is issue 2's "done when" list at test scale: the whole study runs, `dvc metrics show` lists
accuracy and detectors for every model, the figures and REPRODUCTION.md exist, a second
`dvc repro` does nothing, and a corrupted tally table stops the pipeline at `validate` with a
readable message while nothing downstream runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kdinterp.config import from_mapping
from kdinterp.world import WorldParams, generate_world

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow

TINY_WORLD = {"seed": 1, "image_size": 16, "probe_image_size": 32, "train_per_class": 8, "val_per_class": 4,
              "probe_images": 40, "object_types": 2, "subtypes_per_type": 2, "supersample": 1}
TINY_MODEL = {"model": {"arch": "resnet10", "width": 4, "small_input": True},
              "optim": {"epochs": 1, "batch_size": 16, "lr": 0.05}}


def _dvc(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "GX_ANALYTICS_ENABLED": "false", "KDINTERP_PROGRESS": "0"}
    done = subprocess.run([str(BIN / "dvc"), *args], cwd=project, env=env, capture_output=True, text=True)
    if check and done.returncode != 0:
        pytest.fail(f"dvc {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the repository's pipeline with tiny params, after one `dvc repro`."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "dvc.yaml", root)
    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["world"] = {**params["world"], **TINY_WORLD}
    params["data"].update(image_size=16, eval_batch_size=64)
    params["teachers"]["teacher"].update(TINY_MODEL)
    params["student_recipe"] = TINY_MODEL
    params["dissection"]["batch_size"] = 16
    params["seeds"] = [0, 1]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    generate_world(from_mapping(WorldParams, params["world"], "world"), root / "data" / "concept_world",
                   workers=1, progress=False)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _dvc(root, "init", "-q")
    _dvc(root, "add", "-q", "data")
    _dvc(root, "repro")
    return root


def test_whole_study_runs_and_reports_every_model_and_seed(project: Path) -> None:
    from kdinterp import study
    from kdinterp.params import load_params

    shown = _dvc(project, "metrics", "show").stdout
    layout = study.Layout(Path("outputs"))
    models = study.models(load_params(project / "params.yaml"))
    assert [m.key for m in models] == ["teacher", "scratch-0", "ls-0", "kd-0", "random_init-0", "scratch-1", "ls-1",
                                       "kd-1", "random_init-1"]
    for model in models:
        assert str(layout.metrics(model)) in shown
        assert str(layout.dissection(model, layout.SUMMARY)) in shown
    assert "top1" in shown and "num_detectors" in shown
    for name in ("fig1_accuracy_detectors.png", "fig_detectors_per_category.png", "fig_sensitivity.png",
                 "REPRODUCTION.md"):
        assert (project / "paper_figures" / name).stat().st_size > 0
    report = (project / "paper_figures" / "REPRODUCTION.md").read_text()
    assert all(f"| P{i}" in report for i in range(1, 8))
    for section in ("## Controls", "## Sensitivity of the detector verdicts", "## How much of a detector count",
                    "## Environment"):
        assert section in report
    assert "**Untrained initialisation** (`random_init`" in report and "**Rotated basis**" in report


def test_second_repro_does_nothing(project: Path) -> None:
    done = _dvc(project, "repro")
    assert "Running stage" not in done.stdout
    assert "Data and pipelines are up to date." in done.stdout


def test_corrupted_tally_stops_the_pipeline_at_validate(project: Path) -> None:
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
