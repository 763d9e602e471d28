"""profiles/paper.yaml end to end: `dvc repro` of its stages on tiny ImageNet- and broden1_224-format fixtures.

The project is this checkout's pipeline (tests/tiny_study.py's copy_checkout and init_project) with
the real profile applied by kdinterp.workflow.profiles, and three fixtures in the places the profile names:
a 3-class ImageFolder of 224 px images (data/imagenet/{train,val}), a 10-image Broden directory in
the broden1_224 layout (data/broden1_224: 224 px JPEGs, 112 px segmentation PNGs, every category),
and a torchvision resnet34 state_dict with random weights (pretrained/resnet34-b627a593.pth).
The profile's architectures (torchvision ResNet-34 teacher, ResNet-18 students, width 64) and its
224 px are kept; only the cost is cut (OVERRIDES, DROPPED): the teacher and the KD student, one seed,
one step, and every stage up to `validate` and `similarity` (`figures` needs the scratch and LS roles
too, three more models; it and `report` read only outputs/, and tests/test_end_to_end.py runs both).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from safetensors.torch import load_file

from kdinterp.measures import dissection, evaluation
from tests.conftest import run_dvc, tool_env, write_broden, write_image_folder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["n01440764", "n01443537", "n01484850"]  # ImageNet-style WordNet ids: sorted = logit order
WEIGHTS = "pretrained/resnet34-b627a593.pth"
#: What the test changes after applying the profile, all of it cost on 2 CPU cores: one seed, one
#: epoch of one batch (the 9 training images), no loader workers (8 processes on 2 cores only add
#: start-up time), the main dissection quantile only and a short probe bootstrap. And lr: one SGD
#: step at the paper's 0.1 from scratch gives logits of ~1e3 under eval-mode BatchNorm, so every
#: class-mean non-target probability is exactly 0 and the similarity measures are undefined (NaN).
#: Architectures, 224 px, augmentation, normalisation, schedule, KD and dissection settings stay the profile's.
OVERRIDES = {"seeds": [0], "control_seeds": [0],
             "data": {"num_workers": 0, "eval_batch_size": 8},
             "student_recipe": {"optim": {"epochs": 1, "batch_size": 9, "lr": 0.001}, "snapshot_epochs": []},
             "dissection": {"batch_size": 5, "device": "cpu",
                            "sensitivity": {"quantiles": [0.005], "rotation_seed": None, "bootstrap_replicates": 20,
                                            "bootstrap_blocks": 5}}}
#: Models the test drops: each adds a train, an evaluate and a dissect stage, 40-60 s on 2 shared cores
#: (each stage's `kdinterp` spends 7-19 s importing torch and torchvision). Students trained from labels
#: and controls run the same stage code as the KD student (tests/test_end_to_end.py covers every group).
DROPPED = {"students": ["scratch", "ls"], "trained_controls": ["shuffled"], "controls": ["random_init", "random_init_bn", "scratch_epoch2", "scratch_epoch4"],
           "paper_models": ["scratch", "ls"]}
LABELS = {1: ("red", "color"), 2: ("dog", "object"), 3: ("leg", "part"), 4: ("wood", "material"),
          5: ("street", "scene"), 6: ("striped", "texture")}


def _broden_rows(count: int, seed: int = 0) -> list[dict]:
    """``count`` broden1_224 rows: a 224 px image, pixel labels as 112 px maps, scene and texture per image."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        row: dict = {"image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8), "scene": [5], "texture": [6]}
        for number, (_, category) in LABELS.items():
            if category in ("scene", "texture"):
                continue
            mask = np.zeros((112, 112), dtype=np.int64)
            top, left = rng.integers(0, 80, 2)
            mask[top:top + 32, left:left + 32] = number
            row[category] = [mask]
        rows.append(row)
    return rows


def _deep_update(base: dict, overlay: dict) -> None:
    for key, value in overlay.items():
        if isinstance(value, dict):
            _deep_update(base.setdefault(key, {}), value)
        else:
            base[key] = value


def _write_weights(path: Path, seed: int) -> dict[str, torch.Tensor]:
    """A torchvision resnet34 state_dict for the fixture's classes, random weights; returns it."""
    torch.manual_seed(seed)
    state = torchvision.models.resnet34(num_classes=len(CLASSES)).state_dict()
    torch.save(state, path)
    return state


def make_paper_project(root: Path) -> Path:
    """Write the project into ``root`` (created): checkout, profile + OVERRIDES, fixtures, git and DVC."""
    from kdinterp.workflow.profiles import apply_profile
    from tests.tiny_study import copy_checkout, init_project

    copy_checkout(root)
    apply_profile(ROOT / "profiles" / "paper.yaml", root / "params.yaml")
    params = yaml.safe_load((root / "params.yaml").read_text())
    _deep_update(params, OVERRIDES)
    for section, names in DROPPED.items():
        for name in names:
            del params[section][name]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_image_folder(root / params["data"]["train_dir"], CLASSES, 3, size=224, seed=0)
    write_image_folder(root / params["data"]["val_dir"], CLASSES, 2, size=224, seed=1)
    write_broden(root / params["dissection"]["broden_dir"], LABELS, _broden_rows(10), image_size=224, seg_size=112,
                 suffix="jpg")
    _write_weights(root / params["teachers"]["teacher"]["weights"], seed=0)
    return init_project(root, tool_env())


@pytest.fixture(scope="module")
def paper_project(tmp_path_factory) -> Path:
    """The paper profile's project after `dvc repro validate similarity` (every stage that reads the data)."""
    root = make_paper_project(tmp_path_factory.mktemp("paper") / "study")
    run_dvc(root, "repro", "validate", "similarity")
    return root


