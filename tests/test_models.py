"""Models are torchvision ResNets; model files load weights only and refuse the wrong architecture."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torchvision

from kdinterp.core.params import ModelParams
from kdinterp.measures.registry import load_params
from kdinterp.training.hooks import retain_layer
from kdinterp.training.models import CheckpointError, build_model, load_model, save_model

ROOT = Path(__file__).resolve().parents[1]


def test_width_64_without_small_stem_is_torchvision_resnet18() -> None:
    ours = build_model(ModelParams("resnet18"), 10)
    reference = torchvision.models.resnet18(num_classes=10)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}


@pytest.mark.parametrize("name", ["teacher", "scratch"])
def test_default_models_keep_a_4x4_layer4_on_probe_images(name: str) -> None:
    params = load_params(ROOT / "params.yaml")
    spec = params.teachers[name].model if name in params.teachers else params.student_recipe.model
    model = build_model(spec, 24).eval()
    with retain_layer(model, "layer4") as layer4, torch.no_grad():
        logits = model(torch.zeros(2, 3, params.world.probe_image_size, params.world.probe_image_size))
    assert logits.shape == (2, 24)
    assert layer4.get().shape[1] == 8 * spec.width and layer4.get().shape[2:] == (4, 4)


def test_save_load_round_trip_is_exact(tmp_path: Path) -> None:
    spec = ModelParams("resnet10", width=8, small_input=True)
    model = build_model(spec, 5).eval()
    save_model(model, tmp_path / "m.safetensors", spec, list("abcde"), info={"method": "ce"})
    loaded, header = load_model(tmp_path / "m.safetensors", spec, num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), loaded(x))
    assert header["classes"] == list("abcde") and header["info"] == {"method": "ce"}


def test_wrong_architecture_and_class_count_are_refused(tmp_path: Path) -> None:
    spec = ModelParams("resnet10", width=8, small_input=True)
    save_model(build_model(spec, 5), tmp_path / "m.safetensors", spec, list("abcde"))
    with pytest.raises(CheckpointError, match=r"holds resnet10 \(width 8, small-input stem\), but resnet18"):
        load_model(tmp_path / "m.safetensors", ModelParams("resnet18", width=8, small_input=True))
    with pytest.raises(CheckpointError, match="has 5 classes, but the data set has 7"):
        load_model(tmp_path / "m.safetensors", spec, num_classes=7)


def test_a_pickle_is_not_unpickled(tmp_path: Path) -> None:
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CheckpointError, match="not a safetensors model file"):
        load_model(path)


def test_missing_model_file_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="model file not found"):
        load_model(tmp_path / "absent.safetensors")
