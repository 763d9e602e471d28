"""Calibrated detectors (kdinterp.dissection.calibrated) on hand-made activations where the answer is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from kdinterp.core.config import ParamsError, from_mapping
from kdinterp.dissection import calibrated as cal
from kdinterp.dissection.calibrated_null import calibrated_detectors
from kdinterp.dissection.tally import Tally
from kdinterp.dissection.upsample import active_pixels
from kdinterp.measures.dissection import CalibratedParams

CATEGORIES = 3                  # object, color, scene
SIDE = 16                       # segmentation and map side (no upsampling: map = mask resolution)
S = SIDE * SIDE
# labels: 0 unlabelled; 1 "square" (object); 2 "centre" (object); 3 "red" (color); 4 "beach", 5 "forest" (scenes,
# image-level)
LABEL_CATEGORY = np.array([-1, 0, 0, 1, 2, 2])


def _world(n: int = 160, seed: int = 0):
    """n images: an object plane with a 4x4 'square' at a random cell and a jittered 4x4 'centre' block, a colour plane
    with random 'red' blobs, and the image-level scene 'beach' on every other image, 'forest' on the rest."""
    rng = np.random.default_rng(seed)
    obj = np.zeros((n, SIDE, SIDE), dtype=np.int64)
    col = np.zeros((n, SIDE, SIDE), dtype=np.int64)
    square = np.zeros((n, SIDE, SIDE), dtype=bool)
    for i in range(n):
        y, x = rng.integers(0, SIDE - 4, 2)
        square[i, y:y + 4, x:x + 4] = True
        dy, dx = rng.integers(-1, 2, 2)
        obj[i, 6 + dy:10 + dy, 6 + dx:10 + dx] = 2            # the 'centre' object, always near the middle
        obj[i][square[i]] = 1                                  # the square is drawn on top
        cy, cx = rng.integers(0, SIDE - 3, 2)
        col[i, cy:cy + 3, cx:cx + 3] = 3
    planes = torch.from_numpy(np.stack([obj, col], 1).reshape(n, 2, S))
    scalars = torch.from_numpy(np.where(np.arange(n) % 2 == 0, 4, 5)[:, None])
    return planes, scalars, torch.from_numpy(square)


def _run(acts, planes, scalars, thresholds, **options):
    options.setdefault("permutations", 999)
    return calibrated_detectors(acts, torch.as_tensor(thresholds, dtype=torch.float64), planes, scalars,
                                LABEL_CATEGORY, CATEGORIES, (SIDE, SIDE), cal.CalibratedOptions(**options),
                                batch_size=37)


@pytest.fixture(scope="module")
def world():
    """Units: 0 = exactly the square's mask; 1 = Gaussian noise; 2 = the fixed centre block."""
    planes, scalars, square = _world()
    g = torch.Generator().manual_seed(1)
    acts = torch.zeros(len(planes), 3, SIDE, SIDE)
    acts[:, 0] = square.float()
    acts[:, 1] = torch.randn(len(planes), SIDE, SIDE, generator=g)
    acts[:, 2, 6:10, 6:10] = 1.0
    return planes, scalars, acts


@pytest.mark.parametrize("null", ["permutation", "normal"])
def test_concept_unit_is_a_detector_noise_and_centre_units_are_not(world, null):
    planes, scalars, acts = world
    res = _run(acts, planes, scalars, [0.5, 2.2, 0.5], null=null)
    assert res.concept[0] == 1 and res.category[0] == 0
    assert res.iou_a[0] == pytest.approx(1.0) and res.iou_b[0] == pytest.approx(1.0)
    assert res.detector.tolist() == [True, False, False]
    assert res.p[0] <= 1.0 / 1000 + 1e-12 if null == "permutation" else res.p[0] < 1e-6
    assert res.p[1] > 0.05 and res.p[2] > 0.05


def test_centre_unit_passes_the_fixed_iou_threshold_but_not_the_null(world):
    """The centre unit overlaps the centre concept by position alone: IoU far above 0.05, yet no detector."""
    planes, scalars, acts = world
    res = _run(acts, planes, scalars, [0.5, 2.2, 0.5])
    assert res.concept[2] == 2 and res.iou_b[2] > 0.3
    assert res.z[2] < 2.0 and not res.detector[2]


def test_image_level_concept_is_detected():
    """A unit active on (part of) every 'beach' image and silent on 'forest' images detects the image-level concept."""
    planes, scalars, _ = _world()
    acts = torch.zeros(len(planes), 1, SIDE, SIDE)
    acts[scalars[:, 0] == 4, 0, :4, :4] = 1.0
    res = _run(acts, planes, scalars, [0.5])
    assert res.concept[0] == 4 and res.category[0] == 2 and bool(res.detector[0])
    assert res.iou_b[0] == pytest.approx(16 / S)


