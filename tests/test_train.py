"""Training: resumable with identical results, refuses stale checkpoints, stops on a NaN loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdinterp.core.params import DataParams, ModelParams, OptimParams
from kdinterp.training import train
from kdinterp.training.data import build_transform, eval_loader, load_dataset, make_loader
from kdinterp.training.distill import Vanilla
from kdinterp.training.folders import image_folder
from kdinterp.training.memory_data import InMemoryImages
from kdinterp.training.models import build_model
from kdinterp.training.train import NonFiniteLossError, fit, lr_factor

SPEC = ModelParams("resnet10", width=4, small_input=True)
OPTIM = OptimParams(epochs=3, batch_size=8, lr=0.05)


def _data(folders: dict[str, Path]) -> DataParams:
    return DataParams(train_dir=str(folders["train"]), val_dir=str(folders["val"]), image_size=16,
                      augment="crop_flip", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _run(folders, checkpoints: Path, fingerprint: str = "f", in_memory: bool = False) -> tuple[Vanilla, list[dict]]:
    torch.manual_seed(0)
    distiller = Vanilla(build_model(SPEC, 3))
    if in_memory:
        train_set = load_dataset(_data(folders), train=True)
        assert isinstance(train_set, InMemoryImages)
    else:
        train_set = image_folder(folders["train"], build_transform(_data(folders), train=True))
    history = fit(distiller, train_set, None, OPTIM, seed=3, checkpoint_dir=checkpoints, fingerprint=fingerprint,
                  device=torch.device("cpu"))
    return distiller, history


@pytest.mark.parametrize("in_memory", [False, True], ids=["files", "in_memory"])
def test_killed_run_resumes_to_the_same_weights(tiny_folders, tmp_path: Path, monkeypatch, in_memory: bool) -> None:
    reference, _ = _run(tiny_folders, tmp_path / "a", in_memory=in_memory)
    real_epoch = train.train_one_epoch

    def dies_in_third_epoch(distiller, loader, optimizer, epoch, *args):
        if epoch == 2:
            raise KeyboardInterrupt  # killed mid-epoch, after two checkpoints
        return real_epoch(distiller, loader, optimizer, epoch, *args)

    monkeypatch.setattr(train, "train_one_epoch", dies_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_folders, tmp_path / "b", in_memory=in_memory)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["epoch"] == 2
    monkeypatch.setattr(train, "train_one_epoch", real_epoch)
    resumed, history = _run(tiny_folders, tmp_path / "b", in_memory=in_memory)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_two_runs_write_byte_identical_checkpoints(tiny_folders, tmp_path: Path) -> None:
    # DVC records the checkpoint's hash in dvc.lock: a fresh clone must not change it.
    _run(tiny_folders, tmp_path / "a")
    _run(tiny_folders, tmp_path / "b")
    assert (tmp_path / "a" / "last.pt").read_bytes() == (tmp_path / "b" / "last.pt").read_bytes()


def test_in_memory_runs_are_deterministic(tiny_folders, tmp_path: Path) -> None:
    first, history = _run(tiny_folders, tmp_path / "a", in_memory=True)
    second, again = _run(tiny_folders, tmp_path / "b", in_memory=True)
    assert history == again
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert (tmp_path / "a" / "last.pt").read_bytes() == (tmp_path / "b" / "last.pt").read_bytes()
    files, _ = _run(tiny_folders, tmp_path / "c")  # other augmentation draws: other weights
    assert not torch.equal(files.state_dict()["student.fc.weight"], first.state_dict()["student.fc.weight"])


def test_top1_on_in_memory_val_data_equals_the_file_loader(tiny_folders, tmp_path: Path) -> None:
    data = _data(tiny_folders)
    torch.manual_seed(0)
    model = build_model(SPEC, 3)
    files = make_loader(image_folder(data.val_dir, build_transform(data, train=False)), 5, shuffle=False)
    memory = eval_loader(load_dataset(data, train=False), 5)
    assert train.top1(model, memory, torch.device("cpu")) == train.top1(model, files, torch.device("cpu"))
    for val in (memory, load_dataset(data, train=False)):  # batches, or the data set (fit batches it)
        history = fit(Vanilla(model), load_dataset(data, train=True), val, OptimParams(epochs=1, batch_size=8, lr=0.05),
                      seed=0, checkpoint_dir=tmp_path / str(type(val).__name__), fingerprint="f",
                      device=torch.device("cpu"), eval_batch_size=5)
        assert history[0]["val_top1"] == train.top1(model, files, torch.device("cpu"))


def test_checkpoint_of_another_configuration_is_ignored(tiny_folders, tmp_path: Path) -> None:
    _run(tiny_folders, tmp_path / "c", fingerprint="old")
    _, history = _run(tiny_folders, tmp_path / "c", fingerprint="new")
    assert len(history) == 3  # trained all epochs again instead of resuming a finished run


def test_nan_loss_stops_with_epoch_and_step(tiny_folders, tmp_path: Path) -> None:
    class Broken(Vanilla):
        def forward_train(self, images, targets, indices):
            logits, terms = super().forward_train(images, targets, indices)
            return logits, {"loss_ce": terms["loss_ce"] * float("nan")}

    torch.manual_seed(0)
    train_set = image_folder(tiny_folders["train"], build_transform(_data(tiny_folders), train=True))
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 0: loss is nan \(loss_ce=nan\)"):
        fit(Broken(build_model(SPEC, 3)), train_set, None, OPTIM, seed=0, checkpoint_dir=tmp_path,
            fingerprint="f", device=torch.device("cpu"))


def test_schedules() -> None:
    cosine = lr_factor(OptimParams(epochs=4, batch_size=1, lr=1.0))
    assert [round(cosine(e), 4) for e in range(4)] == [1.0, 0.8536, 0.5, 0.1464]
    steps = lr_factor(OptimParams(epochs=4, batch_size=1, lr=1.0, schedule="multistep", milestones=(1, 3)))
    assert [steps(e) for e in range(4)] == [1.0, 0.1, 0.1, pytest.approx(0.01)]
