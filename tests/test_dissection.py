"""Network Dissection maths: exact thresholds, hand-computed IoUs, Lite's category-restricted term."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdinterp.core.config import from_mapping
from kdinterp.core.params import ParamsError
from kdinterp.dissection.broden import BrodenDataset, load_broden
from kdinterp.dissection.engine import (
    ActivePixels,
    active_pixels,
    bilinear_matrix,
    dissect,
    summary,
    tally_table,
    unit_masks,
    units_table,
)
from kdinterp.dissection.tables import DissectionResult
from kdinterp.dissection.tally import Tally
from kdinterp.dissection.thresholds import TopQuantile, quantile_level
from kdinterp.dissection.topimages import TopImages
from kdinterp.measures.dissection import DissectionParams
from tests.conftest import write_broden
from tests.lite_oracle import LiteRow, lite_tally


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
    tally.update(ActivePixels.from_masks(masks0), planes0, torch.tensor([[4]]))
    tally.update(ActivePixels.from_masks(masks1), planes1, torch.zeros(1, 0, dtype=torch.int64))
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
    tally.update(ActivePixels.from_masks(masks), torch.tensor([[[1, 0], [1, 0]]]), torch.tensor([[0]]))
    assert tally.intersection[0, 1] == 2 and tally.concept_area[1] == 2  # Lite's double counting
    assert tally.concept_area[0] == 0 and tally.intersection[0, 0] == 0  # scalar 0 is padding, not a label


@pytest.mark.parametrize("rule", ["lite", "netdissect"])
def test_batched_tally_equals_per_image_tally(rule: str) -> None:
    rng = torch.Generator().manual_seed(0)
    label_category = np.array([-1, 0, 0, 1, 1, 2])
    masks = torch.rand(6, 3, 20, generator=rng) > 0.6
    planes = torch.randint(0, 5, (6, 2, 20), generator=rng)
    scalars = torch.tensor([[5], [0], [5], [0], [0], [5]])
    whole, single = Tally(3, label_category, 3, rule=rule), Tally(3, label_category, 3, rule=rule)
    whole.update(ActivePixels.from_masks(masks), planes, scalars)
    for i in range(6):
        single.update(ActivePixels.from_masks(masks[i:i + 1]), planes[i:i + 1], scalars[i:i + 1])
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
    acts = torch.rand(3, 5, 4, 7, dtype=torch.float64)
    reference = torch.nn.functional.interpolate(acts, size=(13, 9), mode="bilinear", align_corners=False)
    ours = bilinear_matrix(4, 13) @ acts @ bilinear_matrix(7, 9).T
    assert (ours - reference).abs().max() < 1e-14


# --------------------------------------------------------------------- a hand-drawn 8x8 fixture

# Upsampling 2 -> 8 with align_corners=False: output x = 0..7 samples input x = (x + 0.5) / 4 - 0.5
# = -0.375, -0.125, 0.125, 0.375, 0.625, 0.875, 1.125, 1.375, clamped to [0, 1], so the weight of
# the second input pixel is W = [0, 0, .125, .375, .625, .875, 1, 1]. A 2x2 map that is 1 at the
# bottom right and 0 elsewhere becomes W[y] * W[x]; with threshold 0.3 the active pixels are those
# with W[y] * W[x] > 0.3 (e.g. .875 * .375 = .328 is in, .625 * .375 = .234 is out):
BOTTOM_RIGHT = """
........
........
........
.....###
....####
...#####
...#####
...#####
"""  # 3 + 4 + 5 + 5 + 5 = 22 active pixels


def _picture(text: str) -> np.ndarray:
    return np.array([[c == "#" for c in line] for line in text.strip().splitlines()])


def _hand_fixture() -> tuple[torch.Tensor, list[np.ndarray], list[list[int]]]:
    """Two 8x8 images, one unit. Labels: 1 red-c (color), 2 car (object), 3 wheel (part), 4 beach-s (scene).

    Image A: map [[0, 0], [0, 1]] (active: BOTTOM_RIGHT); car on rows 2-5 x cols 2-5 (16 px) in the
    object plane, wheel on rows 6-7 x cols 6-7 (4 px) in the part plane.
    Image B: map [[1, 0], [0, 0]] (active: BOTTOM_RIGHT rotated by 180 degrees, top left, 22 px);
    car on rows 6-7 x cols 6-7 (4 px), far from the active pixels; image-level scene beach-s.
    """
    acts = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]], [[[1.0, 0.0], [0.0, 0.0]]]])
    car_a, wheel_a, car_b = (np.zeros((8, 8), np.int64) for _ in range(3))
    car_a[2:6, 2:6], wheel_a[6:, 6:], car_b[6:, 6:] = 2, 3, 2
    return acts, [np.stack([car_a, wheel_a]), np.stack([car_b, np.zeros((8, 8), np.int64)])], [[], [4]]


def test_hand_drawn_mask_from_a_2x2_map() -> None:
    acts, _, _ = _hand_fixture()
    masks = unit_masks(acts, torch.tensor([0.3]), (8, 8)).reshape(2, 8, 8).numpy()
    assert (masks[0] == _picture(BOTTOM_RIGHT)).all()
    assert (masks[1] == _picture(BOTTOM_RIGHT)[::-1, ::-1]).all()


# Intersections: car = 6 (image A: row 3 col 5, row 4 cols 4-5, row 5 cols 3-5; image B: none),
# wheel = 4 (all of its pixels are active), beach = 22 (every active pixel of image B).
# Areas: car 16 + 4 = 20, wheel 4, beach 64 (the whole of image B).
# Unit area, lite rule: object 22 (A's active pixels touch car; B's do not, though B has a car),
# part 22 (A), scene 22 (B has an image-level scene), color 0.
# netdissect rule: object 22 + 22 = 44 (car is present in both images), part 22, scene 22.
HAND = {
    "lite": {"unit_area": [0, 22, 22, 22], "iou": [0, 6 / (22 + 20 - 6), 4 / (22 + 4 - 4), 22 / (22 + 64 - 22)]},
    "netdissect": {"unit_area": [0, 44, 22, 22], "iou": [0, 6 / (44 + 20 - 6), 4 / (22 + 4 - 4), 22 / (22 + 64 - 22)]},
}


def _active(acts: torch.Tensor) -> ActivePixels:
    return ActivePixels.from_masks(unit_masks(acts, torch.tensor([0.3]), (8, 8)))


@pytest.mark.parametrize("rule", ["lite", "netdissect"])
def test_hand_drawn_8x8_iou(rule: str) -> None:
    acts, planes, scalars = _hand_fixture()
    label_category = np.array([-1, 0, 1, 2, 3])
    tally = Tally(1, label_category, 4, rule=rule)
    for i in range(2):
        padded = torch.tensor([scalars[i] or [0]])
        tally.update(_active(acts[i:i + 1]), torch.from_numpy(planes[i]).reshape(1, 2, 64), padded)
    assert tally.intersection[0].tolist() == [0, 0, 6, 4, 22]
    assert tally.concept_area.tolist() == [0, 0, 20, 4, 64]
    assert tally.unit_area[0].tolist() == HAND[rule]["unit_area"]
    np.testing.assert_allclose(tally.iou()[0, 1:].numpy(), HAND[rule]["iou"], rtol=1e-15)
    oracle = lite_tally([LiteRow(f"{i}", planes[i], tuple(scalars[i])) for i in range(2)], acts.numpy(),
                        np.array([0.3]), label_category, 4, rule)
    np.testing.assert_allclose(oracle.iou[0, 1:], HAND[rule]["iou"], rtol=1e-9)


@pytest.mark.parametrize(("shape", "size"), [((3, 3), (9, 9)), ((7, 7), (112, 112)), ((7, 7), (113, 113)),
                                           ((4, 6), (17, 30)), ((6, 5), (3, 4)), ((1, 1), (5, 5))])
@pytest.mark.parametrize("max_upsampled", [1 << 24, 100])
def test_active_pixels_equal_thresholded_interpolate(shape, size, max_upsampled: int) -> None:
    """Blocks, padding of partial blocks, chunks, downsampling and negative thresholds (non-ReLU layers)."""
    gen = torch.Generator().manual_seed(sum(shape) + sum(size))
    acts = torch.randn(3, 5, *shape, generator=gen)
    thresholds = torch.tensor([-0.5, 0.0, 0.3, 0.8, 1.5], dtype=torch.float64)
    masks = active_pixels(acts, thresholds, size, max_upsampled=max_upsampled).dense(5)
    up = torch.nn.functional.interpolate(acts.double(), size=size, mode="bilinear", align_corners=False)
    gate = acts.flatten(2).amax(2).double() > thresholds  # Lite's gate
    expected = (up > thresholds[:, None, None]) & gate[:, :, None, None]
    assert torch.equal(masks, expected.flatten(2))


# --------------------------------------------------------------------- thresholds and top images

def test_quantile_levels() -> None:
    assert quantile_level(0.005) == pytest.approx(0.995)
    with pytest.raises(ValueError, match="outside"):
        quantile_level(1.5)


@pytest.mark.parametrize(("k", "batch"), [(3, 2), (4, 5), (20, 4)])
def test_top_images_are_the_exact_top_k_with_ties_to_the_lower_index(k: int, batch: int) -> None:
    gen = torch.Generator().manual_seed(k)
    acts = torch.randint(0, 4, (13, 5, 2, 2), generator=gen).float()  # many ties
    top = TopImages(k)
    for start in range(0, 13, batch):
        top.update(acts[start:start + batch])
    result = top.result()
    maxima = acts.amax((2, 3)).numpy()
    for unit in range(5):
        expected = sorted(range(13), key=lambda i: (-maxima[i, unit], i))[:k]
        assert result.image_index[unit].tolist() == expected
        np.testing.assert_array_equal(result.max_activation[unit], maxima[expected, unit])
        np.testing.assert_array_equal(result.maps[unit], acts[expected, unit].numpy())
    assert result.image_index.dtype == np.int64 and result.maps.dtype == np.float32


def test_top_images_round_trip_through_npz(tmp_path) -> None:
    top = TopImages(2)
    top.update(torch.rand(3, 4, 2, 2))
    with open(tmp_path / "top.npz", "wb") as f:
        top.result().save(f)
    with np.load(tmp_path / "top.npz") as npz:
        assert sorted(npz.files) == ["image_index", "maps", "max_activation"]
        assert npz["maps"].shape == (4, 2, 2, 2)


def _painter_probe(tmp_path, rows: int = 6):
    labels = {1: ("car", "object"), 2: ("beach-s", "scene")}
    rng = np.random.default_rng(1)
    spec = [{"image": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
             "object": [np.ones((8, 8), np.int64)], "scene": [2]} for _ in range(rows)]
    broden = load_broden(write_broden(tmp_path / "probe", labels, spec), ("object", "scene"))
    return BrodenDataset(broden, lambda img: torch.from_numpy(np.array(img)).permute(2, 0, 1).float())


def test_dissect_reports_each_units_top_images(tmp_path) -> None:
    dataset = _painter_probe(tmp_path)
    result = dissect(_Painter(), "layer4", dataset, quantile=0.1, batch_size=4, device=torch.device("cpu"),
                     top_images=3)
    top = result.top_images
    assert top.image_index.shape == (2, 3) and top.maps.shape == (2, 3, 8, 8)
    for unit in range(2):
        for j, i in enumerate(top.image_index[unit]):
            image = dataset[int(i)][0]
            np.testing.assert_array_equal(top.maps[unit, j], image[unit].numpy())
            assert top.max_activation[unit, j] == image[unit].max()


def test_dissect_refuses_a_layer_that_outputs_nan(tmp_path) -> None:
    class Broken(_Painter):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer4(x[:, :2] * float("nan"))

    with pytest.raises(ValueError, match=r"NaN or infinite on 4 image\(s\).*img0\.png"):
        dissect(Broken(), "layer4", _painter_probe(tmp_path), quantile=0.1, batch_size=4, device=torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("rule", ["lite", "netdissect"])
def test_cuda_dissection_equals_cpu(tmp_path, rule: str) -> None:
    dataset = _painter_probe(tmp_path, rows=10)
    cpu, cuda = (dissect(_Painter(), "layer4", dataset, quantile=0.1, batch_size=4, device=torch.device(d),
                         activation_rule=rule) for d in ("cpu", "cuda"))
    np.testing.assert_array_equal(cpu.thresholds, cuda.thresholds)
    for name in ("intersection", "unit_area", "concept_area"):
        np.testing.assert_array_equal(getattr(cpu, name), getattr(cuda, name))
    np.testing.assert_array_equal(cpu.top_images.image_index, cuda.top_images.image_index)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("quantile_convention", "lite", r"quantile_convention: unknown key"),  # removed (issue 15): exact only
    ("activation_rule", "gandissect", r"activation_rule"),
    ("top_images", 0, r"dissection\.top_images: must be >= 1"),
])
def test_dissection_params_refuse_unknown_options(key: str, value, message: str) -> None:
    spec = from_mapping(DissectionParams, {"broden_dir": "probe"}, "dissection")
    assert (spec.activation_rule, spec.top_images, spec.activations) == ("lite", 8, "auto")
    with pytest.raises(ParamsError, match=message):
        from_mapping(DissectionParams, {"broden_dir": "probe", key: value}, "dissection")
