"""The control ladder on tiny data: BatchNorm recalibration, shuffled labels, snapshots along training."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from kdinterp.core import study
from kdinterp.core.config import ParamsError
from kdinterp.core.params import Params
from kdinterp.measures.registry import parse_params
from kdinterp.stages import training
from kdinterp.training import train as train_module
from kdinterp.training.batchnorm import recalibrate_batchnorm
from kdinterp.training.data import build_transform, eval_loader, load_dataset, shuffle_labels
from kdinterp.training.folders import image_folder
from kdinterp.training.models import CheckpointError, load_model, read_header
from tests.tiny_study import use_tiny_recipe

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model": {"arch": "resnet10", "width": 4, "small_input": True},
        "optim": {"epochs": 3, "batch_size": 8, "lr": 0.05}}
STATS = ("running_mean", "running_var", "num_batches_tracked")


def _raw(folders: dict[str, Path]) -> dict:
    """params.yaml as a mapping: tiny data and a 3-epoch tiny recipe with snapshots after epochs 1 and 2."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"].update(train_dir=str(folders["train"]), val_dir=str(folders["val"]), world_file=None, image_size=16)
    use_tiny_recipe(raw, TINY)
    raw["student_recipe"]["snapshot_epochs"] = [1, 2]
    raw["controls"]["scratch_epoch2"]["epoch"] = 2
    raw["seeds"] = raw["control_seeds"] = [3, 4]
    return raw


def _params(raw: dict) -> Params:
    params = parse_params(raw)
    study.check(params)
    return params


def _state(layout: study.Layout, model: study.Model, params: Params) -> dict[str, torch.Tensor]:
    return load_model(layout.model_file(model), params.student_recipe.model)[0].state_dict()


# --------------------------------------------------------------------------- BatchNorm recalibration


def test_recalibrated_control_has_the_data_statistics_and_the_init_weights(tiny_folders, tmp_path: Path) -> None:
    params, layout = _params(_raw(tiny_folders)), study.Layout(tmp_path)
    plain, recalibrated = study.find(params, "random_init", 3), study.find(params, "random_init_bn", 3)
    training.train(params, plain, layout)
    training.train(params, recalibrated, layout)
    a, b = _state(layout, plain, params), _state(layout, recalibrated, params)
    weights = [k for k in a if not k.endswith(STATS)]
    assert weights and all(torch.equal(a[k], b[k]) for k in weights)  # every conv/BN/fc parameter: the init's
    assert torch.equal(a["bn1.running_mean"], torch.zeros(4)) and torch.equal(a["bn1.running_var"], torch.ones(4))
    # bn1 normalises conv1's output: its statistics are those of conv1 on the training images (eval
    # transform; one batch of all 24 images, so the cumulative average is exactly the data's mean and
    # unbiased variance per channel).
    net, _ = load_model(layout.model_file(plain), params.student_recipe.model)
    images = torch.cat([x for x, _ in eval_loader(load_dataset(params.data, train=True, augment=False), 256)])
    with torch.no_grad():
        out = net.conv1(images).transpose(0, 1).reshape(4, -1)
    assert torch.allclose(b["bn1.running_mean"], out.mean(1), atol=1e-5)
    assert torch.allclose(b["bn1.running_var"], out.var(1, unbiased=True), rtol=1e-4)
    assert int(b["bn1.num_batches_tracked"]) == 1
    assert not torch.allclose(a["layer4.0.bn2.running_var"], b["layer4.0.bn2.running_var"])
    info = read_header(layout.model_file(recalibrated))["info"]
    assert (info["batchnorm"], info["init"], info["group"]) == ("recalibrated", "random", "control")


