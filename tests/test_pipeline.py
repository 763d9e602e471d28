"""dvc.yaml as DVC resolves it: every stage calls an existing command and respects the layout rules."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.main import get_command

from kdinterp.cli import app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stages():
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {stage.addressing: stage for stage in repo.index.stages if stage.cmd}


def test_every_command_is_a_kdinterp_command(stages) -> None:
    commands = set(get_command(app).commands)
    for address, stage in stages.items():
        argv = shlex.split(stage.cmd)
        assert argv[0] == "kdinterp" and argv[1] in commands, (address, stage.cmd)


def test_no_stage_writes_under_data(stages) -> None:
    for address, stage in stages.items():
        for out in stage.outs:
            assert Path(out.def_path).parts[0] in {"outputs", "paper_figures"}, (address, out.def_path)


def test_source_dependencies_exist(stages) -> None:
    for address, stage in stages.items():
        for dep in stage.deps:
            if dep.def_path.startswith("src/"):
                assert (ROOT / dep.def_path).exists(), (address, dep.def_path)


def test_students_from_labels_depend_on_no_model(stages) -> None:
    for address, stage in stages.items():
        if address.startswith("train_student@"):
            assert not any(d.def_path.startswith("outputs/") for d in stage.deps), address


def test_training_fingerprint_hashes_the_code_dvc_tracks() -> None:
    """The resume fingerprint and the training stages' src deps come from one import closure."""
    from kdinterp.measures.registry import stage_modules
    from kdinterp.stages import training

    assert stage_modules()["train"] == training.__name__
    assert "codedeps.code_hash(__name__)" in Path(training.__file__).read_text()