def test_noise_units_are_rejected_at_most_at_about_the_fdr():
    """40 units of pure noise (all nulls true): BH at 5 % rejects any at all with probability <= 5 %, so expect ~0."""
    planes, scalars, _ = _world(120, seed=7)
    g = torch.Generator().manual_seed(3)
    acts = torch.randn(len(planes), 40, 4, 4, generator=g)                 # 4x4 maps upsampled to 16x16
    results = [_run(acts, planes, scalars, torch.full((40,), 1.5), split_seed=seed) for seed in range(3)]
    counts = [int(r.detector.sum()) for r in results]
    assert sum(counts) <= 2, counts
    p = np.concatenate([r.p for r in results])                             # about uniform: ~5 % below 0.05
    assert (p < 0.05).mean() <= 0.15 and (p < 0.5).mean() <= 0.7, np.sort(p)[:10]


def test_min_iou_floor_removes_a_significant_but_weak_unit(world):
    """A unit on the square and on a fixed corner block: significant, IoU with the square about 1/2."""
    planes, scalars, acts = world
    unit = acts[:, :1].clone()
    unit[:, 0, 12:16, 12:16] = 1.0
    weak = _run(unit, planes, scalars, [0.5])
    assert weak.detector[0] and 0.3 < weak.iou_b[0] < 0.6
    assert not _run(unit, planes, scalars, [0.5], min_iou=0.6).detector[0]
    assert _run(unit, planes, scalars, [0.5], min_iou=0.3).detector[0]


def test_permutation_moments_match_enumeration():
    rng = np.random.default_rng(3)
    x = rng.poisson(2.0, (5, 5)).astype(np.float64)
    sums = np.array([sum(x[i, p[i]] for i in range(5)) for p in itertools.permutations(range(5))])
    mean, sd = cal.permutation_moments(x)
    assert mean == pytest.approx(sums.mean(), rel=1e-12)
    assert sd == pytest.approx(sums.std(ddof=0), rel=1e-12)


def test_permutation_p_value_counts_exceedances():
    x = np.diag([3.0, 0.0, 0.0]) + np.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=float)
    perms = torch.tensor(list(itertools.permutations(range(3))))          # all 6: T_pi >= 3 only for pi(0) = 0
    assert cal.permutation_p_value(x, perms) == pytest.approx((1 + 2) / 7)
    assert cal.permutation_p_value(np.zeros((3, 3)), perms) == 1.0


def test_benjamini_hochberg_agrees_with_scipy_and_known_values():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    # sorted: 0.005, 0.01, 0.03, 0.04, 0.5 -> scaled 0.025, 0.025, 0.05, 0.05, 0.5
    assert cal.benjamini_hochberg(p).tolist() == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.5])
    rand = np.random.default_rng(0).uniform(size=200) ** 3
    np.testing.assert_allclose(cal.benjamini_hochberg(rand), stats.false_discovery_control(rand), rtol=0, atol=0)
    assert cal.benjamini_hochberg(np.array([])).shape == (0,)


def test_split_halves_are_seeded_disjoint_covering_and_stratified():
    a, b = cal.split_halves(17, seed=4)
    assert not set(a) & set(b) and sorted([*a, *b]) == list(range(17)) and (len(a), len(b)) == (9, 8)
    assert [x.tolist() for x in cal.split_halves(17, seed=4)] == [a.tolist(), b.tolist()]
    assert cal.split_halves(17, seed=5)[0].tolist() != a.tolist()
    strata = np.array(["a"] * 7 + ["b"] * 10)
    a, b = cal.split_halves(17, seed=4, strata=strata)
    assert sorted([*a, *b]) == list(range(17))
    assert ((strata[a] == "a").sum(), (strata[b] == "a").sum(), (strata[a] == "b").sum()) == (4, 3, 5)
    with pytest.raises(ValueError):
        cal.split_halves(1)
    with pytest.raises(ValueError):
        cal.split_halves(4, strata=np.zeros(3))


