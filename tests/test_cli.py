"""The CLI: every stage command exists, forwards its options, and turns known errors into exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdinterp.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
COMMANDS = ["train-teacher", "train-student", "distill-student", "evaluate", "dissect", "validate",
            "similarity", "figures", "report", "validate-data", "world"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_train_student_forwards_exact_arguments(monkeypatch, tmp_path: Path) -> None:
    calls = []
    from kdinterp.stages import training

    monkeypatch.setattr(training, "train_student", lambda *args: calls.append(args))
    result = runner.invoke(app, ["train-student", "ls", "--out", "m.safetensors", "--checkpoints", "ck",
                                 "--history", "h.csv", "--params", str(ROOT / "params.yaml")])
    assert result.exit_code == 0, result.output
    (params, name, out, checkpoints, history), = calls
    assert (name, out, checkpoints, history) == ("ls", Path("m.safetensors"), Path("ck"), Path("h.csv"))
    assert params.students["ls"].label_smoothing == 0.1


def test_params_typo_exits_1_with_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text((ROOT / "params.yaml").read_text().replace("iou_threshold:", "iou_treshold:"))
    result = runner.invoke(app, ["dissect", "kd", "--model", "x", "--out", "y", "--params", str(bad)])
    assert result.exit_code == 1
    assert "dissection.iou_treshold: unknown key (did you mean 'iou_threshold'?)" in result.output


def test_missing_model_file_exits_1_with_the_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "kd", "--model", str(tmp_path / "kd.safetensors"), "--metrics", "m.json",
                                 "--predictions", "p.npz", "--params", str(ROOT / "params.yaml")])
    assert result.exit_code == 1
    assert "kd.safetensors: model file not found" in result.output
