"""The study contract: the model list, the method table, the layout, and dvc.yaml agreeing with them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from kdinterp.core import codedeps, study
from kdinterp.core.config import ParamsError
from kdinterp.core.params import DistilledParams
from kdinterp.measures import evaluation
from kdinterp.measures.registry import MEASURES, load_params, stage_modules

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
                                   "cached": {str(o.def_path): o.use_cache for o in stage.outs},
                                   "metric": {str(o.def_path): bool(o.metric) for o in stage.outs}}
                for stage in repo.index.stages if stage.addressing != "data.dvc"}


def test_every_student_once_per_seed_and_the_teacher_once(params) -> None:
    models = study.models(params)
    keys = [m.key for m in models]
    seeds = list(params.seeds)
    per_seed = [*params.students, *params.distilled, *params.self_distilled]
    controls = [*params.trained_controls, *params.controls]
    assert keys == [*params.teachers, *[f"{name}-{seed}" for seed in seeds
                                        for name in per_seed + (controls if seed in params.control_seeds else [])]]
    assert len(keys) == (len(params.teachers) + len(seeds) * len(per_seed)
                         + len(params.control_seeds) * len(controls)) and len(set(keys)) == len(keys)
    kd = study.find(params, "kd", seeds[-1])
    assert kd.teacher == study.find(params, "teacher")
    assert kd.teacher.seed == params.teachers["teacher"].seed
    assert kd.method == "kd" and kd.role == "kd" and kd.stage("train") == f"distill_student@kd-{seeds[-1]}"
    assert study.find(params, "scratch", seeds[0]).stage("dissect") == f"dissect_student@scratch-{seeds[0]}"
    control = study.find(params, "random_init", seeds[0])
    assert (control.stage("train"), control.stage("dissect"), control.group.trained, control.arch) == (
        f"init_control@random_init-{seeds[0]}", f"dissect_control@random_init-{seeds[0]}", False,
        params.student_recipe.model)
    snapshot = study.find(params, "scratch_epoch4", seeds[1])
    assert snapshot.source == study.find(params, "scratch", seeds[1]) and control.source is None
    assert study.find(params, "shuffled", seeds[0]).role is None  # a trained control: no paper role


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
    from kdinterp.training import methods

    with pytest.raises(ParamsError, match=re.escape(message)):
        changed = dataclasses.replace(params, **change)
        study.check(changed)
        methods.check(changed)


def test_unknown_model_is_named(params) -> None:
    with pytest.raises(KeyError, match="no model 'kd' at seed 99"):
        study.find(params, "kd", 99)


def test_method_table_builds_every_method_with_one_signature(params) -> None:
    from kdinterp.core.params import ModelParams
    from kdinterp.training import methods
    from kdinterp.training.distill import Distiller
    from kdinterp.training.models import build_model

    arch = ModelParams("resnet10", width=4, small_input=True)
    for name, method in methods.METHODS.items():
        recipe = params.students["ls"] if name == "ce" else DistilledParams(teacher="teacher", method=name, alpha=0.5)
        teacher = None if name == "ce" else build_model(arch, 3)
        distiller = methods.build(name, build_model(arch, 3), teacher, recipe, 3, 12)
        assert isinstance(distiller, Distiller) and type(distiller) is method.distiller(), name


def _expected_outputs(params) -> dict[str, dict[str, tuple[bool, bool]]]:
    """Stage -> {output path: (cached, metric)}, from the study contract and the measure registry; the only
    DVC metrics are the headline files of stage figures (kdinterp.reporting.headline)."""
    layout = study.Layout()
    expected: dict[str, dict[str, tuple[bool, bool]]] = {}
    for model in study.models(params):
        outs = {str(layout.model_file(model)): (True, False), str(layout.environment(model)): (False, False)}
        if model.group.trained:
            outs[str(layout.history(model))] = (False, False)
        if model.group.snapshots:
            outs[str(layout.snapshots(model))] = (True, False)
        expected[model.stage("train")] = outs
        for measure in MEASURES:
            if measure.per_model and measure.applies(model):
                expected[measure.stage_of(model)] = {str(measure.path(layout, model, o)): (o.cache, False)
                                                     for o in measure.outputs}
    for measure in MEASURES:
        if not measure.per_model:
            expected[measure.stage] = {str(measure.path(layout, None, o)): (o.cache, False) for o in measure.outputs}
    expected["validate"] = {str(layout.dissection_validation): (False, False)}
    expected["validate_data"] = {str(layout.data_validation): (False, False)}
    expected["figures"] = {**{str(study.FIGURES_DIR / name): (False, False) for name in study.FIGURE_FILES},
                           str(layout.headline_dir): (False, True)}   # the only metrics: one file per model
    expected["figures"] |= {str(layout.plot_table(name)): (False, False) for name in study.PLOT_TABLES}
    expected["report"] = {"outputs/report": (True, False)}
    return expected


def test_dvc_yaml_has_exactly_the_study_stages_with_the_layout_paths(params, dvc_stages) -> None:
    """Every stage of dvc.yaml, and every output with its cache and metric flags, is the registry's and the layout's."""
    expected = _expected_outputs(params)
    assert set(dvc_stages) == set(expected)
    for name, outs in expected.items():
        found = {path: (dvc_stages[name]["cached"][path], dvc_stages[name]["metric"][path])
                 for path in dvc_stages[name]["outs"]}
        assert found == outs, name
    layout = study.Layout()
    for model in study.models(params):
        needs = [layout.model_file(model.teacher)] if model.teacher is not None else []
        if model.source is not None:  # a snapshot control reads the file its student's train stage writes
            needs.append(layout.snapshot(model.source, model.recipe.epoch))
            assert str(layout.snapshots(model.source)) in dvc_stages[model.source.stage("train")]["outs"]
        for need in needs:
            deps = dvc_stages[model.stage("train")]["deps"]
            assert any(need == Path(d) or Path(d) in need.parents for d in deps), model.key
        for measure in MEASURES:
            if measure.per_model and measure.applies(model):
                assert str(layout.model_file(model)) in dvc_stages[measure.stage_of(model)]["deps"]
                assert dvc_stages[measure.stage_of(model)]["cmd"] == f"kdinterp {measure.stage} {model.key}"


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
    metrics = {str(evaluation.MEASURE.path(layout, m, evaluation.METRICS)) for m in study.models(params)}
    assert metrics | {str(layout.headline_dir)} <= {p for p, use in cached.items() if not use}


def _family(stage: str) -> str:
    base = stage.split("@")[0]
    if base in {group.train_stage for group in study.GROUPS}:
        return "train"
    return base.split("_")[0] if "@" in stage else base


def _covered(path: Path, deps: list[Path]) -> bool:
    return any(path == d or d in path.parents for d in deps)


def test_each_stage_depends_on_the_code_it_imports(dvc_stages) -> None:
    """dvc.yaml's src deps of a stage cover the import closure of the module behind its command, and each is needed.

    Folder deps per layer are allowed (a dep may hold files the stage does not run); a dep that holds
    none of them is an error, as is a file of the closure that no dep covers.
    """
    modules = stage_modules()
    assert {_family(name) for name in dvc_stages} == set(modules)
    for name, stage in dvc_stages.items():
        declared = [ROOT / d for d in stage["deps"] if d.startswith("src/")]
        closure = codedeps.closure(modules[_family(name)])
        missing = sorted(str(p.relative_to(ROOT)) for p in closure if not _covered(p, declared))
        unused = sorted(str(d.relative_to(ROOT)) for d in declared if not any(_covered(p, [d]) for p in closure))
        assert not missing and not unused, (f"{name}: dvc.yaml src deps of {modules[_family(name)]}: "
                                            f"missing {missing}, not needed {unused}")


def test_type_only_imports_are_not_code_deps() -> None:
    """``if TYPE_CHECKING:`` imports never run, so they do not widen a stage's deps."""
    files = {str(p.relative_to(codedeps.PACKAGE)) for p in codedeps.closure("kdinterp.training.methods")}
    assert "training/distill.py" in files  # imported in a function: it runs
    files = {str(p.relative_to(codedeps.PACKAGE)) for p in codedeps.closure("kdinterp.core.study")}
    assert not any(f.startswith("training/") for f in files)


def test_code_closure_follows_lazy_and_relative_imports() -> None:
    files = {str(p.relative_to(codedeps.PACKAGE)) for p in codedeps.closure("kdinterp.stages.training")}
    assert {"stages/training.py", "stages/__init__.py", "__init__.py", "training/methods.py",
            "training/feature_kd/at.py", "training/train.py", "core/params.py", "core/study.py"} <= files
    assert "reporting/figures.py" not in files and "reporting/report.py" not in files
    assert "world/generate.py" not in files  # params.py no longer imports the world generator


def test_params_module_sits_below_the_data_generator() -> None:
    files = {str(p.relative_to(codedeps.PACKAGE)) for p in codedeps.closure("kdinterp.core.params")}
    assert files == {"__init__.py", "core/__init__.py", "core/config.py", "core/errors.py", "core/params.py",
                     "core/paramsfile.py", "core/verdict_params.py"}


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

    from kdinterp.workflow.profiles import apply_profile

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
