"""DiffROAR (kdinterp.measures.diffroar.evaluator): masking on tiny images, the sign on a task with known signal pixels,
determinism, and the stage on a tiny trained model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdinterp.core import study
from kdinterp.core.config import ParamsError
from kdinterp.core.subsets import evenly_spread
from kdinterp.measures import diffroar as diffroar_measure
from kdinterp.measures.diffroar import DiffROARParams
from kdinterp.measures.diffroar.evaluator import (
    EvaluatorSettings,
    apply_keep,
    diffroar,
    keep_masks,
    pixel_order,
    train_evaluator,
)
from kdinterp.measures.registry import load_params

ROOT = Path(__file__).resolve().parents[1]

# 4 x 4 attribution with distinct values: rank r (0 = highest) sits where RANKS == r.
RANKS = torch.tensor([[5, 0, 9, 14], [3, 12, 7, 1], [15, 8, 2, 11], [6, 13, 10, 4]])


def test_top_and_bottom_k_keep_exactly_the_highest_and_lowest_pixels() -> None:
    maps = (16.0 - RANKS.float())[None]  # rank 0 has the highest attribution
    images = torch.arange(2 * 16, dtype=torch.float32).reshape(1, 2, 4, 4) + 100
    fill = torch.tensor([-1.0, -2.0])
    top, bottom = keep_masks(maps, 0.25)  # round(0.25 * 16) = 4 pixels kept
    assert torch.equal(top[0], RANKS < 4) and torch.equal(bottom[0], RANKS >= 12)
    for keep in (top, bottom):
        masked = apply_keep(images, keep, fill)
        for c in range(2):
            assert torch.equal(masked[0, c][keep[0]], images[0, c][keep[0]])
            assert torch.equal(masked[0, c][~keep[0]], torch.full((12,), fill[c].item()))
    assert pixel_order(maps)[0, :4].tolist() == [1, 7, 10, 4]  # row-major indices of ranks 0..3
    top, bottom = keep_masks(maps, 0.3)  # Shah et al.'s count: int(round(0.3 * 16)) = 5
    assert int(top.sum()) == int(bottom.sum()) == 5 and torch.equal(top[0], RANKS < 5)


def test_evenly_spread_takes_every_class_evenly() -> None:
    assert evenly_spread(12, 4).tolist() == [0, 4, 7, 11]
    assert evenly_spread(5, None).tolist() == evenly_spread(5, 9).tolist() == [0, 1, 2, 3, 4]
    assert evenly_spread(10, 4).tolist() == [0, 3, 6, 9]
    per_class = np.bincount(evenly_spread(1200, 120) // 50)  # the default val set: 24 classes x 50, sorted
    assert per_class.tolist() == [5] * 24


def test_ties_are_broken_by_row_major_index() -> None:
    top, bottom = keep_masks(torch.zeros(1, 4, 4), 0.5)
    expected = torch.arange(16).reshape(4, 4) < 8  # equal maps: the first 8 pixels rank highest
    assert torch.equal(top[0], expected) and torch.equal(bottom[0], ~expected)
    assert torch.equal(apply_keep(torch.ones(1, 3, 4, 4), top, 0.0).sum(dim=(1, 2, 3)), torch.tensor([24.0]))


@pytest.mark.parametrize("maps, k, match", [(torch.full((1, 2, 2), float("nan")), 0.5, "NaN"),
                                            (torch.zeros(2, 2), 0.5, r"\(N, H, W\)"),
                                            (torch.zeros(1, 2, 2), 0.0, r"in \(0, 1\]"),
                                            (torch.zeros(1, 2, 2), 1.5, r"in \(0, 1\]")])
def test_bad_maps_and_fractions_are_refused(maps, k, match) -> None:
    with pytest.raises(ValueError, match=match):
        keep_masks(maps, k)


def _signal_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """8 x 8 images of noise; the class (0/1) is the sign of the 8 pixels of column 0 (+-2)."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 2, (n,), generator=g)
    images = torch.randn(n, 3, 8, 8, generator=g)
    images[:, :, :, 0] = (2.0 * (2 * targets - 1).float())[:, None, None] + 0.1 * images[:, :, :, 0]
    signal = torch.zeros(8, 8)
    signal[:, 0] = 1.0
    pointing = signal + 0.5 * torch.rand(n, 8, 8, generator=g)  # signal pixels ranked first
    return images, targets, pointing


