"""Malformed Broden-layout probe sets, generated from a valid one (issue 16, Hypothesis).

For every generated case, through the real ``kdinterp`` CLI (in-process, Typer's runner):

* ``validate-data`` and ``dissect`` either succeed or fail by the CLI's rule: exit status 1, a
  message that starts with ``error:`` and names a file of the probe set, no traceback, and no
  dissection output left behind;
* whatever ``validate-data`` passes, ``dissect`` processes, and every label the images use has a
  primary category, so none drops out of the tally.

The examples are derandomised (the same cases on every run) and capped, to stay within the suite's
time budget.
"""

from __future__ import annotations

import shutil
import traceback
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from kdinterp.cli import app
from kdinterp.dissection.broden import BrodenDataset, load_broden
from tests.conftest import write_broden

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = ["object", "part", "scene", "color"]
LABELS = {1: ("red", "color"), 2: ("cat", "object"), 3: ("dog", "object"), 4: ("ear", "part"), 5: ("sky", "scene")}
TINY = {"arch": "resnet10", "width": 4, "small_input": True}
IMAGES = [f"img{i}.png" for i in range(6)]
SEGMENTATIONS = [f"img{i}_{c}_0.png" for i in range(6) for c in ("object", "part", "color")]
TABLES = ["index.csv", "label.csv", "category.csv", *(f"c_{c}.csv" for c in CATEGORIES)]


def _write_valid(root: Path) -> None:
    rows = []
    for i in range(len(IMAGES)):
        obj = np.zeros((16, 16), int)
        obj[2:10, 2 + i:10 + i] = 2 + i % 2
        part = np.zeros((16, 16), int)
        part[3:6, 3:6] = 4
        rows.append({"object": [obj], "part": [part], "color": [np.ones((16, 16), int)], "scene": [5]})
    write_broden(root / "broden", LABELS, rows, image_size=16, seg_size=16)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["teachers"]["teacher"]["model"] = TINY
    params["data"]["world_file"] = None
    spec = params["dissection"]
    spec.update(broden_dir="broden", categories=CATEGORIES, batch_size=4, top_images=2)
    spec["sensitivity"].update(bootstrap_replicates=10, bootstrap_blocks=2, quantiles=[0.005], iou_thresholds=[0.05])
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid tiny probe set, params.yaml (broden_dir relative) and a width-4 teacher's weights."""
    import torch

    from kdinterp.core import study
    from kdinterp.core.config import from_mapping
    from kdinterp.core.params import ModelParams
    from kdinterp.measures.registry import load_params
    from kdinterp.training.models import build_model, save_model

    root = tmp_path_factory.mktemp("valid")
    _write_valid(root)
    spec = from_mapping(ModelParams, TINY, "model")
    torch.manual_seed(0)
    teacher = study.find(load_params(root / "params.yaml"), "teacher")
    save_model(build_model(spec, 3), study.Layout(root / "outputs").model_file(teacher), spec, ["a", "b", "c"])
    return root


