"""Further tallies in the dissection passes: rotated-basis control, other quantiles, probe bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import write_broden

from kdinterp.dissection.broden import BrodenDataset, load_broden
from kdinterp.dissection.engine import Variant, dissect, units_table
from kdinterp.dissection.sensitivity import SENSITIVITY_COLUMNS, _iou, best_iou, probe_bootstrap, sensitivity_table
from kdinterp.dissection.variants import BlockCounts, random_rotation, rotate

UNITS = 6


class _Net(torch.nn.Module):
    """``layer4``: a seeded 3x3 stride-2 convolution, 6 units on a 4x4 map of 8x8 probe images."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer4 = torch.nn.Conv2d(3, UNITS, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(x).mean((2, 3))


@pytest.fixture
def probe(tmp_path) -> BrodenDataset:
    """16 images with object blobs (car, boat) painted bright, a scene on every other image."""
    labels = {1: ("car", "object"), 2: ("boat", "object"), 3: ("beach-s", "scene")}
    rng = np.random.default_rng(3)
    rows = []
    for i in range(16):
        image = rng.integers(0, 60, (8, 8, 3), dtype=np.uint8)
        objects = np.zeros((8, 8), np.int64)
        y, x = rng.integers(0, 5, 2)
        objects[y:y + 3, x:x + 3] = 1 + i % 2
        image[objects > 0, i % 3] = 230
        rows.append({"image": image, "object": [objects], "scene": [3] if i % 2 else []})
    broden = load_broden(write_broden(tmp_path / "probe", labels, rows), ("object", "scene"))
    return BrodenDataset(broden, lambda img: torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255)


def _dissect(dataset: BrodenDataset, variants=(), blocks: int = 0, quantile: float = 0.05):
    return dissect(_Net(), "layer4", dataset, quantile=quantile, batch_size=3, device=torch.device("cpu"),
                   variants=variants, blocks=blocks)


def test_identity_rotation_reproduces_the_unit_tally_exactly(probe) -> None:
    result = _dissect(probe, [Variant("rotated", 0.05, torch.eye(UNITS))])
    (rotated,) = result.variants
    np.testing.assert_array_equal(rotated.thresholds, result.thresholds)
    np.testing.assert_array_equal(rotated.iou, result.iou)
    assert result.iou.max() > 0.1  # the tally is not trivially empty


def test_a_random_rotation_changes_the_tally(probe) -> None:
    result = _dissect(probe, [Variant("rotated", 0.05, random_rotation(UNITS, seed=0))])
    (rotated,) = result.variants
    assert not np.allclose(rotated.thresholds, result.thresholds)
    assert not np.allclose(rotated.iou, result.iou)


def test_a_unit_variant_at_the_main_quantile_equals_the_main_tally(probe) -> None:
    result = _dissect(probe, [Variant("unit", 0.05), Variant("unit", 0.2)])
    same, wider = result.variants
    np.testing.assert_array_equal(same.iou, result.iou)
    assert (wider.thresholds < result.thresholds).all()  # a larger tail mass lowers every threshold


def test_rotation_is_orthogonal_and_mixes_units() -> None:
    q = random_rotation(5, seed=1)
    np.testing.assert_allclose((q @ q.T).numpy(), np.eye(5), atol=1e-5)
    np.testing.assert_array_equal(q.numpy(), random_rotation(5, seed=1).numpy())
    acts = torch.randn(2, 5, 3, 3)
    np.testing.assert_allclose(rotate(acts, q)[1, :, 2, 0].numpy(), (q @ acts[1, :, 2, 0]).numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="rotation is \\(5, 5\\), the layer has 4 units"):
        rotate(torch.zeros(1, 4, 2, 2), q)


def test_variant_needs_a_matrix_exactly_when_rotated() -> None:
    with pytest.raises(ValueError, match="needs a rotation matrix"):
        Variant("rotated", 0.005)
    with pytest.raises(ValueError, match="basis must be one of"):
        Variant("diagonal", 0.005)


@pytest.mark.parametrize("blocks", [2, 4, 6])
def test_block_counts_sum_to_the_main_tally(probe, blocks: int) -> None:
    result = _dissect(probe, blocks=blocks)
    split = result.blocks
    assert split.intersection.shape[0] == blocks and split.images.sum() == 16
    np.testing.assert_array_equal(split.intersection.sum(0), result.intersection)
    np.testing.assert_array_equal(split.unit_area.sum(0), result.unit_area)
    np.testing.assert_array_equal(split.concept_area.sum(0), result.concept_area)
    np.testing.assert_allclose(_iou(split.intersection.sum(0), split.unit_area.sum(0), split.concept_area.sum(0),
                                    result.label_category), result.iou, rtol=0, atol=1e-15)