SETTINGS = EvaluatorSettings(epochs=6, batch_size=32, lr=0.01, seed=0, width=8)


def test_diffroar_is_positive_when_attributions_point_at_the_signal_and_negative_when_away() -> None:
    (xt, yt, at), (xv, yv, av) = _signal_task(384, 0), _signal_task(256, 1)
    toward = diffroar((xt, yt, at), (xv, yv, av), [0.125], 2, SETTINGS)[0]  # k = 8 of 64 pixels: the signal
    assert toward["acc_top"] > 0.95 and toward["acc_bottom"] < 0.7 and toward["diffroar"] > 0.3
    away = diffroar((xt, yt, 2.0 - at), (xv, yv, 2.0 - av), [0.125], 2, SETTINGS)[0]
    assert away["acc_bottom"] > 0.95 and away["diffroar"] < -0.3
    assert toward["diffroar"] == pytest.approx(toward["acc_top"] - toward["acc_bottom"])


def test_same_seed_same_bytes() -> None:
    train, val = _signal_task(128, 0), _signal_task(64, 1)
    runs = [json.dumps(diffroar(train, val, [0.125, 0.5], 2, SETTINGS)).encode() for _ in range(2)]
    assert runs[0] == runs[1]
    nets = [train_evaluator(train[0], train[1], 2, SETTINGS).state_dict() for _ in range(2)]
    assert all(torch.equal(nets[0][k], nets[1][k]) for k in nets[0])
    other = train_evaluator(train[0], train[1], 2, dataclasses.replace(SETTINGS, seed=1)).state_dict()
    assert not torch.equal(nets[0]["fc.weight"], other["fc.weight"])


@pytest.mark.parametrize("changes, match", [({"method": "lime"}, "method: unknown 'lime'"),
                                            ({"fractions": (0.0,)}, r"fractions\[0\]: must be in \(0, 1\)"),
                                            ({"fractions": (0.2, 0.2)}, "fractions: give one or more distinct"),
                                            ({"fractions": ()}, "fractions: give one or more distinct"),
                                            ({"epochs": 0}, "epochs: must be >= 1"),
                                            ({"lr": 0.0}, "lr: must be > 0")])
def test_params_are_range_checked(changes, match) -> None:
    with pytest.raises(ParamsError, match=match):
        DiffROARParams(**changes)


def test_layout_owns_the_output_path() -> None:
    kd = study.find(load_params(ROOT / "params.yaml"), "kd", 1)
    assert str(diffroar_measure.MEASURE.path(study.Layout(), kd, diffroar_measure.SUMMARY)) == "outputs/diffroar/kd-1/summary.json"
    assert kd.stage("diffroar") == "diffroar_distilled@kd-1"
    from kdinterp.measures.registry import stage_modules

    assert stage_modules()["diffroar"] == "kdinterp.measures.diffroar.compute"


def test_stage_writes_the_summary_deterministically(tiny_folders, tmp_path) -> None:
    from kdinterp.measures.diffroar import compute as stage
    from kdinterp.stages import training
    from tests.test_stages import tiny_params

    params = tiny_params(tiny_folders)
    params = params.with_section("diffroar", DiffROARParams(fractions=(0.25, 0.5), epochs=1, batch_size=8, width=4,
                                                           train_images=12))
    layout = study.Layout(tmp_path / "outputs")
    model = study.find(params, "scratch", params.seeds[0])
    training.train(params, model, layout)
    report = stage.diffroar_model(params, model, layout).to_json()
    path = diffroar_measure.MEASURE.path(layout, model, diffroar_measure.SUMMARY)
    first = path.read_bytes()
    assert json.loads(first) == report and report["seed"] == model.seed and report["num_train"] == 12
    assert set(report["by_k"]) == {"0.25", "0.5"} and report["num_val"] == 12 and len(report["fill"]) == 3
    for row in report["by_k"].values():
        assert 0.0 <= row["acc_top"] <= 1.0 and 0.0 <= row["acc_bottom"] <= 1.0
        assert row["diffroar"] == pytest.approx(row["acc_top"] - row["acc_bottom"])
    stage.diffroar_model(params, model, layout)
    assert path.read_bytes() == first
