"""The study contract: the model list, the method table, the layout, and dvc.yaml agreeing with them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from kdinterp.core import codedeps, study
from kdinterp.core.config import ParamsError
from kdinterp.core.params import DistilledParams, load_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="module")
def dvc_stages() -> dict:
    """Every stage of the repository's dvc.yaml as DVC itself resolves it (foreach and matrix expanded)."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {stage.addressing: {"cmd": stage.cmd, "deps": [str(d.def_path) for d in stage.deps],
                                   "outs": [str(o.def_path) for o in stage.outs],
                                   "cached": {str(o.def_path): o.use_cache for o in stage.outs}}
                for stage in repo.index.stages if stage.addressing != "data.dvc"}


def test_every_student_once_per_seed_and_the_teacher_once(params) -> None:
    models = study.models(params)
    keys = [m.key for m in models]
    seeds = list(params.seeds)
    assert keys == ["teacher", *[f"{name}-{seed}" for seed in seeds for name in ("scratch", "ls", "kd", "random_init")]]
    kd = study.find(params, "kd", seeds[-1])
    assert kd.teacher == study.find(params, "teacher")
    assert kd.teacher.seed == params.teachers["teacher"].seed
    assert kd.method == "kd" and kd.role == "kd" and kd.stage("train") == f"distill_student@kd-{seeds[-1]}"
    assert study.find(params, "scratch", seeds[0]).stage("dissect") == f"dissect_student@scratch-{seeds[0]}"
    control = study.find(params, "random_init", seeds[0])
    assert (control.stage("train"), control.stage("dissect"), control.group.trained, control.arch) == (
        f"init_control@random_init-{seeds[0]}", f"dissect_control@random_init-{seeds[0]}", False,
        params.student_recipe.model)


def test_self_distillation_takes_the_student_of_the_same_seed(params) -> None:
    spec = DistilledParams(teacher="scratch", temperature=4.0, alpha=0.5)
    p = dataclasses.replace(params, self_distilled={"self_kd": spec})
    for seed in params.seeds:
        model = study.find(p, "self_kd", seed)
        assert model.teacher.key == f"scratch-{seed}" and model.stage("train") == f"self_distill_student@self_kd-{seed}"


@pytest.mark.parametrize(("change", "message"), [
    ({"distilled": {"kd": DistilledParams(teacher="nobody")}}, "distilled.kd.teacher: 'nobody'"),
    ({"distilled": {"kd": DistilledParams(teacher="teacher", method="xd")}}, "distilled.kd.method: 'xd'"),
    ({"distilled": {"kd": DistilledParams(teacher="teacher", method="ce")}}, "distilled.kd.method: 'ce'"),
    ({"distilled": {"kd": DistilledParams(teacher="teacher", options={"x": 1})}}, "method 'kd' takes no options"),
    ({"distilled": {"kd": DistilledParams(teacher="teacher", method="at", options={"layrs": 1})}}, "layers"),
    ({"self_distilled": {"kd2": DistilledParams(teacher="teacher")}}, "self_distilled.kd2.teacher: 'teacher'"),
    ({"seeds": (1, 1)}, "distinct seeds"),
    ({"paper_models": {"kd": "nope"}}, "paper_models.kd: 'nope'"),
])
def test_cross_checks_name_the_key(params, change, message) -> None:
    with pytest.raises(ParamsError, match=re.escape(message)):
        study.check(dataclasses.replace(params, **change))


def test_unknown_model_is_named(params) -> None:
    with pytest.raises(KeyError, match="no model 'kd' at seed 99"):
        study.find(params, "kd", 99)


def test_method_table_builds_every_method_with_one_signature(params) -> None:
    from kdinterp.training.distill import Distiller
    from kdinterp.training.models import build_model
    from kdinterp.core.params import ModelParams

    arch = ModelParams("resnet10", width=4, small_input=True)
    for name, method in study.METHODS.items():
        recipe = (params.students["ls"] if name == "ce"
                  else DistilledParams(teacher="teacher", method=name, alpha=0.5))
        group = study.GROUPS[1] if name == "ce" else study.GROUPS[2]
        model = study.Model("m", group, 0, arch, params.student_recipe.optim, name, recipe)
        teacher = None if name == "ce" else build_model(arch, 3)
        distiller = method.build(build_model(arch, 3), teacher, model, 3, 12)
        assert isinstance(distiller, Distiller), name
        assert (study.resolve(method.distiller) is type(distiller)) if method.distiller else True


def test_dvc_yaml_has_exactly_the_study_stages_with_the_layout_paths(params, dvc_stages) -> None:
    layout = study.Layout()
    expected = {}
    for model in study.models(params):
        expected[model.stage("train")] = [str(layout.model_file(model))] + (
            [str(layout.history(model))] if model.group.trained else [])
        expected[model.stage("evaluate")] = [str(layout.predictions(model)), str(layout.metrics(model))]
        expected[model.stage("dissect")] = [str(layout.dissection(model, f)) for f in layout.DISSECTION_FILES]
        expected[model.stage("saliency")] = [str(layout.saliency(model, f)) for f in layout.SALIENCY_FILES]
        if model.group.section in study.DIFFROAR_SECTIONS:
            expected[model.stage("diffroar")] = [str(layout.diffroar(model, f)) for f in layout.DIFFROAR_FILES]
    per_model = {name: stage for name, stage in dvc_stages.items() if "@" in name}
    assert set(per_model) == set(expected)
    for name, outs in expected.items():
        assert sorted(per_model[name]["outs"]) == sorted(outs), name
    for model in study.models(params):
        if model.teacher is not None:
            teacher_file = layout.model_file(model.teacher)
            deps = dvc_stages[model.stage("train")]["deps"]
            assert any(teacher_file == Path(d) or Path(d) in teacher_file.parents for d in deps), model.key
    assert dvc_stages["validate"]["outs"] == [str(layout.dissection_validation)]
    assert dvc_stages["validate_data"]["outs"] == [str(layout.data_validation)]
    assert str(layout.similarity) in dvc_stages["similarity"]["outs"]