def test_sensitivity_table_counts_detectors_as_the_units_table(probe) -> None:
    result = _dissect(probe, [Variant("unit", 0.1), Variant("rotated", 0.05, random_rotation(UNITS, 0))])
    grid = [0.02, 0.05, 0.2, 0.5]
    table = sensitivity_table(result, 0.05, grid)
    assert tuple(table.columns) == SENSITIVITY_COLUMNS
    assert table[["basis", "quantile"]].drop_duplicates().values.tolist() == [
        ["unit", 0.05], ["unit", 0.1], ["rotated", 0.05]]
    main = table[(table["basis"] == "unit") & (table["quantile"] == 0.05)]
    for threshold, detectors in zip(main["iou_threshold"], main["num_detectors"], strict=True):
        assert detectors == int(units_table(result, threshold)["detector"].sum())
    assert main["num_detectors"].is_monotonic_decreasing and main["num_detectors"].iloc[0] > 0
    best, _ = best_iou(result.iou, result.label_category)
    assert main["mean_best_iou"].iloc[0] == pytest.approx(best.mean())


def _blocks(intersections: list[list[list[int]]]) -> BlockCounts:
    """Blocks of a 1-unit, 1-concept ('object', label 1) tally with unit area 10 and concept area 10 per block."""
    inter = np.asarray(intersections, dtype=np.int64)          # (K, 1, 2): label 0 ignored, label 1
    k = inter.shape[0]
    return BlockCounts(inter, np.full((k, 1, 1), 10, np.int64), np.tile(np.array([0, 10], np.int64), (k, 1)),
                       np.ones(k, np.int64))


def test_probe_bootstrap_of_identical_blocks_has_no_spread() -> None:
    # every block: intersection 5 of areas 10 and 10 -> IoU 5 / 15 = 0.33 in every resampling
    report = probe_bootstrap(_blocks([[[0, 5]]] * 4), np.array([-1, 0]), 0.3, replicates=200, seed=0)
    assert report == {"replicates": 200, "blocks": 4, "mean": 1.0, "sd": 0.0, "low": 1.0, "high": 1.0}


def test_probe_bootstrap_spreads_a_borderline_detector() -> None:
    # blocks with IoU 0.5 and 0: the whole set's IoU (5 + 0) / (20 + 20 - 5) = 0.14, right at the threshold;
    # resamplings with more of the first block make it a detector, the others not
    blocks = _blocks([[[0, 5]], [[0, 0]]])
    report = probe_bootstrap(blocks, np.array([-1, 0]), 5 / 35, replicates=400, seed=0)
    assert 0.5 < report["mean"] < 0.9 and report["sd"] > 0.3 and (report["low"], report["high"]) == (0.0, 1.0)
    assert report == probe_bootstrap(blocks, np.array([-1, 0]), 5 / 35, replicates=400, seed=0)  # seeded
    with pytest.raises(ValueError, match=">= 2 blocks and replicates"):
        probe_bootstrap(blocks, np.array([-1, 0]), 0.1, replicates=1, seed=0)


@pytest.mark.parametrize("rotated", [True, False])
def test_the_rotated_calibrated_test_runs_only_when_asked(probe, rotated: bool) -> None:
    """``calibrated_rotated`` False skips the calibrated test in the rotated basis (the dissection measure asks for it
    only for the ladder's rotation roles); the unit-basis test is the same either way."""
    from kdinterp.dissection.calibrated import CalibratedOptions

    options = CalibratedOptions(permutations=99, splits=2)
    result = dissect(_Net(), "layer4", probe, quantile=0.05, batch_size=3, device=torch.device("cpu"),
                     variants=[Variant("rotated", 0.05, random_rotation(UNITS, 0))], calibrated=options,
                     calibrated_rotated=rotated)
    both = dissect(_Net(), "layer4", probe, quantile=0.05, batch_size=3, device=torch.device("cpu"),
                   variants=[Variant("rotated", 0.05, random_rotation(UNITS, 0))], calibrated=options)
    assert (result.calibrated_rotated is not None) == rotated and len(both.calibrated_rotated) == 2
    for mine, reference in zip(result.calibrated, both.calibrated, strict=True):
        assert np.array_equal(mine.p, reference.p) and np.array_equal(mine.detector, reference.detector)