# --------------------------------------------------------------------------- mutations


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    path.write_text(text.replace(old, new, 1) if old in text else text + new)


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, object]:
    """One malformation of the probe set: ``(description, apply(broden_dir))``; its class is a Hypothesis event."""
    kind = draw(st.sampled_from(["truncate", "garbage", "image_mode", "image_size", "segmentation_mode",
                                 "segmentation_size", "pixel_label", "encoding", "cell", "drop_line",
                                 "non_finite"]))
    event(kind)  # `pytest --hypothesis-show-statistics` counts the examples per class
    if kind == "truncate":
        name, keep = draw(st.sampled_from(IMAGES + SEGMENTATIONS + TABLES)), draw(st.floats(0.0, 0.95))
        return f"{name} truncated to {keep:.0%}", lambda b: _truncate(b / _place(name), keep)
    if kind == "garbage":
        name = draw(st.sampled_from(IMAGES + SEGMENTATIONS))
        return f"{name} is text", lambda b: (b / "images" / name).write_text("not an image")
    if kind == "image_mode":
        name, mode = draw(st.sampled_from(IMAGES)), draw(st.sampled_from(["L", "RGBA", "P", "I;16", "LA"]))
        return f"{name} in mode {mode}", lambda b: Image.new(mode, (16, 16)).save(b / "images" / name)
    if kind in ("image_size", "segmentation_size"):
        name = draw(st.sampled_from(IMAGES if kind == "image_size" else SEGMENTATIONS))
        size = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
        return f"{name} of size {size}", lambda b: Image.new("RGB", size).save(b / "images" / name)
    if kind == "segmentation_mode":
        name, mode = draw(st.sampled_from(SEGMENTATIONS)), draw(st.sampled_from(["L", "P", "1"]))
        return f"{name} in mode {mode}", lambda b: Image.new(mode, (16, 16), 1).save(b / "images" / name)
    if kind == "pixel_label":
        name, label = draw(st.sampled_from(SEGMENTATIONS)), draw(st.integers(0, 600))
        rgb = (label % 256, label // 256, 0)
        return f"{name} all label {label}", lambda b: Image.new("RGB", (16, 16), rgb).save(b / "images" / name)
    if kind == "encoding":
        name, codec = draw(st.sampled_from(TABLES)), draw(st.sampled_from(["utf-16", "latin-1"]))
        return f"{name} in {codec}", lambda b: (b / name).write_bytes(
            (b / name).read_text().replace("cat", "cät").encode(codec))
    if kind == "cell":
        name, old = draw(st.sampled_from([("index.csv", ",16,16,16,16,"), ("index.csv", ";"), ("label.csv", "(1)"),
                                          ("c_object.csv", ",2,cat,"), ("category.csv", "object")]))
        new = draw(st.sampled_from(["", "x", "-1", "4.0", "0", "99999", ",,", '"']))
        return f"{name}: {old!r} -> {new!r}", lambda b: _edit(b / name, old, new)
    if kind == "drop_line":
        name, line = draw(st.sampled_from(TABLES)), draw(st.integers(0, 6))
        return f"{name} without line {line + 1}", lambda b: _drop_line(b / name, line)
    value = draw(st.sampled_from(["nan", "inf", "-inf", "1e400"]))
    name = draw(st.sampled_from(["label.csv", "c_object.csv", "c_part.csv"]))
    return f"{name} coverage {value}", lambda b: _edit(b / name, "1.0", value)


def _place(name: str) -> str:
    return name if name.endswith(".csv") else f"images/{name}"


def _drop_line(path: Path, line: int) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:line] + lines[line + 1:]) + "\n")


# --------------------------------------------------------------------------- the rule


