"""Saliency maps (Captum), five-band scores (Tjoa & Guan 2020), mass shares, and stage saliency_*@."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from kdinterp.core import study

# --------------------------------------------------------------------------- five-band scores on 8x8 maps
from kdinterp.measures import saliency
from kdinterp.measures.registry import parse_params
from kdinterp.measures.saliency import attribution, five_band


def _truth() -> tuple[np.ndarray, np.ndarray]:
    """An 8x8 ground truth: object in rows 2-5, columns 2-5 (16 px); discriminative part rows 2-3 (8 px)."""
    obj, part = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    obj[2:6, 2:6] = True
    part[2:4, 2:6] = True
    return obj, part


def test_ground_truth_puts_background_object_and_part_in_bands_0_1_2() -> None:
    obj, part = _truth()
    bands = five_band.band(five_band.ground_truth(obj, part))
    assert (bands[~obj] == 0).all() and (bands[obj & ~part] == 1).all() and (bands[part] == 2).all()


def test_band_edges_follow_the_reference_thresholds() -> None:
    x = np.array([-1.0, -0.7, -0.5, -0.3, 0.0, 0.3, 0.31, 0.7, 0.71, 1.0])
    assert five_band.band(x).tolist() == [-2, -2, -1, -1, 0, 0, 1, 1, 2, 2]


def test_a_perfect_map_scores_one_and_no_false_positives() -> None:
    obj, part = _truth()
    truth = five_band.ground_truth(obj, part)[None]
    s = five_band.five_band_scores(3.0 * truth, truth)  # scale does not matter: h / max|h|
    assert s["pixel_acc"][0] == 1.0 and s["fpr"][0] == 0.0
    assert s["precision"][0] == pytest.approx(1.0, abs=1e-6) and s["recall"][0] == pytest.approx(1.0, abs=1e-6)


def test_known_counts_of_a_hand_made_map() -> None:
    """Map: the part's 8 px at 1.0 (band 2, right); the rest of the object 0 (band 0: 8 FN); 4 background px at
    0.5 (band 1: 4 FP); and 2 object px at 1.0 where the truth is band 1 (wrong band: FP, not TP)."""
    obj, part = _truth()
    truth = five_band.ground_truth(obj, part)
    h = np.zeros((8, 8))
    h[2:4, 2:6] = 1.0  # the part: 8 TP
    h[0, 0:4] = 0.5  # background: 4 FP
    h[4, 2:4] = 1.0  # object (band 1) marked band 2: 2 FP
    s = {k: v[0] for k, v in five_band.five_band_scores(h[None], truth[None]).items()}
    tp, fp, fn, tn = 8, 4 + 2, 16 - 8 - 2, 64 - 16 - 4
    assert s["pixel_acc"] == pytest.approx((8 + tn) / 64)
    assert s["precision"] == pytest.approx(tp / (tp + fp + 1e-6))
    assert s["recall"] == pytest.approx(tp / (tp + fn + 1e-6))
    assert s["fpr"] == pytest.approx(fp / (fp + tn + 1e-6))


def test_an_all_zero_map_predicts_background_everywhere() -> None:
    obj, part = _truth()
    s = five_band.five_band_scores(np.zeros((1, 8, 8)), five_band.ground_truth(obj, part)[None])
    assert s["pixel_acc"][0] == pytest.approx(48 / 64) and s["recall"][0] == 0 and s["fpr"][0] == 0


def test_mass_share() -> None:
    obj, _ = _truth()
    maps = np.zeros((3, 8, 8))
    maps[0][obj] = 1.0  # all inside
    maps[1] = 1.0  # uniform: 16/64 inside
    shares = five_band.mass_share(maps, np.stack([obj] * 3))
    assert shares[0] == 1.0 and shares[1] == pytest.approx(0.25) and math.isnan(shares[2])
    with pytest.raises(ValueError, match="non-negative"):
        five_band.mass_share(-maps, np.stack([obj] * 3))


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="4 increasing"):
        five_band.band(np.zeros(3), (0.3, 0.1, 0.5, 0.7))
    obj, part = _truth()
    with pytest.raises(ValueError, match="inside the object"):
        five_band.ground_truth(part, obj)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        five_band.five_band_scores(np.zeros((8, 8)), np.zeros((8, 8)))


# --------------------------------------------------------------------------- Captum attributions


class OneCell(nn.Module):
    """layer4 (4x4): channel c = ReLU(mean of input channel c over a 4x4 block); logit 1 = 3 * layer4[:, 0, 1, 2]."""

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 2, kernel_size=1, bias=False)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[0, 0] = 1.0
            conv.weight[1, 1] = 1.0
        self.layer4 = nn.Sequential(conv, nn.AvgPool2d(4), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cell = self.layer4(x)[:, 0, 1, 2]
        return torch.stack([torch.zeros_like(cell), 3.0 * cell], 1)


def _one_cell_input(also_at_origin: bool = False) -> torch.Tensor:
    """Input channel 0 is 1 on the block of layer4 cell (1, 2) (and of (0, 0)); channel 1 (unread) is 1 everywhere."""
    x = torch.zeros(1, 3, 16, 16)
    x[:, 0, 4:8, 8:12] = 1.0
    if also_at_origin:
        x[:, 0, 0:4, 0:4] = 1.0
    x[:, 1] = 1.0
    return x


def test_grad_cam_puts_all_its_mass_on_the_one_cell_the_logit_reads() -> None:
    """Grad-CAM = ReLU(sum_c mean-gradient_c * A_c): the unread channel 1 (active everywhere) gets weight 0, and
    the read channel 0 is active at cell (1, 2) only, so all the mass is there (at layer4's 4x4 resolution), and
    the bilinear upsampling (align_corners=False, scale 4) spreads it over that cell's block and 2 px around it."""
    from captum.attr import LayerGradCam

    model, x = OneCell(), _one_cell_input()
    raw = LayerGradCam(model, model.layer4).attribute(x, target=1, relu_attributions=True)[0, 0].detach()
    assert raw[1, 2] == pytest.approx(3.0 / 16) and raw.sum() == raw[1, 2]
    cam = attribution.attribute(model, x, torch.tensor([1]), "grad_cam")
    assert cam.shape == (1, 16, 16) and cam.dtype == torch.float32 and (cam >= 0).all()
    reach = torch.zeros(16, 16, dtype=torch.bool)
    reach[2:10, 6:14] = True
    assert cam[0, ~reach].max() == 0 and cam[0, 4:8, 8:12].min() > 0
    # Grad-CAM weighs channels, not cells: where the read channel also fires (cell (0, 0)), the map marks it too.
    twice = LayerGradCam(model, model.layer4).attribute(_one_cell_input(True), target=1, relu_attributions=True).detach()
    assert twice[0, 0, 0, 0] == pytest.approx(3.0 / 16)


@pytest.mark.parametrize("method", saliency.METHODS)
def test_every_method_returns_non_negative_input_sized_maps(method: str) -> None:
    from kdinterp.core.params import ModelParams
    from kdinterp.training.models import build_model

    torch.manual_seed(0)
    net = build_model(ModelParams("resnet10", width=4, small_input=True), 3)
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    maps = attribution.attribute(net, x, y, method, smoothgrad_samples=2)
    assert maps.shape == (3, 16, 16) and maps.dtype == torch.float32 and (maps >= 0).all() and maps.sum() > 0


def test_input_gradient_is_the_absolute_logit_gradient_summed_over_channels() -> None:
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    x = torch.randn(1, 3, 4, 4)
    w = lin[1].weight[1].detach().reshape(3, 4, 4)
    assert attribution.attribute(lin, x, torch.tensor([1]), "input_gradient")[0].allclose(w.abs().sum(0))
    assert attribution.attribute(lin, x, torch.tensor([1]), "input_x_gradient")[0].allclose((x[0] * w).sum(0).abs())


def test_activation_map_and_overlay() -> None:
    model, x = OneCell(), _one_cell_input()
    act = attribution.activation_map(model, x)  # channel mean at 4x4: 1 on cell (1, 2), 0.5 elsewhere; then bilinear x4
    assert act.shape == (1, 16, 16) and act[0, 0, 0] == pytest.approx(0.5)
    assert act[0, 6, 10] == pytest.approx(0.5 + 0.5 * 0.875 ** 2) and act.max().item() == pytest.approx(act[0, 6, 10].item())
    out = attribution.overlay(x, act)
    assert out.shape == x.shape and (out <= x + 1e-6).all() and (out >= 0.2 * x - 1e-6).all()
    with pytest.raises(ValueError, match="unknown saliency method 'lrp'"):
        attribution.attribute(model, x, torch.tensor([1]), "lrp")
    with pytest.raises(ValueError, match="no layer 'layer9'"):
        attribution.attribute(model, x, torch.tensor([1]), "grad_cam", layer="layer9")


# --------------------------------------------------------------------------- the stage on a tiny concept world


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from kdinterp.core.config import from_mapping
    from kdinterp.core.params import WorldParams
    from kdinterp.world.generate import generate_world
    from tests.tiny_study import TINY_WORLD

    root = tmp_path_factory.mktemp("world") / "concept_world"
    generate_world(from_mapping(WorldParams, TINY_WORLD, "world"), root, workers=1, progress=False)
    return root


def test_stage_writes_the_layout_files(tiny_world: Path, tmp_path: Path) -> None:
    import yaml

    from kdinterp.measures.saliency.compute import saliency_model
    from kdinterp.stages import training
    from tests.tiny_study import use_tiny_recipe

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["data"].update(train_dir=str(tiny_world / "train"), val_dir=str(tiny_world / "val"),
                       world_file=str(tiny_world / "world.json"), image_size=16)
    use_tiny_recipe(raw)
    raw["saliency"].update(ground_truth_dir=str(tiny_world / "saliency" / "val"), num_images=6, grid_images=3,
                           smoothgrad_samples=2)
    params = parse_params(raw)
    layout = study.Layout(tmp_path)
    model = study.find(params, "random_init", params.seeds[0])
    training.train(params, model, layout)  # a control: writes its initial weights, no training
    summary = saliency_model(params, model, layout)
    table = pd.read_csv(saliency.MEASURE.path(layout, model, saliency.FIVE_BAND))
    assert list(table.columns) == list(saliency.FIVE_BAND_COLUMNS) and list(table["method"]) == list(saliency.METHODS)
    assert (table["num_images"] == 6).all() and table[["pixel_acc", "fpr"]].apply(lambda c: c.between(0, 1)).all().all()
    written = json.loads(saliency.MEASURE.path(layout, model, saliency.SUMMARY).read_text())
    assert written == summary.to_json() and written["num_images"] == 6
    assert set(written["five_band"]) == set(saliency.METHODS)
    assert 0 <= written["object_mass"]["loss_gradient"] <= 1 and 0 <= written["object_mass"]["activation"] <= 1
    with np.load(saliency.MEASURE.path(layout, model, saliency.MAPS)) as maps:
        assert maps["images"].shape == (3, 3, 16, 16) and maps["images"].dtype == np.uint8
        assert maps["object"].shape == (3, 16, 16) and maps["object"].any()
        assert all(maps[k].shape == (3, 16, 16) for k in (*saliency.METHODS, "loss_gradient", "activation"))
        assert maps["index"].tolist() == [0, 6, 15]  # 3 of the 6 chosen of 16 val images, spread evenly
