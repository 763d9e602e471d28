"""dvc.yaml as DVC resolves it: every stage calls an existing command and respects the layout rules."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.main import get_command

from kdinterp.cli import app
from kdinterp.params import load_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stages():
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {stage.addressing: stage for stage in repo.index.stages if stage.cmd}


def test_one_training_evaluation_and_dissection_stage_per_model(stages) -> None:
    params = load_params(ROOT / "params.yaml")
    for name in params.teachers:
        assert {f"train_teacher@{name}", f"evaluate_teacher@{name}", f"dissect_teacher@{name}"} <= set(stages)
    for name in params.students:
        assert {f"train_student@{name}", f"evaluate_student@{name}", f"dissect_student@{name}"} <= set(stages)
    for name in params.distilled:
        assert {f"distill_student@{name}", f"evaluate_distilled@{name}", f"dissect_distilled@{name}"} <= set(stages)
    assert {"validate", "similarity", "figures"} <= set(stages)


def test_every_command_is_a_kdinterp_command(stages) -> None:
    commands = set(get_command(app).commands)
    for address, stage in stages.items():
        argv = shlex.split(stage.cmd)
        assert argv[0] == "kdinterp" and argv[1] in commands, (address, stage.cmd)


def test_no_stage_writes_under_data_and_outputs_are_named_in_the_command(stages) -> None:
    for address, stage in stages.items():
        for out in stage.outs:
            relative = Path(out.def_path)
            assert relative.parts[0] in {"outputs", "paper_figures"}, (address, out.def_path)
            if relative.parts[0] == "outputs":
                assert any(str(relative).startswith(token) or token.startswith(str(relative))
                           for token in shlex.split(stage.cmd)), (address, out.def_path)


def test_source_dependencies_exist(stages) -> None:
    for address, stage in stages.items():
        for dep in stage.deps:
            if dep.def_path.startswith("src/"):
                assert (ROOT / dep.def_path).exists(), (address, dep.def_path)


def test_distilled_students_depend_on_their_teacher_and_others_do_not(stages) -> None:
    params = load_params(ROOT / "params.yaml")
    for name, spec in params.distilled.items():
        deps = {d.def_path for d in stages[f"distill_student@{name}"].deps}
        assert f"outputs/models/{spec.teacher}.safetensors" in deps
    for name in params.students:
        assert not any(d.def_path.startswith("outputs/") for d in stages[f"train_student@{name}"].deps)


def test_training_code_fingerprint_covers_the_training_stage_deps(stages) -> None:
    from kdinterp.stages.training import DISTILLATION_CODE, TRAINING_CODE

    for stage, code in (("train_teacher@teacher", TRAINING_CODE), ("distill_student@kd", DISTILLATION_CODE)):
        deps = {d.def_path for d in stages[stage].deps if d.def_path.startswith("src/")}
        assert deps == {f"src/kdinterp/{module}" for module in code}, stage