def _git_ignored(paths: list[str]) -> set[str]:
    """The paths of ``paths`` that the repository's .gitignore ignores (``git check-ignore --no-index``)."""
    import subprocess

    done = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT, input="\n".join(paths),
                          capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr
    return set(done.stdout.split())


def test_cache_rule_every_output_is_in_git_or_in_the_dvc_cache(params, dvc_stages) -> None:
    """dvc.yaml's header: `cache: false` outputs are committed, cached ones are git-ignored (pushed to the remote).

    So a clone plus `dvc pull` has every output, and `dvc repro` then finds nothing to run.
    """
    cached = {path: use for stage in dvc_stages.values() for path, use in stage["cached"].items()}
    ignored = _git_ignored(sorted(cached))
    assert sorted(p for p, use in cached.items() if not use and p in ignored) == []
    assert sorted(p for p, use in cached.items() if use and p not in ignored) == []
    layout = study.Layout()
    trained = [m for m in study.models(params) if m.group.trained]
    checkpoints = [str(layout.checkpoints(m) / "last.pt") for m in trained]
    assert set(checkpoints) <= _git_ignored(checkpoints)  # local resume state: neither git nor DVC
    assert not any(p.startswith(str(layout.root / "checkpoints")) for p in cached)
    assert {str(layout.metrics(m)) for m in trained} <= {p for p, use in cached.items() if not use}


def _family(stage: str) -> str:
    base = stage.split("@")[0]
    if base in {group.train_stage for group in study.GROUPS}:
        return "train"
    return base.split("_")[0] if base.startswith(("evaluate_", "dissect_", "saliency_", "diffroar_")) else base


def test_each_stage_depends_on_exactly_the_code_it_imports(dvc_stages) -> None:
    """dvc.yaml's src deps of a stage == the import closure of the module behind its command."""
    assert {_family(name) for name in dvc_stages} == set(study.STAGE_MODULES)
    for name, stage in dvc_stages.items():
        declared = sorted(d for d in stage["deps"] if d.startswith("src/"))
        expected = codedeps.dvc_deps(study.STAGE_MODULES[_family(name)], ROOT)
        assert declared == expected, (f"{name}: dvc.yaml src deps differ from the imports of "
                                      f"{study.STAGE_MODULES[_family(name)]}; missing "
                                      f"{sorted(set(expected) - set(declared))}, extra "
                                      f"{sorted(set(declared) - set(expected))}")


def test_code_closure_follows_lazy_and_relative_imports() -> None:
    files = {str(p.relative_to(codedeps.PACKAGE)) for p in codedeps.closure("kdinterp.stages.training")}
    assert {"stages/training.py", "stages/__init__.py", "__init__.py", "training/methods.py",
            "training/feature_kd/at.py", "training/train.py", "core/params.py", "core/study.py"} <= files
    assert "reporting/figures.py" not in files and "reporting/report.py" not in files
    assert "world/generate.py" not in files  # params.py no longer imports the world generator


def test_params_module_sits_below_the_data_generator() -> None:
    files = {str(p.relative_to(codedeps.PACKAGE)) for p in codedeps.closure("kdinterp.core.params")}
    assert files == {"__init__.py", "core/__init__.py", "core/config.py", "core/errors.py", "core/params.py"}


def test_teacher_weights_must_lie_in_the_folder_dvc_tracks(params) -> None:
    teacher = params.teachers["teacher"]
    for weights in ("/home/u/resnet34.pth", "resnet34.pth", "pretrained/../resnet34.pth", "data/resnet34.pth"):
        p = dataclasses.replace(params, teachers={"teacher": dataclasses.replace(teacher, weights=weights)})
        with pytest.raises(ParamsError, match=re.escape(f"teachers.teacher.weights: '{weights}' must be a file in "
                                                        f"{study.PRETRAINED_DIR}/")):
            study.check(p)
    p = dataclasses.replace(params, teachers={"teacher": dataclasses.replace(teacher, weights="pretrained/r34.pth")})
    assert study.find(p, "teacher").imported and not study.find(params, "teacher").imported


def test_every_teacher_stage_depends_on_the_pretrained_folder(dvc_stages) -> None:
    """A teacher's weights file (teachers.<name>.weights) is tracked through the folder it must lie in."""
    teachers = [name for name in dvc_stages if name.startswith("train_teacher@")]
    assert teachers and all(study.PRETRAINED_DIR in dvc_stages[name]["deps"] for name in teachers)
    assert (ROOT / study.PRETRAINED_DIR).is_dir()


def test_paper_profile_resolves_without_concept_world_paths(tmp_path) -> None:
    """profiles/paper.yaml (data.world_file null): dvc.yaml resolves, and no dep is a concept-world path or 'None'."""
    import shutil

    from dvc.repo import Repo

    from kdinterp.core.profiles import apply_profile

    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path)
    apply_profile(ROOT / "profiles" / "paper.yaml", tmp_path / "params.yaml")
    Repo.init(str(tmp_path), no_scm=True).close()
    with Repo(str(tmp_path)) as repo:
        stages = {s.name: [str(d.def_path) for d in s.deps] for s in repo.index.stages}
    deps = {d for ds in stages.values() for d in ds}
    assert not {d for d in deps if "concept_world" in d or d in ("None", "null")}
    assert {"data/imagenet/train", "data/imagenet/val", "data/broden1_224"} <= set(stages["validate_data"])
    assert study.PRETRAINED_DIR in stages["train_teacher@teacher"]
