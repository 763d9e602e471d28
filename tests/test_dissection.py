"""Network Dissection maths: exact thresholds, hand-computed IoUs, Lite's category-restricted term."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdinterp.broden import BrodenDataset, load_broden
from kdinterp.dissection import bilinear_matrix, dissect, summary, tally_table, unit_masks, units_table
from kdinterp.dissection.tables import DissectionResult
from kdinterp.dissection.tally import Tally
from kdinterp.dissection.thresholds import TopQuantile
from tests.conftest import write_broden


@pytest.mark.parametrize("quantile", [0.005, 0.05, 0.3])
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_streaming_threshold_equals_numpy_quantile(quantile: float, chunk: int) -> None:
    values = torch.randn(5, 997).abs() ** 3
    stream = TopQuantile(5, 997, quantile)
    for start in range(0, 997, chunk):
        stream.update(values[:, start:start + chunk])
    expected = np.quantile(values.numpy().astype(np.float64), 1 - quantile, axis=1)
    np.testing.assert_allclose(stream.thresholds().numpy(), expected, rtol=1e-6)


def test_threshold_refuses_a_short_stream() -> None:
    stream = TopQuantile(2, 10, 0.1)
    stream.update(torch.ones(2, 9))
    with pytest.raises(RuntimeError, match="expected 10 values"):
        stream.thresholds()


def test_unit_masks_match_bilinear_half_pixel_upsampling() -> None:
    acts = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # (1, 1, 2, 2): left column 0, right 1
    masks = unit_masks(acts, torch.tensor([0.5]), (4, 4)).reshape(4, 4)
    # align_corners=False: output x = 0..3 samples input x = -0.25, 0.25, 0.75, 1.25 -> 0, .25, .75, 1
    assert masks.tolist() == [[False, False, True, True]] * 4


def _labels() -> dict[int, tuple[str, str]]:
    return {1: ("red-c", "color"), 2: ("car", "object"), 3: ("wheel", "part"), 4: ("beach-s", "scene")}


def test_tally_hand_computed_counts_and_iou() -> None:
    """Two 2x2 images, one unit. Every count below is worked out by hand in the comments."""
    label_category = np.array([-1, 0, 1, 2, 3])  # categories: color, object, part, scene
    tally = Tally(1, label_category, 4)
    # image 0: unit active on the top row; object plane has car on the left column,
    # part plane has wheel at bottom-left; image-level scene beach.
    masks0 = torch.tensor([[[True, True, False, False]]])
    planes0 = torch.tensor([[[2, 0, 2, 0], [0, 0, 3, 0]]])
    # image 1: unit active on one pixel that carries red; no scene.
    masks1 = torch.tensor([[[False, False, False, True]]])
    planes1 = torch.tensor([[[0, 0, 0, 1], [0, 0, 0, 0]]])
    tally.update(masks0, planes0, torch.tensor([[4]]))
    tally.update(masks1, planes1, torch.zeros(1, 0, dtype=torch.int64))
    # intersections: car 1 (pixel 0), wheel 0, beach 2 (both active pixels of image 0), red 1
    assert tally.intersection[0].tolist() == [0, 1, 1, 0, 2]
    # areas: car 2, wheel 1, beach 4 (whole image), red 1
    assert tally.concept_area.tolist() == [0, 1, 2, 1, 4]
    # unit area per category: color only image 1 (1 px); object image 0 (2 px, an active pixel on car);
    # part: no active pixel touches a part -> 0; scene: image 0 has a scene label -> 2
    assert tally.unit_area[0].tolist() == [1, 2, 0, 2]
    iou = tally.iou()[0].tolist()
    assert iou[1] == pytest.approx(1 / (1 + 1 - 1))   # red: 1 / 1
    assert iou[2] == pytest.approx(1 / (2 + 2 - 1))   # car: 1 / 3
    assert iou[3] == 0.0                              # wheel
    assert iou[4] == pytest.approx(2 / (2 + 4 - 2))   # beach: 2 / 4
    assert tally.num_images == 2


def test_tally_counts_a_label_in_two_planes_twice_and_ignores_label_zero_scalars() -> None:
    tally = Tally(1, np.array([-1, 0]), 1)
    masks = torch.tensor([[[True, False]]])
    tally.update(masks, torch.tensor([[[1, 0], [1, 0]]]), torch.tensor([[0]]))
    assert tally.intersection[0, 1] == 2 and tally.concept_area[1] == 2  # Lite's double counting
    assert tally.concept_area[0] == 0 and tally.intersection[0, 0] == 0  # scalar 0 is padding, not a label


def test_batched_tally_equals_per_image_tally() -> None:
    rng = torch.Generator().manual_seed(0)
    label_category = np.array([-1, 0, 0, 1, 1, 2])
    masks = torch.rand(6, 3, 20, generator=rng) > 0.6
    planes = torch.randint(0, 5, (6, 2, 20), generator=rng)
    scalars = torch.tensor([[5], [0], [5], [0], [0], [5]])
    whole, single = Tally(3, label_category, 3), Tally(3, label_category, 3)
    whole.update(masks, planes, scalars)
    for i in range(6):
        single.update(masks[i:i + 1], planes[i:i + 1], scalars[i:i + 1])
    for name in ("intersection", "unit_area", "concept_area"):
        assert torch.equal(getattr(whole, name), getattr(single, name)), name


def _result(iou: np.ndarray, label_category: np.ndarray, names: tuple[str, ...]) -> DissectionResult:
    units, labels = iou.shape
    return DissectionResult(layer="layer4", thresholds=np.zeros(units, np.float32),
                            intersection=(iou > 0).astype(np.int64), unit_area=np.ones((units, 2), np.int64),
                            concept_area=np.ones(labels, np.int64), iou=iou, label_names=names,
                            label_category=label_category, categories=("object", "scene"), num_images=3)


def test_units_table_picks_best_concept_and_flags_detectors_inclusively() -> None:
    names = ("", "car", "boat", "beach-s")
    iou = np.array([[0, 0.05, 0.02, 0.01],    # unit 0: car at exactly the threshold -> detector
                    [0, 0.01, 0.03, 0.04],    # unit 1: best is beach (scene) 0.04 -> not a detector
                    [0, 0.0, 0.0, 0.0]])      # unit 2: overlaps nothing
    result = _result(iou, np.array([-1, 0, 0, 1]), names)
    units = units_table(result, iou_threshold=0.05)
    assert units["concept"].tolist() == ["car", "beach-s", ""]
    assert units["category"].tolist()[:2] == ["object", "scene"]
    assert units["detector"].tolist() == [True, False, False]
    assert units["object_concept"].tolist() == ["car", "boat", ""]
    report = summary(units, result, quantile=0.005, iou_threshold=0.05, model="m")
    assert report["num_detectors"] == 1 and report["detectors"] == {"object": 1, "scene": 0}
    table = tally_table(result)
    assert set(zip(table["unit"], table["concept"])) == {(0, "car"), (0, "boat"), (0, "beach-s"),
                                                         (1, "car"), (1, "boat"), (1, "beach-s")}


class _Painter(torch.nn.Module):
    """A 'model' whose layer4 copies the red channel (unit 0) and the green channel (unit 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer4 = torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(x[:, :2])


def test_dissect_finds_a_unit_that_paints_its_concept(tmp_path) -> None:
    """Unit 0 fires exactly on the 'car' pixels of each image, so its car IoU must be 1."""
    labels = {1: ("car", "object"), 2: ("beach-s", "scene")}
    rows = []
    rng = np.random.default_rng(0)
    for i in range(6):
        car = np.zeros((8, 8), np.int64)
        car[rng.integers(0, 6), rng.integers(0, 6):][:2] = 1
        image = np.zeros((8, 8, 3), np.uint8)
        image[..., 0] = np.where(car == 1, 200 + i, 0)
        image[..., 1] = rng.integers(0, 50, (8, 8))
        rows.append({"image": image, "object": [car], "scene": [2] if i % 2 else []})
    broden = load_broden(write_broden(tmp_path / "probe", labels, rows), ("object", "scene"))
    dataset = BrodenDataset(broden, lambda img: torch.from_numpy(np.array(img)).permute(2, 0, 1).float())
    car_fraction = sum(int((r["object"][0] == 1).sum()) for r in rows) / (6 * 64)
    result = dissect(_Painter(), "layer4", dataset, quantile=car_fraction * 0.999, batch_size=4,
                     device=torch.device("cpu"))
    assert result.iou[0, 1] == pytest.approx(1.0)
    assert result.iou[1, 1] < 0.5


def test_separable_upsampling_equals_interpolate() -> None:
    acts = torch.rand(3, 5, 4, 7)
    reference = torch.nn.functional.interpolate(acts, size=(13, 9), mode="bilinear", align_corners=False)
    ours = bilinear_matrix(4, 13) @ acts @ bilinear_matrix(7, 9).T
    assert (ours - reference).abs().max() < 1e-6