def test_half_a_tally_equals_the_netdissect_tally_of_those_images():
    """The selection IoUs are the netdissect-rule tally of half A's images alone (select_images is exact)."""
    planes, scalars, _ = _world(60, seed=5)
    acts = torch.rand(60, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    thresholds = torch.full((4,), 0.8, dtype=torch.float64)
    split = cal.split_halves(60, 2)
    collector = cal.CalibratedCollector(60, 4, LABEL_CATEGORY, CATEGORIES, split)
    for start in range(0, 60, 7):
        collector.add(start, active_pixels(acts[start:start + 7], thresholds, (SIDE, SIDE)), planes[start:start + 7],
                      scalars[start:start + 7])
    a = torch.from_numpy(split[0])
    tally = Tally(4, LABEL_CATEGORY, CATEGORIES, "cpu", "netdissect")
    tally.update(active_pixels(acts[a], thresholds, (SIDE, SIDE)), planes[a], scalars[a])
    np.testing.assert_array_equal(collector.tally_a.intersection.numpy(), tally.intersection.numpy())
    np.testing.assert_array_equal(collector.tally_a.unit_area.numpy(), tally.unit_area.numpy())


def test_bad_options_raise():
    for kw in ({"null": "t"}, {"permutations": 0}, {"fdr": 0.0}, {"min_iou": 1.5}):
        with pytest.raises(ValueError):
            cal.CalibratedOptions(**kw)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("fdr", 0.0, "fdr"), ("fdr", 1.0, "fdr"), ("permutations", 0, "permutations"),
    ("permutations", 9, "permutations"), ("null_distribution", "t", "null_distribution"), ("min_iou", -0.1, "min_iou"),
    ("split_seed", -1, "split_seed"), ("primary_categories", ["objects"], "primary_categories"),
])
def test_bad_params_name_the_key(key, value, message):
    with pytest.raises(ParamsError) as err:
        from_mapping(CalibratedParams, {key: value}, "dissection.calibrated")
    assert f"dissection.calibrated.{message}" in str(err.value)


def test_summary_round_trips_with_and_without_the_calibrated_record():
    from kdinterp.measures.dissection import CalibratedSummary, DissectionSummary, ProbeBootstrap

    base = DissectionSummary(model="m", seed=0, layer="layer4", num_units=4, num_images=10, quantile=0.005,
                             iou_threshold=0.05, num_detectors=1, num_unique_concepts=1, detectors={"object": 1},
                             unique_concepts={"object": 1}, probe_bootstrap=ProbeBootstrap(10, 2, 1.0, 0.0, 1.0, 1.0))
    older = {k: v for k, v in base.to_json().items() if k != "calibrated"}         # written before the field
    assert DissectionSummary.from_json(older, "summary.json", "dissect").calibrated is None
    calibrated = CalibratedSummary(fdr=0.05, permutations=9999, null="permutation", split_seed=0, min_iou=0.0,
                                   primary_categories=("object", "part", "scene"), detectors=2, primary=1,
                                   low_level=1, per_category={"object": 1, "color": 1}, unique_concepts=2)
    full = DissectionSummary(**{**base.__dict__, "calibrated": calibrated})
    assert DissectionSummary.from_json(full.to_json(), "summary.json", "dissect") == full


def test_per_split_options_seed_consecutive_splits() -> None:
    from kdinterp.dissection.calibrated import CalibratedOptions

    options = CalibratedOptions(split_seed=3, splits=4)
    assert [o.split_seed for o in options.per_split()] == [3, 4, 5, 6]
    assert all(o.splits == 1 and o.fdr == options.fdr for o in options.per_split())
    with pytest.raises(ValueError, match="splits"):
        CalibratedOptions(splits=0)


def test_summary_counts_are_means_over_the_splits() -> None:
    """Two splits with 2 and 1 detectors (object + color, then object): means 1.5, primary 1.0, low-level 0.5."""
    from kdinterp.dissection.calibrated import CalibratedOptions, CalibratedResult
    from kdinterp.measures.dissection import CalibratedParams
    from kdinterp.measures.dissection.compute import calibrated_summary, calibrated_table

    categories, names = ("object", "color"), ("-", "dog", "red")

    def result(seed: int, detector: list[bool]) -> CalibratedResult:
        n = len(detector)
        zeros = np.zeros(n)
        return CalibratedResult(concept=np.array([1, 2, 1]), category=np.array([0, 1, 0]), iou_a=zeros, iou_b=zeros,
                                intersection_b=zeros, null_mean=zeros, null_sd=zeros, z=zeros, p=zeros, q=zeros,
                                detector=np.array(detector), images_b=np.zeros(n, dtype=np.int64),
                                split=(np.array([0]), np.array([1])), options=CalibratedOptions(split_seed=seed))

    results = (result(0, [True, True, False]), result(1, [True, False, False]))
    spec = CalibratedParams(primary_categories=("object",), splits=2)
    summary = calibrated_summary(results, spec, names, categories)
    assert (summary.detectors, summary.primary, summary.low_level, summary.splits) == (1.5, 1.0, 0.5, 2)
    assert summary.per_category == {"object": 1.0, "color": 0.5} and summary.unique_concepts == 1.5
    table = calibrated_table(results, names, categories)
    assert list(table["split"]) == [0, 0, 0, 1, 1, 1] and table["detector"].sum() == 3
