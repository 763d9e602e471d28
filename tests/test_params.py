"""params.yaml loads, and mistakes in it fail loudly with the dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kdinterp.params import ParamsError, load_params

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_repository_params_load() -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.model_names[0] in params.teachers
    assert set(params.paper_models) == {"teacher", "scratch", "ls", "kd"}
    assert params.distilled["kd"].teacher in params.teachers


def test_typo_names_the_key_and_suggests_the_fix(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda p: p["distilled"]["kd"].update(temprature=8.0))
    with pytest.raises(ParamsError, match=r"distilled\.kd\.temprature: unknown key \(did you mean 'temperature'\?\)"):
        load_params(path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["distilled"]["kd"].update(alpha=1.5), r"alpha must be in \[0, 1\]"),
    (lambda p: p["students"]["ls"].update(label_smoothing="0.1"), r"students\.ls\.label_smoothing: expected a number"),
    (lambda p: p["distilled"]["kd"].update(teacher="nobody"), r"'nobody' is not one of teachers"),
    (lambda p: p["dissection"].update(categories=["object", "weather"]), r"unknown \['weather'\]"),
    (lambda p: p["teachers"].update(scratch=p["teachers"]["teacher"]), r"'scratch' is used in both"),
    (lambda p: p["teachers"]["teacher"]["model"].update(arch="vgg16"), r"'vgg16' is not one of"),
    (lambda p: p.pop("dissection"), r"dissection: required key is missing"),
])
def test_bad_values_are_refused(tmp_path: Path, edit, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        load_params(_write(tmp_path, edit))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")


def _flatten(tree: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, value in tree.items() for k, v in _flatten(value, f"{prefix}.{key}" if prefix else key).items()}


def test_all_students_profile_is_params_yaml_plus_models() -> None:
    """The profile may only add models (teachers, distilled students); everything else matches params.yaml."""
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    profile = yaml.safe_load((ROOT / "profiles" / "all_students.yaml").read_text())
    flat_default, flat_profile = _flatten(default), _flatten(profile)
    assert {k: flat_profile.get(k) for k in flat_default} == flat_default
    added = {k.split(".")[:2][0] for k in set(flat_profile) - set(flat_default)}
    assert added <= {"teachers", "distilled"}
    params = load_params(ROOT / "profiles" / "all_students.yaml")
    methods = {spec.method for spec in params.distilled.values()}
    assert methods == {"kd", "at", "ft", "crd", "sskd"}
    assert any(spec.teacher in params.students for spec in params.distilled.values())  # self-distillation
    for method in methods - {"kd"}:
        alphas = {spec.alpha > 0 for spec in params.distilled.values() if spec.method == method}
        assert alphas == {False, True}, method  # with and without logit KD