def test_recalibration_averages_batches_restores_momentum_and_leaves_eval_mode() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2, momentum=0.3))
    batches = [(torch.randn(5, 3, 4, 4) + k, torch.zeros(5)) for k in range(3)]
    assert recalibrate_batchnorm(net, batches) == 15
    bn = net[1]
    with torch.no_grad():
        means = torch.stack([net[0](x).mean((0, 2, 3)) for x, _ in batches])
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-5)
    assert bn.momentum == 0.3 and not net.training and int(bn.num_batches_tracked) == 3
    assert all(p.grad is None for p in net.parameters())
    with pytest.raises(ValueError, match="no images"):
        recalibrate_batchnorm(net, [])


# --------------------------------------------------------------------------- shuffled labels


@pytest.mark.parametrize("in_memory", [True, False])
def test_shuffled_labels_are_a_seeded_permutation(tiny_folders, in_memory: bool) -> None:
    params = _params(_raw(tiny_folders))
    original = load_dataset(params.data, train=True) if in_memory else image_folder(
        tiny_folders["train"], build_transform(params.data, train=False))
    before = [t for _, t in original.samples]
    a, again, other = shuffle_labels(original, 3), shuffle_labels(original, 3), shuffle_labels(original, 4)
    labels = [int(t) for t in a.targets]
    assert sorted(labels) == sorted(before) and labels != before  # the class counts, not the classes
    assert labels == [int(t) for t in again.targets] and labels != [int(t) for t in other.targets]
    assert [t for _, t in a.samples] == labels and [p for p, _ in a.samples] == [p for p, _ in original.samples]
    assert [t for _, t in original.samples] == before and [int(t) for t in original.targets] == before  # untouched
    rng = np.random.default_rng(10_000 + 3)
    assert labels == list(np.asarray(before)[rng.permutation(len(before))])
    assert all(a[i][1] == labels[i] for i in range(len(labels)))  # items carry them, as TrainBatches' targets do
    if not in_memory:
        assert a.imgs == a.samples


def test_shuffled_student_trains_on_shuffled_train_labels_and_true_val_labels(tiny_folders, tmp_path: Path,
                                                                              monkeypatch) -> None:
    params, layout = _params(_raw(tiny_folders)), study.Layout(tmp_path)
    seen = {}
    real_fit = training.fit

    def record(distiller, train_set, val_set, *args, **kwargs):
        seen[kwargs["label"]] = ([int(t) for t in train_set.targets], [int(t) for t in val_set.targets])
        return real_fit(distiller, train_set, val_set, *args, **kwargs)

    monkeypatch.setattr(training, "fit", record)
    for name in ("scratch", "shuffled"):
        training.train(params, study.find(params, name, 3), layout)
    (train_true, val_true), (train_shuffled, val_shuffled) = seen["scratch-3"], seen["shuffled-3"]
    assert val_shuffled == val_true and sorted(train_shuffled) == sorted(train_true) != train_shuffled
    assert train_shuffled == [int(t) for t in shuffle_labels(load_dataset(params.data, train=True), 3).targets]
    info = read_header(layout.model_file(study.find(params, "shuffled", 3)))["info"]
    assert info["shuffle_labels"] is True and study.find(params, "shuffled", 3).role is None


# --------------------------------------------------------------------------- snapshots along training


def _record_epochs(monkeypatch, fail_at: int | None = None) -> list[dict[str, torch.Tensor]]:
    """Patch the epoch loop to record the student's weights after every epoch (and fail at epoch ``fail_at``)."""
    after = []
    real = train_module.train_one_epoch

    def one_epoch(model, loader, optimizer, epoch, *args, **kwargs):
        if epoch == fail_at:
            raise KeyboardInterrupt("killed")
        stats = real(model, loader, optimizer, epoch, *args, **kwargs)
        after.append({k: v.detach().clone() for k, v in model.student.state_dict().items()})
        return stats

    monkeypatch.setattr(train_module, "train_one_epoch", one_epoch)
    return after


