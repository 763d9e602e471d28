"""Stage functions on tiny data: every student of params.yaml trains, and bad teachers are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kdinterp.config import from_mapping
from kdinterp.models import CheckpointError, build_model, save_model
from kdinterp.params import ModelParams, Params
from kdinterp.stages import training

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model": {"arch": "resnet10", "width": 4, "small_input": True},
        "optim": {"epochs": 1, "batch_size": 8, "lr": 0.05}}


def tiny_params(folders: dict[str, Path], distilled: dict | None = None) -> Params:
    """params.yaml with tiny models, one epoch, and the given data folders."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"].update(train_dir=str(folders["train"]), val_dir=str(folders["val"]), world_file=None, image_size=16)
    raw["teachers"] = {"teacher": {**TINY, "label_smoothing": 0.0}}
    raw["student_recipe"] = TINY
    if distilled is not None:
        raw["distilled"] = {**raw["distilled"], **distilled}
    return from_mapping(Params, raw, "")


def _train_teacher(params: Params, tmp_path: Path) -> Path:
    out = tmp_path / "teacher.safetensors"
    training.train_teacher(params, "teacher", out, tmp_path / "ck_teacher", tmp_path / "teacher.csv")
    return out


def test_teacher_then_kd_student(tiny_folders, tmp_path: Path) -> None:
    params = tiny_params(tiny_folders)
    teacher = _train_teacher(params, tmp_path)
    training.distill_student(params, "kd", teacher, tmp_path / "kd.safetensors", tmp_path / "ck_kd", tmp_path / "kd.csv")
    history = (tmp_path / "kd.csv").read_text().splitlines()
    assert history[0].startswith("epoch,lr,loss_ce,loss_kd,loss,train_top1,val_top1") and len(history) == 2


def test_teacher_of_the_wrong_architecture_is_refused(tiny_folders, tmp_path: Path) -> None:
    params = tiny_params(tiny_folders)
    wrong = ModelParams("resnet18", width=4, small_input=True)
    save_model(build_model(wrong, 3), tmp_path / "teacher.safetensors", wrong, ["a_one", "a_two", "b_one"])
    with pytest.raises(CheckpointError, match=r"holds resnet18 \(width 4, small-input stem\), but resnet10"):
        training.distill_student(params, "kd", tmp_path / "teacher.safetensors", tmp_path / "kd.safetensors",
                                 tmp_path / "ck", tmp_path / "kd.csv")


def test_teacher_trained_on_other_classes_is_refused(tiny_folders, tmp_path: Path) -> None:
    params = tiny_params(tiny_folders)
    spec = params.teachers["teacher"].model
    save_model(build_model(spec, 4), tmp_path / "teacher.safetensors", spec, ["a", "b", "c", "d"])
    with pytest.raises(CheckpointError, match="trained on other classes"):
        training.distill_student(params, "kd", tmp_path / "teacher.safetensors", tmp_path / "kd.safetensors",
                                 tmp_path / "ck", tmp_path / "kd.csv")


PROFILE = yaml.safe_load((ROOT / "profiles" / "all_students.yaml").read_text())["distilled"]
TINY_OPTIONS = {"ft": {"paraphraser_batch_size": 8}, "sskd": {"ss_head_epochs": 1, "ss_head_batch_size": 8,
                                                             "ss_head_milestones": []}}


@pytest.fixture(scope="module")
def trained_teacher(tmp_path_factory) -> tuple[dict[str, Path], Path]:
    from tests.conftest import write_image_folder

    root = tmp_path_factory.mktemp("teacher")
    classes = ["a_one", "a_two", "b_one"]
    folders = {"train": write_image_folder(root / "train", classes, 8, seed=0),
               "val": write_image_folder(root / "val", classes, 4, seed=1)}
    return folders, _train_teacher(tiny_params(folders), root)


@pytest.mark.parametrize("name", sorted(PROFILE))
def test_every_student_of_the_all_students_profile_trains(name: str, trained_teacher, tmp_path: Path) -> None:
    folders, teacher = trained_teacher
    spec = dict(PROFILE[name])
    spec["teacher"] = "teacher"  # tiny stand-in for teacher_ls / scratch: same architecture here
    spec["options"] = {**spec.get("options", {}), **TINY_OPTIONS.get(spec.get("method", "kd"), {})}
    params = tiny_params(folders, distilled={name: spec})
    training.distill_student(params, name, teacher, tmp_path / "m.safetensors", tmp_path / "ck", tmp_path / "h.csv")
    header = (tmp_path / "h.csv").read_text().splitlines()[0].split(",")
    assert "loss_ce" in header and ("loss_kd" in header) == (spec["alpha"] > 0)
    assert (tmp_path / "m.safetensors").stat().st_size > 0
