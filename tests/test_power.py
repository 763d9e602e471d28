"""kdinterp.core.power: seeds to detect a difference and to show equivalence, against G*Power and simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from kdinterp.core.power import (
    detection_power,
    equivalence_power,
    seeds_for_equivalence,
    seeds_needed,
    seeds_to_detect,
)


@pytest.mark.parametrize(("effect", "n", "power"), [
    # G*Power 3.1, "t tests - Means: Difference from constant (one sample case)", two tails, alpha 0.05,
    # power 0.80 (Faul et al. 2007): total sample size and actual power. Only the predicted tail is counted
    # here, which differs from the two-tailed power by < 1e-5 at these sizes.
    (0.5, 34, 0.8077775),
    (1.0, 10, 0.8030962),
])
def test_detection_matches_g_power(effect: float, n: int, power: float) -> None:
    assert seeds_to_detect(sd=1.0, delta=effect) == n
    assert detection_power(n, 1.0, effect) == pytest.approx(power, abs=2e-6)
    assert detection_power(n - 1, 1.0, effect) < 0.8
    # Scale-free: only delta / sd matters.
    assert seeds_to_detect(sd=4.0, delta=4.0 * effect) == n


def _simulated_tost(n: int, sd: float, margin: float, mu: float, draws: int, seed: int) -> float:
    d = np.random.default_rng(seed).normal(mu, sd, (draws, n))
    half = stats.t.ppf(0.95, n - 1) * d.std(axis=1, ddof=1) / np.sqrt(n)
    mean = d.mean(axis=1)
    return float(((mean - half > -margin) & (mean + half < margin)).mean())


@pytest.mark.parametrize(("n", "sd", "margin", "mu"), [(2, 1.0, 1.0, 0.0), (3, 1.0, 1.0, 0.0), (10, 1.0, 1.0, 0.0),
                                                       (6, 2.0, 3.0, 0.5)])
def test_equivalence_power_matches_a_simulation(n: int, sd: float, margin: float, mu: float) -> None:
    draws = 200_000
    simulated = _simulated_tost(n, sd, margin, mu, draws, seed=n)
    exact = equivalence_power(n, sd, margin, mu)
    assert abs(exact - simulated) < 4 * np.sqrt(exact * (1 - exact) / draws) + 1e-4


def test_equivalence_power_against_the_large_sample_normal_approximation() -> None:
    # With many seeds s ~ sd and t ~ z: power = 2 Phi(margin sqrt(n) / sd - z_0.95) - 1 at a true difference 0.
    n, sd, margin = 400, 1.0, 0.15
    approx = 2 * stats.norm.cdf(margin * np.sqrt(n) / sd - stats.norm.ppf(0.95)) - 1
    assert equivalence_power(n, sd, margin) == pytest.approx(approx, abs=5e-3)


def test_equivalence_needs_more_seeds_than_detection_of_the_same_size() -> None:
    # sd = margin: detection of delta needs 10 seeds (above); equivalence within delta at 0 needs 11.
    assert seeds_for_equivalence(sd=1.0, margin=1.0) == 11
    assert equivalence_power(11, 1.0, 1.0) >= 0.8 > equivalence_power(10, 1.0, 1.0)
    assert seeds_for_equivalence(sd=1.0, margin=0.5) > seeds_for_equivalence(sd=1.0, margin=1.0)
    assert seeds_for_equivalence(sd=1.0, margin=1.0, true_difference=0.3) > 11


def test_seeds_needed_is_the_first_n_that_reaches_the_target() -> None:
    for effect in (0.3, 0.7, 1.3, 3.0):
        power = [detection_power(n, 1.0, effect) for n in range(2, 200)]
        linear = next(n for n, p in zip(range(2, 200), power) if p >= 0.9)
        assert seeds_to_detect(1.0, effect, power=0.9) == linear
    assert seeds_needed(lambda n: 1.0) == 2


def test_bad_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match="sd"):
        detection_power(3, 0.0, 1.0)
    with pytest.raises(ValueError, match="n must be"):
        equivalence_power(1, 1.0, 1.0)
    with pytest.raises(ValueError, match="below the margin"):
        seeds_for_equivalence(1.0, 1.0, true_difference=1.0)
    with pytest.raises(ValueError, match="more than"):
        seeds_needed(lambda n: 0.0, max_seeds=64)
    with pytest.raises(ValueError, match="target"):
        seeds_needed(lambda n: 1.0, target=1.0)
