"""params.yaml loads, and mistakes in it fail loudly with the dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kdinterp.core import study
from kdinterp.core.params import ParamsError
from kdinterp.measures.registry import load_params
from kdinterp.workflow.profiles import apply_profile

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _load(path: Path):
    params = load_params(path)
    study.check(params)
    return params


def test_repository_params_load() -> None:
    params = _load(ROOT / "params.yaml")
    assert len(params.seeds) >= 3 and len(set(params.seeds)) == len(params.seeds)
    assert set(params.paper_models) == {"teacher", "scratch", "ls", "kd"}
    assert params.distilled["kd"].teacher in params.teachers


def test_typo_names_the_key_and_suggests_the_fix(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda p: p["distilled"]["kd"].update(temprature=8.0))
    with pytest.raises(ParamsError, match=r"distilled\.kd\.temprature: unknown key \(did you mean 'temperature'\?\)"):
        load_params(path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["distilled"]["kd"].update(alpha=1.5), r"distilled\.kd\.alpha: must be in \[0, 1\]"),
    (lambda p: p["students"]["ls"].update(label_smoothing="0.1"), r"students\.ls\.label_smoothing: expected a number"),
    (lambda p: p["distilled"]["kd"].update(teacher="nobody"), r"'nobody' is not one of teachers"),
    (lambda p: p["dissection"].update(categories=["object", "weather"]), r"unknown \['weather'\]"),
    (lambda p: p["teachers"].update(scratch=p["teachers"]["teacher"]), r"students\.scratch: the name is also used in teachers"),
    (lambda p: p.update(seeds=[]), r"seeds: give at least one seed"),
    (lambda p: p.update(seed=0), r"seed: unknown key \(did you mean 'seeds'\?\)"),
    (lambda p: p["teachers"]["teacher"]["model"].update(arch="vgg16"), r"'vgg16' is not one of"),
    (lambda p: p.pop("dissection"), r"dissection: required section is missing"),
])
def test_bad_values_are_refused(tmp_path: Path, edit, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        _load(_write(tmp_path, edit))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")


def _top_keys(profile: Path) -> set[str]:
    """The params sections a profile sets, its includes' included."""
    overlay = yaml.safe_load(profile.read_text()) or {}
    keys = set(overlay) - {"include"}
    for name in overlay.get("include", []):
        keys |= _top_keys(profile.parent / f"{name}.yaml")
    return keys


@pytest.mark.parametrize("profile", sorted(p.stem for p in (ROOT / "profiles").glob("*.yaml")))
def test_profiles_change_only_what_they_list(tmp_path: Path, profile: str) -> None:
    """A profile is an overlay: applying it keeps every other key and every comment of params.yaml."""
    target = tmp_path / "params.yaml"
    target.write_text((ROOT / "params.yaml").read_text())
    changed = apply_profile(ROOT / "profiles" / f"{profile}.yaml", target)
    overlay = _top_keys(ROOT / "profiles" / f"{profile}.yaml")
    assert changed and all(key.split(".")[0] in overlay for key in changed)
    before, after = yaml.safe_load((ROOT / "params.yaml").read_text()), yaml.safe_load(target.read_text())
    assert {k: v for k, v in after.items() if k not in overlay} == {k: v for k, v in before.items() if k not in overlay}
    kept = [line for line in (ROOT / "params.yaml").read_text().splitlines() if line.lstrip().startswith("#")]
    assert all(line in target.read_text() for line in kept)
    _load(target)


def test_all_students_profile_has_every_method_with_and_without_logit_kd(tmp_path: Path) -> None:
    target = tmp_path / "params.yaml"
    target.write_text((ROOT / "params.yaml").read_text())
    apply_profile(ROOT / "profiles" / "all_students.yaml", target)
    params = _load(target)
    methods = {spec.method for spec in params.distilled.values()}
    from kdinterp.training.methods import METHODS

    assert methods == set(METHODS) - {"ce"}
    assert {spec.teacher for spec in params.self_distilled.values()} <= set(params.students)
    for method in methods - {"kd"}:
        alphas = {spec.alpha > 0 for spec in params.distilled.values() if spec.method == method}
        assert alphas == {False, True}, method  # with and without logit KD


def test_an_included_profile_is_merged_first_and_loops_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "params.yaml"
    target.write_text((ROOT / "params.yaml").read_text())
    changed = apply_profile(ROOT / "profiles" / "dose_response.yaml", target)
    params = _load(target)
    assert "teachers.teacher_ls" in changed and params.teachers["teacher_ls"].label_smoothing == 0.1
    assert {params.distilled[n].teacher for n in ("kdls_t1", "kdls_t8")} == {"teacher_ls"}
    (tmp_path / "a.yaml").write_text("include: [b]\n")
    (tmp_path / "b.yaml").write_text("include: [a]\n")
    with pytest.raises(ParamsError, match="include each other in a loop"):
        apply_profile(tmp_path / "a.yaml", target)
    (tmp_path / "c.yaml").write_text("include: ls_teacher\n")
    with pytest.raises(ParamsError, match="include must be a list of profile names"):
        apply_profile(tmp_path / "c.yaml", target)


def test_a_bad_profile_leaves_params_untouched(tmp_path: Path) -> None:
    target = tmp_path / "params.yaml"
    target.write_text((ROOT / "params.yaml").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text("distilled:\n  kd:\n    alpha: 2.0\n")
    with pytest.raises(ParamsError, match=r"bad\.yaml: the merged parameters are invalid: .*alpha: must be in"):
        apply_profile(bad, target)
    assert target.read_text() == (ROOT / "params.yaml").read_text()
