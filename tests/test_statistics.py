"""kdinterp.core.statistics: paired t-intervals over seeds, TOST, the four-way verdicts, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from kdinterp.core.statistics import (
    CONTRADICTED,
    EQUIVALENT,
    HOLDS,
    INCONCLUSIVE,
    combine,
    equivalence_interval,
    equivalent,
    mean_sd,
    monotone,
    paired_difference,
    t_interval,
    tost_p_value,
    verdict,
)

#: t quantiles t_{0.975, df} from a printed table (e.g. NIST/SEMATECH e-Handbook §1.3.6.7.2).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776}


def test_interval_matches_a_hand_computation() -> None:
    # d = 1, 2, 3, 4: mean 2.5, s^2 = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3, se = sqrt(5/12).
    interval = t_interval([1.0, 2.0, 3.0, 4.0])
    se = math.sqrt(5 / 12)
    assert interval.mean == pytest.approx(2.5)
    assert interval.sd == pytest.approx(math.sqrt(5 / 3))
    assert interval.n == 4
    assert interval.low == pytest.approx(2.5 - T975[3] * se, abs=1e-3)
    assert interval.high == pytest.approx(2.5 + T975[3] * se, abs=1e-3)
    assert (interval.low, interval.high) == pytest.approx((0.44573, 4.55427), abs=1e-5)


def test_interval_with_three_seeds_uses_t_with_two_degrees_of_freedom() -> None:
    # d = 2, 4, 6: mean 4, s = 2, half-width 4.303 * 2 / sqrt(3) = 4.968: a positive mean, but 0 inside.
    interval = t_interval(np.array([2.0, 4.0, 6.0]))
    assert (interval.low, interval.high) == pytest.approx((4 - 4.968, 4 + 4.968), abs=2e-3)
    assert verdict(interval, +1) == INCONCLUSIVE


def test_other_confidence_levels_widen_and_narrow() -> None:
    narrow, wide = t_interval([1.0, 2.0, 3.0, 4.0], 0.80), t_interval([1.0, 2.0, 3.0, 4.0], 0.99)
    assert narrow.high - narrow.low < 4.55427 - 0.44573 < wide.high - wide.low
    assert narrow.confidence == 0.80


def test_clearly_positive_sample_holds_and_negative_is_contradicted() -> None:
    up = paired_difference([10.2, 11.0, 12.1], [5.0, 5.1, 6.3], +1)
    assert up.verdict == HOLDS and up.mean == pytest.approx(5.633333, abs=1e-6) and up.n == 3
    down = paired_difference([5.0, 5.1, 6.3], [10.2, 11.0, 12.1], +1)
    assert down.verdict == CONTRADICTED and down.mean == pytest.approx(-5.633333, abs=1e-6)
    # The same negative difference, predicted negative, holds.
    assert paired_difference([5.0, 5.1, 6.3], [10.2, 11.0, 12.1], -1).verdict == HOLDS


def test_zero_centred_sample_is_inconclusive() -> None:
    comparison = paired_difference([1.0, -1.0, 0.5, -0.5], [0.0, 0.0, 0.0, 0.0], +1)
    assert comparison.mean == 0.0
    assert comparison.interval.low < 0 < comparison.interval.high
    assert comparison.verdict == INCONCLUSIVE


def test_one_seed_is_inconclusive_however_large_the_difference() -> None:
    comparison = paired_difference([100.0], [0.0], +1)
    assert comparison.n == 1 and comparison.mean == 100.0
    assert math.isnan(comparison.interval.low) and math.isnan(comparison.interval.sd)
    assert comparison.verdict == INCONCLUSIVE


def test_pairing_uses_per_seed_differences_not_the_two_means() -> None:
    # Large seed-to-seed spread, constant +1 pairing: the paired interval is the point 1.
    a, b = np.array([10.0, 50.0, 90.0]), np.array([9.0, 49.0, 89.0])
    comparison = paired_difference(a, b, +1)
    assert (comparison.interval.low, comparison.interval.high) == (1.0, 1.0)
    assert comparison.verdict == HOLDS


def test_a_single_teacher_value_is_compared_against_each_seed() -> None:
    comparison = paired_difference(0.80, [0.60, 0.62, 0.61], +1)
    assert comparison.n == 3
    assert comparison.mean == pytest.approx(0.19)
    assert comparison.verdict == HOLDS


def test_unpaired_shapes_and_bad_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match="paired by seed"):
        paired_difference([1.0, 2.0], [1.0, 2.0, 3.0], +1)
    with pytest.raises(ValueError, match="direction"):
        paired_difference([1.0, 2.0], [0.0, 0.0], 0)
    with pytest.raises(ValueError, match="finite"):
        t_interval([1.0, math.nan])
    with pytest.raises(ValueError, match="non-empty"):
        t_interval([])
    with pytest.raises(ValueError, match="confidence"):
        t_interval([1.0, 2.0], 1.0)


def test_monotone_checks_adjacent_pairs_in_order() -> None:
    low, mid, high = [1.0, 1.1, 0.9], [5.0, 5.2, 4.9], [9.0, 9.1, 9.3]
    parts = monotone([low, mid, high], +1)
    assert [p.mean for p in parts] == pytest.approx([4.0333333, 4.1], abs=1e-6)
    assert [p.verdict for p in parts] == [HOLDS, HOLDS]
    assert [p.verdict for p in monotone([low, mid, high], -1)] == [CONTRADICTED, CONTRADICTED]
    with pytest.raises(ValueError, match="two"):
        monotone([low], +1)


@pytest.mark.parametrize(("parts", "expected"), [
    ([HOLDS, HOLDS], HOLDS),
    ([HOLDS, INCONCLUSIVE], INCONCLUSIVE),
    ([HOLDS, CONTRADICTED], CONTRADICTED),
    ([INCONCLUSIVE, CONTRADICTED], CONTRADICTED),
    ([INCONCLUSIVE], INCONCLUSIVE),
])
def test_combine(parts: list[str], expected: str) -> None:
    assert combine(parts) == expected


def test_combine_rejects_nothing_and_unknown_verdicts() -> None:
    with pytest.raises(ValueError):
        combine([])
    with pytest.raises(ValueError):
        combine(["does not hold"])


def test_mean_sd() -> None:
    assert mean_sd([2.0, 4.0, 6.0]) == (4.0, 2.0, 3)
    mean, sd, n = mean_sd(3.5)
    assert (mean, n) == (3.5, 1) and math.isnan(sd)


# ---------------------------------------------------------------- equivalence (TOST, Schuirmann 1987)

#: t quantiles t_{0.95, df} from a printed table (NIST/SEMATECH e-Handbook §1.3.6.7.2).
T95 = {2: 2.920, 3: 2.353, 4: 2.132}


def test_equivalence_interval_is_the_90_percent_interval_by_hand() -> None:
    # d = 1, 2, 3, 4: mean 2.5, se sqrt(5/12) = 0.6455; 90% half-width 2.353 * 0.6455 = 1.519.
    tost = equivalence_interval([1.0, 2.0, 3.0, 4.0])
    assert tost.confidence == pytest.approx(0.90)
    assert (tost.low, tost.high) == pytest.approx((2.5 - T95[3] * math.sqrt(5 / 12), 2.5 + T95[3] * math.sqrt(5 / 12)),
                                                  abs=1e-3)
    assert equivalent(tost, 4.1) and not equivalent(tost, 4.0)


def test_a_small_spread_around_zero_is_equivalent_within_a_wide_margin_only() -> None:
    # d = +1, -1, 0: mean 0, sd 1; 95% half-width 4.303 / sqrt(3) = 2.48 (contains 0),
    # 90% half-width 2.920 / sqrt(3) = 1.686: inside +-4.6, not inside +-1.5.
    comparison = paired_difference([41.0, 40.0, 39.0], [40.0, 41.0, 39.0], +1, margin=4.6)
    assert comparison.verdict == EQUIVALENT and comparison.margin == 4.6
    assert (comparison.equivalence.low, comparison.equivalence.high) == pytest.approx((-1.686, 1.686), abs=1e-3)
    assert paired_difference([41.0, 40.0, 39.0], [40.0, 41.0, 39.0], +1, margin=1.5).verdict == INCONCLUSIVE
    assert paired_difference([41.0, 40.0, 39.0], [40.0, 41.0, 39.0], +1).verdict == INCONCLUSIVE  # no margin


def test_an_interval_that_excludes_zero_holds_or_is_contradicted_before_equivalence() -> None:
    # d = 0.5, 0.51, 0.49: the 95% interval excludes 0 and the 90% one lies inside +-1.
    assert paired_difference([1.5, 1.51, 1.49], [1.0, 1.0, 1.0], +1, margin=1.0).verdict == HOLDS
    assert paired_difference([1.5, 1.51, 1.49], [1.0, 1.0, 1.0], -1, margin=1.0).verdict == CONTRADICTED


def test_one_seed_is_never_equivalent_and_a_constant_difference_is_judged_on_its_value() -> None:
    assert paired_difference([0.0], [0.0], +1, margin=10.0).verdict == INCONCLUSIVE
    assert math.isnan(tost_p_value([0.0], 1.0))
    # Every difference 0 (sd 0): both intervals are the point 0: inside any margin.
    assert paired_difference([3.0, 5.0], [3.0, 5.0], +1, margin=0.5).verdict == EQUIVALENT
    assert tost_p_value([0.2, 0.2], 0.5) == 0.0 and tost_p_value([0.7, 0.7], 0.5) == 1.0


def test_tost_p_value_below_alpha_exactly_when_the_90_percent_interval_is_inside() -> None:
    rng = np.random.default_rng(7)
    agree = decided = 0
    for _ in range(2000):
        n = int(rng.integers(2, 9))
        d = rng.normal(rng.uniform(-1, 1), rng.uniform(0.1, 2), n)
        margin = float(rng.uniform(0.2, 3))
        by_tests = tost_p_value(d, margin) < 0.05
        by_interval = equivalent(equivalence_interval(d), margin)
        agree += by_tests == by_interval
        decided += by_interval
    assert agree == 2000 and 50 < decided < 1950  # both outcomes occur


def test_tost_p_value_by_hand() -> None:
    # d = 1, 2, 3, 4, margin 5: t statistics (2.5 + 5) / 0.6455 = 11.62 and (2.5 - 5) / 0.6455 = -3.873, df 3.
    p = tost_p_value([1.0, 2.0, 3.0, 4.0], 5.0)
    assert p == pytest.approx(max(stats.t.sf(7.5 / math.sqrt(5 / 12), 3), stats.t.cdf(-2.5 / math.sqrt(5 / 12), 3)))
    assert p == pytest.approx(0.01523, abs=1e-4)


@pytest.mark.parametrize(("parts", "expected"), [
    ([EQUIVALENT], EQUIVALENT),
    ([HOLDS, EQUIVALENT], EQUIVALENT),
    ([EQUIVALENT, INCONCLUSIVE], EQUIVALENT),
    ([EQUIVALENT, CONTRADICTED], CONTRADICTED),
    ([HOLDS, HOLDS, INCONCLUSIVE], INCONCLUSIVE),
])
def test_combine_with_equivalent_parts(parts: list[str], expected: str) -> None:
    assert combine(parts) == expected


def test_bad_margins_and_alphas_are_errors() -> None:
    for margin in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="margin"):
            paired_difference([1.0, 2.0], [0.0, 0.0], +1, margin=margin)
    with pytest.raises(ValueError, match="alpha"):
        equivalence_interval([1.0, 2.0], 0.5)
