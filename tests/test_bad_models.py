"""Broken model files through the CLI (issue 16): one line naming the file, exit 1, nothing written.

Model files are untrusted: a header that is not what :func:`kdinterp.training.models.save_model` writes, weights
that cannot be read, NaN or infinite weights, and finite weights whose logits are not finite.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

from kdinterp.cli import app
from kdinterp.core import study
from kdinterp.core.errors import NonFiniteError
from kdinterp.core.params import ModelParams
from kdinterp.training.models import CheckpointError, build_model, load_model, save_model

ROOT = Path(__file__).resolve().parents[1]
SPEC = ModelParams("resnet10", width=4, small_input=True)
CLASSES = ["a_one", "a_two", "b_one"]
HEADER = {"model": {"arch": "resnet10", "width": 4, "small_input": True}, "classes": CLASSES, "info": {}}


@pytest.fixture
def project(tiny_folders: dict[str, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    """(params file, outputs dir, the teacher's model file) of a tiny study on ``tiny_folders``."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"].update(train_dir=str(tiny_folders["train"]), val_dir=str(tiny_folders["val"]), world_file=None,
                       image_size=16)
    raw["teachers"]["teacher"]["model"] = HEADER["model"]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    outputs = tmp_path / "outputs"
    model_file = study.Layout(outputs).model_file(study.find(_load(params), "teacher"))
    return params, outputs, model_file


def _load(path: Path):
    from kdinterp.measures.registry import load_params

    return load_params(path)


def _model(**edits: float) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model(SPEC, len(CLASSES))
    state = net.state_dict()
    for key, value in edits.items():
        state[key.replace("__", ".")].view(-1)[0] = value
    return net


def _evaluate_refused(project: tuple[Path, Path, Path], *names: str) -> str:
    params, outputs, model_file = project
    before = sorted(p for p in outputs.rglob("*") if p.is_file())
    result = CliRunner().invoke(app, ["evaluate", "teacher", "--params", str(params), "--outputs", str(outputs)])
    assert isinstance(result.exception, SystemExit), result.exc_info  # no traceback
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for name in (str(model_file), *names):
        assert name in lines[0], (name, lines[0])
    assert sorted(p for p in outputs.rglob("*") if p.is_file()) == before  # nothing written
    return lines[0]


def test_a_finite_model_evaluates(project) -> None:
    params, outputs, model_file = project
    save_model(_model(), model_file, SPEC, CLASSES)
    result = CliRunner().invoke(app, ["evaluate", "teacher", "--params", str(params), "--outputs", str(outputs)])
    assert result.exit_code == 0, result.output
    from kdinterp.measures import evaluation

    teacher = study.find(_load(params), "teacher")
    metrics = json.loads(evaluation.MEASURE.path(study.Layout(outputs), teacher, evaluation.METRICS).read_text())
    assert metrics["num_images"] == 12 and 0.0 <= metrics["top1"] <= 1.0


@pytest.mark.parametrize("key", ["fc__bias", "layer4__0__conv1__weight", "bn1__running_var"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_are_refused(project, key: str, value: float) -> None:
    save_model(_model(**{key: value}), project[2], SPEC, CLASSES)
    with pytest.raises(NonFiniteError, match=rf"weight '{key.replace('__', '.')}' has 1 NaN or infinite"):
        load_model(project[2], SPEC)
    _evaluate_refused(project, key.replace("__", "."))


def test_finite_weights_with_non_finite_logits_are_refused(project) -> None:
    save_model(_model(bn1__running_var=-1.0), project[2], SPEC, CLASSES)  # sqrt(-1 + eps): NaN activations
    message = _evaluate_refused(project, "logits are NaN or infinite on 12 of 12 validation image(s)")
    assert str(project[0].parent / "val") in message


BAD_HEADERS = {
    "not JSON": "{model: resnet10",
    "a list": json.dumps([1, 2]),
    "no model": json.dumps({**HEADER, "model": None}),
    "unknown arch": json.dumps({**HEADER, "model": {**HEADER["model"], "arch": "vgg16"}}),
    "width as text": json.dumps({**HEADER, "model": {**HEADER["model"], "width": "4"}}),
    "width 0": json.dumps({**HEADER, "model": {**HEADER["model"], "width": 0}}),
    "extra model key": json.dumps({**HEADER, "model": {**HEADER["model"], "depth": 3}}),
    "classes as text": json.dumps({**HEADER, "classes": "a_one"}),
    "no classes": json.dumps({**HEADER, "classes": []}),
    "info as list": json.dumps({**HEADER, "info": [1]}),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_headers_kdinterp_does_not_write_are_refused(project, case: str) -> None:
    model_file = project[2]
    model_file.parent.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in _model().state_dict().items()}
    save_file(state, str(model_file), metadata={"kdinterp": BAD_HEADERS[case]})
    with pytest.raises(CheckpointError, match="not written by kdinterp.training.models.save_model"):
        load_model(model_file)
    _evaluate_refused(project, "header")


def test_truncated_weights_are_refused(project) -> None:
    model_file = project[2]
    save_model(_model(), model_file, SPEC, CLASSES)
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) - 1000])
    _evaluate_refused(project)


def test_debug_shows_the_traceback(project) -> None:
    params, outputs, _ = project
    result = CliRunner().invoke(app, ["--debug", "evaluate", "teacher", "--params", str(params),
                                      "--outputs", str(outputs)])
    assert isinstance(result.exception, CheckpointError) and "model file not found" in str(result.exception)


@pytest.mark.parametrize("where", [0.0, 0.5, 1.0])  # first, middle and last byte of the tensor data
def test_a_flipped_byte_in_the_weights_is_refused(project, where: float) -> None:
    """DVC's hash protects a pull, not the local copy: the header's tensor digest catches a flipped bit on load."""
    model_file = project[2]
    save_model(_model(), model_file, SPEC, CLASSES)
    data = bytearray(model_file.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # safetensors: u64 header length, JSON header, tensor bytes
    data[start + int(where * (len(data) - 1 - start))] ^= 0x01
    model_file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the hash"):
        load_model(model_file, SPEC)
    _evaluate_refused(project, "corrupted", "dvc pull", "dvc repro")


def test_a_header_without_the_tensor_digest_is_refused(project) -> None:
    """A corrupted key (``tensors_sha256`` -> ``tensors_sha257``) must not turn the check off."""
    model_file = project[2]
    save_model(_model(), model_file, SPEC, CLASSES)
    data = model_file.read_bytes()
    assert data.count(b"tensors_sha256") == 1
    model_file.write_bytes(data.replace(b"tensors_sha256", b"tensors_sha257"))
    with pytest.raises(CheckpointError, match="no 'tensors_sha256' digest"):
        load_model(model_file, SPEC)
    _evaluate_refused(project, "dvc pull", "dvc repro")