def test_paper_profile_runs_end_to_end_on_format_fixtures(paper_project: Path) -> None:
    from kdinterp.core import study
    from kdinterp.measures.registry import load_params
    from kdinterp.training.models import read_header

    root = paper_project
    params = load_params(root / "params.yaml")
    assert (params.data.image_size, params.data.augment, params.data.world_file) == (224, "imagenet", None)
    layout = study.Layout(root / "outputs")
    models = study.models(params)
    assert [m.key for m in models] == ["teacher", "kd-0"]

    # The teacher is the file's tensors, in the study's layout, with a trained model's header.
    teacher = study.find(params, "teacher")
    source = root / WEIGHTS
    imported = load_file(str(layout.model_file(teacher)))
    expected = torch.load(source, weights_only=True)
    assert imported.keys() == expected.keys()
    assert all(torch.equal(imported[k], expected[k]) for k in expected)
    header = read_header(layout.model_file(teacher))
    assert header["model"] == {"arch": "resnet34", "width": 64, "small_input": False}
    assert header["classes"] == CLASSES
    assert header["info"]["method"] == "imported" and header["info"]["seed"] == 0
    assert header["info"]["weights_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    kd = read_header(layout.model_file(study.find(params, "kd", 0)))
    assert kd["model"] == {"arch": "resnet18", "width": 64, "small_input": False}
    assert kd["info"]["teacher_sha256"] == hashlib.sha256(layout.model_file(teacher).read_bytes()).hexdigest()
    assert (kd["info"]["temperature"], kd["info"]["alpha"]) == (4.0, 0.5)

    # Every model: metrics on the 6 val images, and a dissection of layer4 on the 10 probe images at 224 px.
    for model in models:
        metrics = yaml.safe_load(evaluation.MEASURE.path(layout, model, evaluation.METRICS).read_text())
        assert 0.0 <= metrics["top1"] <= 1.0, model.key
        summary = yaml.safe_load(dissection.MEASURE.path(layout, model, dissection.SUMMARY).read_text())
        assert (summary["num_units"], summary["num_images"], summary["quantile"], summary["iou_threshold"]) == (
            512, 10, 0.005, 0.05), model.key
        with np.load(dissection.MEASURE.path(layout, model, dissection.TOP_IMAGES)) as top:
            assert top["maps"].shape[0] == 512 and top["maps"].shape[2:] == (7, 7), model.key  # 224 px / 32
    data_report = yaml.safe_load((root / "outputs" / "validation" / "data.json").read_text())
    assert data_report["success"] and data_report["world_dir"] is None
    assert yaml.safe_load((root / "outputs" / "validation" / "dissection.json").read_text())["success"]
    similarity = yaml.safe_load((root / "outputs" / "similarity" / "summary.json").read_text())
    assert similarity["reference_teacher"] == "teacher" and set(similarity["models"]) == {"teacher", "kd-0"}
    assert "same_type_mass_chance" not in similarity  # no concept world: no object types to group classes by
    assert -1.0 <= similarity["models"]["kd-0"]["teacher_agreement"] <= 1.0


def test_the_weights_file_is_a_dvc_dependency_of_the_teacher(paper_project: Path, tmp_path: Path) -> None:
    import shutil

    root = Path(shutil.copytree(paper_project, tmp_path / "copy", symlinks=True))
    assert "train_teacher@teacher" not in run_dvc(root, "status", "train_teacher@teacher").stdout
    _write_weights(root / WEIGHTS, seed=1)
    status = run_dvc(root, "status", "train_teacher@teacher").stdout
    assert "train_teacher@teacher" in status and "pretrained" in status


def test_bad_weights_files_get_one_line_naming_the_param(paper_project: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from kdinterp.core import study
    from kdinterp.measures.registry import load_params
    from kdinterp.stages.training import train
    from kdinterp.training.models import CheckpointError

    monkeypatch.chdir(paper_project)
    params = load_params("params.yaml")
    teacher = study.find(params, "teacher")
    layout = study.Layout(tmp_path / "outputs")  # the project's outputs stay intact
    weights = Path(WEIGHTS)
    saved = weights.read_bytes()
    try:
        weights.unlink()
        with pytest.raises(CheckpointError, match=r"^teachers\.teacher\.weights: pretrained/resnet34-b627a593\.pth "
                                                  r"not found; put the torchvision weights file there"):
            train(params, teacher, layout)
        torch.save(torchvision.models.resnet18(num_classes=len(CLASSES)).state_dict(), weights)
        with pytest.raises(CheckpointError, match=r"^teachers\.teacher\.weights: .* does not fit resnet34 .*missing "
                                                  r"layer1\.2\.") as err:
            train(params, teacher, layout)
        assert "\n" not in str(err.value)
        torch.save({"model": torchvision.models.resnet34().state_dict(), "epoch": 3}, weights)
        with pytest.raises(CheckpointError, match="holds a dict, not a state_dict|not a weights-only"):
            train(params, teacher, layout)
        assert not layout.model_file(teacher).exists()
        # torchvision's resnet34-b627a593.pth predates BatchNorm's num_batches_tracked buffers: still imported.
        state = {k: v for k, v in _write_weights(weights, seed=2).items() if not k.endswith("num_batches_tracked")}
        torch.save(state, weights)
        train(params, teacher, layout)
        imported = load_file(str(layout.model_file(teacher)))
        assert all(torch.equal(imported[k], v) for k, v in state.items())
        assert int(imported["bn1.num_batches_tracked"]) == 0
    finally:
        weights.write_bytes(saved)