def test_snapshot_control_is_the_scratch_run_at_that_epoch(tiny_folders, tmp_path: Path, monkeypatch) -> None:
    params, layout = _params(_raw(tiny_folders)), study.Layout(tmp_path)
    after = _record_epochs(monkeypatch)
    scratch, control = study.find(params, "scratch", 3), study.find(params, "scratch_epoch2", 3)
    assert control.source == scratch and control.recipe.epoch == 2
    training.train(params, scratch, layout)
    assert len(after) == 3
    assert sorted(p.name for p in layout.snapshots(scratch).iterdir()) == ["epoch-1.safetensors", "epoch-2.safetensors"]
    for epoch in (1, 2):
        net, header = load_model(layout.snapshot(scratch, epoch), params.student_recipe.model)
        assert header["info"]["epoch"] == epoch and header["info"]["name"] == "scratch"
        assert all(torch.equal(v, after[epoch - 1][k]) for k, v in net.state_dict().items())
    training.train(params, control, layout)
    weights = _state(layout, control, params)
    assert all(torch.equal(v, after[1][k]) for k, v in weights.items())
    assert not all(torch.equal(v, after[2][k]) for k, v in weights.items())  # not the trained student
    info = read_header(layout.model_file(control))["info"]
    assert (info["init"], info["student"], info["epoch"], info["group"]) == ("snapshot", "scratch", 2, "control")
    assert not layout.history(control).exists() and not layout.checkpoints(control).exists()


def test_a_resumed_run_writes_the_same_snapshots(tiny_folders, tmp_path: Path, monkeypatch) -> None:
    """Killed in epoch 2 (snapshot 1 in last.pt), its outputs removed as DVC does, resumed: the same files."""
    params = _params(_raw(tiny_folders))
    scratch = study.find(params, "scratch", 3)
    whole, resumed = study.Layout(tmp_path / "whole"), study.Layout(tmp_path / "resumed")
    training.train(params, scratch, whole)
    _record_epochs(monkeypatch, fail_at=1)
    with pytest.raises(KeyboardInterrupt):
        training.train(params, scratch, resumed)
    assert not resumed.snapshots(scratch).exists()
    monkeypatch.undo()
    training.train(params, scratch, resumed)
    for epoch in (1, 2):
        assert resumed.snapshot(scratch, epoch).read_bytes() == whole.snapshot(scratch, epoch).read_bytes()
    assert resumed.model_file(scratch).read_bytes() == whole.model_file(scratch).read_bytes()


def test_snapshot_control_without_its_snapshot_names_the_stage(tiny_folders, tmp_path: Path) -> None:
    params, layout = _params(_raw(tiny_folders)), study.Layout(tmp_path)
    with pytest.raises(CheckpointError, match=re.escape("run stage train_student@scratch-3")):
        training.train(params, study.find(params, "scratch_epoch2", 3), layout)


def test_students_with_no_snapshot_epochs_write_an_empty_folder(tiny_folders, tmp_path: Path) -> None:
    raw = _raw(tiny_folders)
    raw["student_recipe"].update(snapshot_epochs=[], optim={**TINY["optim"], "epochs": 1})
    for name in [n for n, spec in raw["controls"].items() if spec and spec.get("init") == "snapshot"]:
        del raw["controls"][name]
    params, layout = _params(raw), study.Layout(tmp_path)
    scratch = study.find(params, "scratch", 3)
    stale = layout.snapshot(scratch, 5)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from another run")
    training.train(params, scratch, layout)
    assert layout.snapshots(scratch).is_dir() and not any(layout.snapshots(scratch).iterdir())
    assert not study.Layout(tmp_path).snapshots(study.find(params, "teacher")).exists()  # only students write them


# --------------------------------------------------------------------------- params errors


def _set(raw: dict, dotted: str, value) -> dict:
    *path, last = dotted.split(".")
    node = raw
    for key in path:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


_DELETE = object()