def _invoke(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        pytest.fail("traceback:\n" + "".join(traceback.format_exception(*result.exc_info)))
    return result.exit_code, result.stderr


def _assert_refused(code: int, stderr: str, case: Path, description: str) -> None:
    assert code == 1, description
    assert stderr.startswith("error: "), (description, stderr)
    assert str(case / "broden") in stderr, (description, stderr)  # names the file


@settings(max_examples=24, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutation=mutations())
def test_malformed_probe_sets_follow_the_cli_rule(valid: Path, tmp_path_factory: pytest.TempPathFactory,
                                                  mutation: tuple[str, object]) -> None:
    description, apply = mutation
    case = Path(shutil.copytree(valid, tmp_path_factory.mktemp("case"), dirs_exist_ok=True))
    apply(case / "broden")
    params, outputs = case / "params.yaml", case / "outputs"
    dissection_dir = outputs / "dissection"
    broden_dir = f"{case / 'broden'}"
    params.write_text(params.read_text().replace("broden_dir: broden", f"broden_dir: {broden_dir}"))

    code, stderr = _invoke(["validate-data", "--broden", broden_dir, "--report", str(case / "data.json"),
                            "--params", str(params)])
    dissected, dissect_err = _invoke(["dissect", "teacher", "--params", str(params), "--outputs", str(outputs)])
    if code != 0:
        _assert_refused(code, stderr, case, description)
    else:  # validate-data passed: dissect reads everything and every used label is counted
        assert dissected == 0, (description, dissect_err)
        broden = load_broden(broden_dir, tuple(CATEGORIES))
        dataset = BrodenDataset(broden, transform=lambda image: None)
        used = np.unique(np.concatenate([np.concatenate([p.reshape(-1).numpy(), s.numpy()])
                                         for _, p, s in (dataset[i] for i in range(len(dataset)))]))
        used = used[used > 0]
        assert (broden.label_category[used] >= 0).all(), description
    if dissected != 0:
        _assert_refused(dissected, dissect_err, case, description)
        assert not dissection_dir.exists() or not any(dissection_dir.rglob("*.*")), description


def test_valid_probe_set_dissects_with_every_output_and_a_calibrated_summary(valid: Path, tmp_path: Path) -> None:
    """The dissect stage writes every declared output; summary.json carries the calibrated detector."""
    import pandas as pd

    from kdinterp.core import study
    from kdinterp.measures import dissection
    from kdinterp.measures.registry import load_params

    case = Path(shutil.copytree(valid, tmp_path / "case"))
    params, outputs = case / "params.yaml", case / "outputs"
    params.write_text(params.read_text().replace("broden_dir: broden", f"broden_dir: {case / 'broden'}"))
    code, stderr = _invoke(["dissect", "teacher", "--params", str(params), "--outputs", str(outputs)])
    assert code == 0, stderr
    teacher, layout = study.find(load_params(params), "teacher"), study.Layout(outputs)
    for output in dissection.MEASURE.outputs:
        assert dissection.MEASURE.path(layout, teacher, output).is_file(), output.name
    summary = dissection.DissectionSummary.read(dissection.MEASURE.path(layout, teacher, dissection.SUMMARY), "dissect")
    table = pd.read_csv(dissection.MEASURE.path(layout, teacher, dissection.CALIBRATED), keep_default_na=False)
    assert summary.calibrated is not None and summary.calibrated.permutations == load_params(params).dissection.calibrated.permutations
    splits = summary.calibrated.splits
    assert tuple(table.columns) == dissection.CALIBRATED_COLUMNS
    assert set(table["basis"]) <= {"unit", "rotated"}
    table = table[table["basis"] == "unit"]
    assert len(table) == splits * summary.num_units
    assert sorted(set(table["split"])) == list(range(splits))  # seeds split_seed (0), 1, ...
    assert summary.calibrated.detectors == table["detector"].sum() / splits == (
        summary.calibrated.primary + summary.calibrated.low_level)


def test_non_finite_activations_stop_dissect(valid: Path, tmp_path: Path) -> None:
    """Finite weights whose layer4 output is NaN (a negative BN running variance): one line, nothing left."""
    import torch

    from kdinterp.core import study
    from kdinterp.core.config import from_mapping
    from kdinterp.core.params import ModelParams
    from kdinterp.measures.registry import load_params
    from kdinterp.training.models import build_model, save_model

    case = Path(shutil.copytree(valid, tmp_path / "case"))
    params, outputs = case / "params.yaml", case / "outputs"
    params.write_text(params.read_text().replace("broden_dir: broden", f"broden_dir: {case / 'broden'}"))
    spec = from_mapping(ModelParams, TINY, "model")
    torch.manual_seed(0)
    net = build_model(spec, 3)
    net.state_dict()["bn1.running_var"][0] = -1.0
    teacher = study.find(load_params(params), "teacher")
    save_model(net, study.Layout(outputs).model_file(teacher), spec, ["a", "b", "c"])
    code, stderr = _invoke(["dissect", "teacher", "--params", str(params), "--outputs", str(outputs)])
    assert code == 1 and len(stderr.splitlines()) == 1, stderr
    assert "layer 'layer4' output is NaN or infinite on 4 image(s)" in stderr and "img0.png" in stderr, stderr
    dissection_dir = study.Layout(outputs).measure("dissection", teacher)
    assert not dissection_dir.exists() or not any(dissection_dir.rglob("*.*"))


@pytest.mark.parametrize("keep", [2, 4, 5])
def test_small_probe_sets_are_refused_alike_by_both_readers(valid: Path, tmp_path: Path, keep: int) -> None:
    """Below dissection.batch_size + 1 images (4 + 1 here) the probe bootstrap has one block: both readers
    refuse the set with one line, instead of dissect's traceback; at batch_size + 1 both accept it."""
    case = Path(shutil.copytree(valid, tmp_path / "case"))
    index = case / "broden" / "index.csv"
    index.write_text("\n".join(index.read_text().splitlines()[:1 + keep]) + "\n")
    params = case / "params.yaml"
    params.write_text(params.read_text().replace("broden_dir: broden", f"broden_dir: {case / 'broden'}"))
    code, stderr = _invoke(["validate-data", "--broden", str(case / "broden"), "--report", str(case / "data.json"),
                            "--params", str(params)])
    dissected, dissect_err = _invoke(["dissect", "teacher", "--params", str(params), "--outputs",
                                      str(case / "outputs")])
    if keep < 5:
        _assert_refused(code, stderr, case, f"{keep} images")
        _assert_refused(dissected, dissect_err, case, f"{keep} images")
        assert "dissection.batch_size 4" in dissect_err and "at least 5 images" in dissect_err, dissect_err
    else:
        assert (code, dissected) == (0, 0), (stderr, dissect_err)
