"""The engine against the reference oracle (a per-image, per-unit port of Lite's tally loop).

Fixtures are random Broden-layout probe sets with every branch of the format: several categories,
two part planes, image-level scene and texture labels (a list of two, a repeated one), a PNG list
with an integer in it, a scene-0 row kept for its pixels, a scene-0-only row (dropped), empty
fields, and an image with only image-level labels as the first image units fire on (P-C5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdinterp.dissection.broden import BrodenDataset, load_broden
from kdinterp.dissection.engine import dissect, units_table
from tests.conftest import write_broden
from tests.lite_oracle import detectors, iter_rows, lite_tally

LABELS = {1: ("red-c", "color"), 2: ("blue-c", "color"), 3: ("green-c", "color"),
          4: ("car", "object"), 5: ("house", "object"), 6: ("tree", "object"), 7: ("boat", "object"),
          8: ("wheel", "part"), 9: ("roof", "part"), 10: ("door", "part"),
          11: ("wood", "material"), 12: ("brick", "material"),
          13: ("beach-s", "scene"), 14: ("street-s", "scene"), 15: ("forest-s", "scene"),
          16: ("striped", "texture"), 17: ("dotted", "texture")}
CATEGORIES = ("color", "object", "part", "material", "scene", "texture")
SEG, IMAGE, POOL, UNITS = 12, 24, 8, 8   # segmentation 12x12, images 24x24, layer maps 3x3


class _Layer(torch.nn.Module):
    """Batch-invariant 'layer4': 3x3 average pools of the image mixed per unit, then ReLU.

    Element-wise arithmetic only, so an image's maps do not depend on the batch it is in.
    """

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(3, UNITS, 1, 1, generator=g)
        self.bias = torch.randn(UNITS, 1, 1, generator=g) * 0.3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = F.avg_pool2d(x, POOL)
        return torch.relu(p[:, 0:1] * self.weight[0] + p[:, 1:2] * self.weight[1] + p[:, 2:3] * self.weight[2]
                          + self.bias)


class _Model(torch.nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        self.layer4 = _Layer(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(x).mean((2, 3))


def _blocks(rng: np.random.Generator, labels: list[int], count: int) -> np.ndarray:
    """A 12x12 label map of ``count`` random rectangles drawn from ``labels`` on background 0."""
    plane = np.zeros((SEG, SEG), np.int64)
    for _ in range(count):
        y, x = rng.integers(0, SEG - 2, 2)
        h, w = rng.integers(2, 7, 2)
        plane[y:y + h, x:x + w] = rng.choice(labels)
    return plane


def _rows(seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows: list[dict] = [
        # the first image has image-level labels only, and is bright so every unit fires on it (P-C5)
        {"image": np.full((IMAGE, IMAGE, 3), 250, np.uint8), "texture": [16, 17]},
        {"color": [_blocks(rng, [1, 2, 3], 4)], "scene": [0]},   # scene 0 dropped, the row kept
        {"scene": [0]},                                          # nothing but scene 0: row dropped
        {"object": [_blocks(rng, [4, 5], 3)], "part": [_blocks(rng, [8, 9], 2), _blocks(rng, [10], 2)],
         "scene": [13]},                                         # two part planes
        {"material": [_blocks(rng, [11, 12], 3), 12], "scene": [14, 14]},  # integer in a PNG list; repeated scene
        {"texture": [17]},
    ]
    for _ in range(18):
        row = {}
        for category, labels, planes in (("color", [1, 2, 3], 1), ("object", [4, 5, 6, 7], 1),
                                         ("part", [8, 9, 10], 2), ("material", [11, 12], 1)):
            if rng.random() < 0.7:  # otherwise an empty field
                row[category] = [_blocks(rng, labels, int(rng.integers(1, 4))) for _ in range(planes)]
        if rng.random() < 0.6:
            row["scene"] = [int(rng.integers(13, 16))]
        if rng.random() < 0.3:
            row["texture"] = [int(x) for x in rng.choice([16, 17], int(rng.integers(1, 3)), replace=False)]
        if not row:
            row["scene"] = [15]
        row["image"] = rng.integers(0, 256, (IMAGE, IMAGE, 3), dtype=np.uint8)
        rows.append(row)
    return rows


def _to_tensor(img) -> torch.Tensor:
    return torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1) / 255.0


@pytest.fixture(scope="module", params=[0, 1])
def probe(request, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp(f"probe{request.param}")
    return write_broden(root, LABELS, _rows(request.param), image_size=IMAGE, seg_size=SEG)


def _features(model: _Model, dataset: BrodenDataset) -> np.ndarray:
    maps = [model.layer4(dataset[i][0][None])[0] for i in range(len(dataset))]  # one image at a time
    return torch.stack(maps).numpy()


@pytest.mark.parametrize("rule", ["lite", "netdissect"])
@pytest.mark.parametrize("seed", [9, 10])
def test_engine_equals_the_oracle(probe: Path, rule: str, seed: int) -> None:
    broden = load_broden(probe, CATEGORIES)
    dataset = BrodenDataset(broden, _to_tensor)
    model = _Model(seed=len(rule) + seed)
    result = dissect(model, "layer4", dataset, quantile=0.1, batch_size=5, device=torch.device("cpu"),
                     activation_rule=rule)
    rows = list(iter_rows(probe, CATEGORIES))
    assert [r.image for r in rows] == [r.image for r in broden.rows]  # scene-0-only row dropped by both
    assert rows[0].planes.shape[0] == 0
    oracle = lite_tally(rows, _features(model, dataset), result.thresholds, broden.label_category,
                        len(broden.categories), rule)
    assert oracle.fired_on_first_image
    np.testing.assert_array_equal(result.intersection, oracle.intersection)
    np.testing.assert_array_equal(result.unit_area, oracle.unit_area)
    np.testing.assert_array_equal(result.concept_area, oracle.concept_area)
    np.testing.assert_allclose(result.iou, oracle.iou, rtol=0, atol=1e-9)
    assert result.intersection.sum() > 0 and (result.iou > 0.05).any()
    units = units_table(result, 0.05)
    ours = dict(zip(units.loc[units["detector"], "unit"], units.loc[units["detector"], "iou"], strict=True))
    theirs = detectors(oracle.iou, 0.05)
    assert ours.keys() == theirs.keys()
    np.testing.assert_allclose([ours[u] for u in sorted(ours)], [theirs[u] for u in sorted(theirs)], atol=1e-9)


def test_the_rules_differ_on_the_fixture(probe: Path) -> None:
    """netdissect's activation term counts at least Lite's, and more somewhere (the fixture exercises it)."""
    dataset = BrodenDataset(load_broden(probe, CATEGORIES), _to_tensor)
    lite, original = (dissect(_Model(3), "layer4", dataset, quantile=0.1, batch_size=7, device=torch.device("cpu"),
                              activation_rule=rule) for rule in ("lite", "netdissect"))
    np.testing.assert_array_equal(lite.intersection, original.intersection)
    assert (original.unit_area >= lite.unit_area).all() and (original.unit_area > lite.unit_area).any()


def test_threshold_is_the_exact_quantile(probe: Path) -> None:
    dataset = BrodenDataset(load_broden(probe, CATEGORIES), _to_tensor)
    exact = dissect(_Model(4), "layer4", dataset, quantile=0.1, batch_size=7, device=torch.device("cpu")).thresholds
    features = _features(_Model(4), dataset).transpose(1, 0, 2, 3).reshape(UNITS, -1).astype(np.float64)
    np.testing.assert_allclose(exact, np.quantile(features, 0.9, axis=1), rtol=1e-12)