@pytest.mark.parametrize(("key", "value", "message"), [
    ("controls.scratch_epoch2.student", _DELETE, "controls.scratch_epoch2.student: init 'snapshot' needs the student"),
    ("controls.scratch_epoch2.epoch", _DELETE, "controls.scratch_epoch2.epoch: init 'snapshot' needs the student"),
    ("controls.random_init.student", "scratch", "controls.random_init.student: is only for init 'snapshot'"),
    ("controls.random_init.epoch", 2, "controls.random_init.epoch: is only for init 'snapshot'"),
    ("controls.scratch_epoch2.epoch", 0, "controls.scratch_epoch2.epoch: must be >= 1, got 0"),
    ("controls.scratch_epoch2.epoch", 3, "controls.scratch_epoch2.epoch: 3 is not in student_recipe.snapshot_epochs "
                                         "[1, 2]; add it there"),
    ("controls.scratch_epoch2.student", "kd", "controls.scratch_epoch2.student: 'kd' is not one of students"),
    ("controls.scratch_epoch2.init", "trained", "controls.scratch_epoch2.init"),
    ("controls.random_init_bn.batchnorm", "recomputed", "controls.random_init_bn.batchnorm"),
    ("student_recipe.snapshot_epochs", [2, 1], "student_recipe.snapshot_epochs: must be increasing and unique"),
    ("student_recipe.snapshot_epochs", [2, 4], "student_recipe.snapshot_epochs: 4 is after the last epoch "
                                               "(optim.epochs: 3); give epochs in 1..3"),
    ("student_recipe.snapshot_epochs", [0], "student_recipe.snapshot_epochs[0]: must be >= 1"),
    ("trained_controls.shuffled.shuffle_labels", "yes", "trained_controls.shuffled.shuffle_labels"),
    ("control_seeds", [3, 5], "control_seeds: give distinct seeds among seeds [3, 4]"),
    ("control_seeds", [3, 3], "control_seeds: give distinct seeds among seeds [3, 4]"),
])
def test_bad_control_params_name_the_key_and_the_fix(tiny_folders, key: str, value, message: str) -> None:
    with pytest.raises(ParamsError, match=re.escape(message)):
        _params(_set(_raw(tiny_folders), key, value))


def test_default_params_have_the_ladder_and_keep_the_paper_roles() -> None:
    from kdinterp.measures.registry import load_params

    params = load_params(ROOT / "params.yaml")
    assert dict(params.paper_models) == {"teacher": "teacher", "scratch": "scratch", "ls": "ls", "kd": "kd"}
    controls = {m.name: m for m in study.models(params) if m.group.section == "controls" and m.seed == 0}
    assert [controls[n].recipe.batchnorm for n in ("random_init", "random_init_bn")] == ["as_is", "recalibrated"]
    assert controls["scratch_epoch2"].source.key == "scratch-0"
    assert params.trained_controls["shuffled"].shuffle_labels and not params.students["scratch"].shuffle_labels


def test_controls_run_at_the_control_seeds_and_students_at_every_seed() -> None:
    """The default: compared students at 5 seeds, controls (trained or not) at 3 (params.yaml, docs/instrument.md §4)."""
    from kdinterp.measures.registry import load_params

    params = load_params(ROOT / "params.yaml")
    seeds: dict[str, set[int]] = {}
    for model in study.models(params):
        seeds.setdefault(model.group.section, set()).add(model.seed)
    assert seeds["students"] == seeds["distilled"] == set(params.seeds) and len(params.seeds) == 5
    assert seeds["controls"] == seeds["trained_controls"] == set(params.control_seeds) == {0, 1, 2}
    shuffled = study.find(params, "shuffled", 0)
    assert shuffled.stage("train") == "train_control@shuffled-0" and shuffled.group.trained
    with pytest.raises(KeyError, match="no model 'shuffled' at seed 3"):
        study.find(params, "shuffled", 3)


def test_control_seeds_default_to_the_seeds(tiny_folders) -> None:
    raw = _raw(tiny_folders)
    del raw["control_seeds"]
    params = _params(raw)
    assert {m.seed for m in study.models(params) if m.group.control} == {3, 4}
