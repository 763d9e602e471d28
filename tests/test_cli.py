"""The CLI: every stage command exists, forwards its options, and turns known errors into exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdinterp.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
COMMANDS = ["train", "evaluate", "dissect", "saliency", "diffroar", "validate", "similarity", "figures", "report",
            "validate-data",
            "world", "profile"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_train_finds_the_model_and_its_seed(monkeypatch, tmp_path: Path) -> None:
    calls = []
    from kdinterp.stages import training

    monkeypatch.setattr(training, "train", lambda *args: calls.append(args))
    result = runner.invoke(app, ["train", "ls", "--seed", "1", "--outputs", str(tmp_path),
                                 "--params", str(ROOT / "params.yaml")])
    assert result.exit_code == 0, result.output
    (params, model, layout), = calls
    assert (model.key, model.seed, model.recipe.label_smoothing, layout.root) == ("ls-1", 1, 0.1, tmp_path)


def test_unknown_seed_exits_1_naming_the_models() -> None:
    result = runner.invoke(app, ["train", "ls", "--seed", "77", "--params", str(ROOT / "params.yaml")])
    assert result.exit_code == 1
    assert "no model 'ls' at seed 77" in result.output and "scratch-0" in result.output


def test_params_typo_exits_1_with_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text((ROOT / "params.yaml").read_text().replace("iou_threshold:", "iou_treshold:"))
    result = runner.invoke(app, ["dissect", "kd", "--seed", "0", "--params", str(bad)])
    assert result.exit_code == 1
    assert "dissection.iou_treshold: unknown key (did you mean 'iou_threshold'?)" in result.output


def test_missing_model_file_exits_1_with_the_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "kd", "--seed", "0", "--outputs", str(tmp_path),
                                 "--params", str(ROOT / "params.yaml")])
    assert result.exit_code == 1
    assert "kd-0.safetensors: model file not found" in result.output
