"""Stage functions on tiny data: every student of params.yaml trains, and bad teachers are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from kdinterp.core import study
from kdinterp.core.params import ModelParams, Params
from kdinterp.measures.registry import parse_params
from kdinterp.stages import training
from kdinterp.training.models import CheckpointError, build_model, load_model, read_header, save_model
from tests.tiny_study import use_tiny_recipe

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model": {"arch": "resnet10", "width": 4, "small_input": True},
        "optim": {"epochs": 1, "batch_size": 8, "lr": 0.05}}


def tiny_params(folders: dict[str, Path], distilled: dict | None = None, seeds: list[int] | None = None) -> Params:
    """params.yaml with tiny models, one epoch, and the given data folders."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"].update(train_dir=str(folders["train"]), val_dir=str(folders["val"]), world_file=None, image_size=16)
    raw["teachers"] = {"teacher": {**TINY, "label_smoothing": 0.0}}
    use_tiny_recipe(raw, TINY)
    if seeds is not None:
        raw["seeds"] = raw["control_seeds"] = seeds
    if distilled is not None:
        raw["distilled"] = {**raw["distilled"], **distilled}
    params = parse_params(raw)
    study.check(params)
    return params


def _train(params: Params, layout: study.Layout, name: str, seed: int | None = None) -> study.Model:
    model = study.find(params, name, seed)
    training.train(params, model, layout)
    return model


def test_teacher_then_kd_student(tiny_folders, tmp_path: Path) -> None:
    params, layout = tiny_params(tiny_folders), study.Layout(tmp_path)
    _train(params, layout, "teacher")
    kd = _train(params, layout, "kd", params.seeds[0])
    history = layout.history(kd).read_text().splitlines()
    assert history[0].startswith("epoch,lr,loss_ce,loss_kd,loss,train_top1,val_top1") and len(history) == 2
    info = read_header(layout.model_file(kd))["info"]
    assert info["seed"] == params.seeds[0] and info["method"] == "kd" and "teacher_sha256" in info
    assert "environment" not in info  # the weights file holds no machine facts: they are in the sidecar
    assert {"torch", "threads"} <= set(json.loads(layout.environment(kd).read_text()))


def test_students_of_one_seed_start_alike_and_seeds_differ(tiny_folders, tmp_path: Path, monkeypatch) -> None:
    """A seed fixes the initialisation: scratch and ls of seed s start from the same weights; seeds differ."""
    params, layout = tiny_params(tiny_folders, seeds=[3, 4]), study.Layout(tmp_path)
    starts = {}
    real_fit = training.fit

    def record(distiller, *args, **kwargs):
        starts[kwargs["label"]] = {k: v.clone() for k, v in distiller.student.state_dict().items()}
        return real_fit(distiller, *args, **kwargs)

    monkeypatch.setattr(training, "fit", record)
    for name, seed in (("scratch", 3), ("ls", 3), ("scratch", 4)):
        _train(params, layout, name, seed)
    same = all(torch.equal(starts["scratch-3"][k], starts["ls-3"][k]) for k in starts["scratch-3"])
    different = any(not torch.equal(starts["scratch-3"][k], starts["scratch-4"][k]) for k in starts["scratch-3"])
    assert same and different
    control = _train(params, layout, "random_init", 3)  # the control of seed 3: those weights, never trained
    assert not layout.history(control).exists() and not layout.checkpoints(control).exists()
    net, _ = load_model(layout.model_file(control), params.student_recipe.model)
    saved = net.state_dict()
    assert all(torch.equal(saved[k], starts["scratch-3"][k]) for k in starts["scratch-3"])
    assert read_header(layout.model_file(control))["info"]["group"] == "control"


def test_teacher_of_the_wrong_architecture_is_refused(tiny_folders, tmp_path: Path) -> None:
    params, layout = tiny_params(tiny_folders), study.Layout(tmp_path)
    wrong = ModelParams("resnet18", width=4, small_input=True)
    save_model(build_model(wrong, 3), layout.model_file(study.find(params, "teacher")), wrong,
               ["a_one", "a_two", "b_one"])
    with pytest.raises(CheckpointError, match=r"holds resnet18 \(width 4, small-input stem\), but resnet10"):
        _train(params, layout, "kd", params.seeds[0])


def test_teacher_trained_on_other_classes_is_refused(tiny_folders, tmp_path: Path) -> None:
    params, layout = tiny_params(tiny_folders), study.Layout(tmp_path)
    spec = params.teachers["teacher"].model
    save_model(build_model(spec, 4), layout.model_file(study.find(params, "teacher")), spec, ["a", "b", "c", "d"])
    with pytest.raises(CheckpointError, match="trained on other classes"):
        _train(params, layout, "kd", params.seeds[0])


PROFILE = yaml.safe_load((ROOT / "profiles" / "all_students.yaml").read_text())
PROFILE = {**PROFILE["distilled"], **PROFILE["self_distilled"]}
TINY_OPTIONS = {"ft": {"paraphraser_batch_size": 8}, "sskd": {"ss_head_epochs": 1, "ss_head_batch_size": 8,
                                                             "ss_head_milestones": []}}


@pytest.fixture(scope="module")
def trained_teacher(tmp_path_factory) -> tuple[dict[str, Path], Path]:
    """Tiny data folders and an outputs/ root holding a trained tiny teacher."""
    from tests.conftest import write_image_folder

    root = tmp_path_factory.mktemp("teacher")
    classes = ["a_one", "a_two", "b_one"]
    folders = {"train": write_image_folder(root / "train", classes, 8, seed=0),
               "val": write_image_folder(root / "val", classes, 4, seed=1)}
    _train(tiny_params(folders), study.Layout(root / "outputs"), "teacher")
    return folders, root / "outputs"


@pytest.mark.parametrize("name", sorted(PROFILE))
def test_every_student_of_the_all_students_profile_trains(name: str, trained_teacher, tmp_path: Path) -> None:
    folders, outputs = trained_teacher
    spec = dict(PROFILE[name])
    spec["teacher"] = "teacher"  # tiny stand-in for teacher_ls / scratch: same architecture here
    spec["options"] = {**spec.get("options", {}), **TINY_OPTIONS.get(spec.get("method", "kd"), {})}
    params = tiny_params(folders, distilled={name: spec})
    layout = study.Layout(tmp_path)
    teacher = study.find(params, "teacher")
    layout.model_file(teacher).parent.mkdir(parents=True)
    shutil.copy(study.Layout(outputs).model_file(teacher), layout.model_file(teacher))
    model = _train(params, layout, name, params.seeds[0])
    header = layout.history(model).read_text().splitlines()[0].split(",")
    assert "loss_ce" in header and ("loss_kd" in header) == (spec["alpha"] > 0)
    assert layout.model_file(model).stat().st_size > 0
