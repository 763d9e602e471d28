"""How many seeds a paired comparison needs: power of the two questions :mod:`kdinterp.core.statistics` asks.

Both questions are about the mean of the per-seed differences ``d_i = a_i - b_i``, taken to be
independent normal draws with sd ``sd`` (the between-seed sd of a paired difference, e.g. of
scratch minus a control over the seeds of a run):

* **Detection** (:func:`detection_power`): the probability that the 95% t-interval excludes 0 on
  the predicted side (the verdict *holds*) when the true difference is ``delta``. The t statistic
  ``mean(d) / (s / sqrt(n))`` then follows a noncentral t distribution with ``n - 1`` degrees of
  freedom and noncentrality ``delta * sqrt(n) / sd`` (e.g. Cohen, *Statistical Power Analysis for
  the Behavioral Sciences*, 1988, ch. 2; G*Power's one-sample t-test), so the power is
  ``P(T' > t_{1 - alpha/2, n - 1})`` (``scipy.stats.nct``). Only the predicted tail counts: a
  difference on the other side is *contradicted*, not a detection (it adds < 1e-4 at 80% power).
* **Equivalence** (:func:`equivalence_power`): the probability that TOST at level alpha (Schuirmann
  1987) declares the difference inside ``(-margin, +margin)``, i.e. that the (1 - 2 alpha)
  interval ``mean +- t * s / sqrt(n)`` lies inside it, for a true difference ``true_difference``
  (default 0). Both one-sided statistics share one ``s``, so the power is not a difference of two
  noncentral t probabilities (that shortcut ignores the dependence and is poor, even negative, at
  the small n of a seed study). It is computed exactly (Owen, *Biometrika* 52, 1965, 437-446;
  Phillips, *J. Pharmacokinet. Biopharm.* 18, 1990, 137-144) by integrating over ``s``: given
  ``s``, the mean is normal, and the test passes when ``|mean - 0| < margin - t * s / sqrt(n)``::

      power = int_0^v* [Phi((margin - t sd v / sqrt(n (n-1)) - mu) sqrt(n) / sd)
                        - Phi((-margin + t sd v / sqrt(n (n-1)) - mu) sqrt(n) / sd)] chi_{n-1}(v) dv

  with ``v = sqrt(n - 1) * s / sd`` chi-distributed with ``n - 1`` degrees of freedom and ``v*``
  where the bracket's interval closes.

:func:`seeds_needed` turns either power into the smallest number of seeds that reaches a target.
Everything here is a pure function of numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scipy import integrate, stats

from kdinterp.core.statistics import EQUIVALENCE_ALPHA

__all__ = ["detection_power", "equivalence_power", "seeds_needed", "seeds_to_detect", "seeds_for_equivalence"]

#: The largest number of seeds :func:`seeds_needed` searches.
MAX_SEEDS = 100_000


def _check(n: int, sd: float, size: float, what: str) -> None:
    if n < 2:
        raise ValueError(f"n must be >= 2 (a t-interval needs two differences), got {n}")
    if not (math.isfinite(sd) and sd > 0):
        raise ValueError(f"sd must be a finite number > 0, got {sd}")
    if not (math.isfinite(size) and size > 0):
        raise ValueError(f"{what} must be a finite number > 0, got {size}")


def detection_power(n: int, sd: float, delta: float, confidence: float = 0.95) -> float:
    """P(the ``confidence`` t-interval of n paired differences excludes 0 on the side of ``delta``).

    Args:
        n: seeds (paired differences), >= 2.
        sd: sd of one difference, > 0.
        delta: the true mean difference's size, > 0 (the sign is the predicted one).
        confidence: of the interval (0.95: a one-sided test at 0.025).
    """
    _check(n, sd, delta, "delta")
    critical = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1))
    return float(stats.nct.sf(critical, n - 1, delta * math.sqrt(n) / sd))


def equivalence_power(n: int, sd: float, margin: float, true_difference: float = 0.0,
                      alpha: float = EQUIVALENCE_ALPHA) -> float:
    """P(TOST at level ``alpha`` declares n paired differences equivalent within ``margin``), exactly.

    Args:
        n: seeds, >= 2.
        sd: sd of one difference, > 0.
        margin: the equivalence margin, > 0.
        true_difference: the true mean difference.
        alpha: of each one-sided test (the interval is the 1 - 2 alpha one).
    """
    _check(n, sd, margin, "margin")
    df = n - 1
    t = float(stats.t.ppf(1.0 - alpha, df))
    root = math.sqrt(n)
    upper = margin * math.sqrt(n * df) / (t * sd)  # v beyond which the interval is wider than the margin

    def given(v: float) -> float:
        half = t * sd * v / math.sqrt(n * df)  # t * s / sqrt(n) at s = sd * v / sqrt(n - 1)
        high = (margin - half - true_difference) * root / sd
        low = (-margin + half - true_difference) * root / sd
        return max(float(stats.norm.cdf(high) - stats.norm.cdf(low)), 0.0) * float(stats.chi.pdf(v, df))

    value, _ = integrate.quad(given, 0.0, upper, limit=200, epsabs=1e-10, epsrel=1e-8)
    return min(max(value, 0.0), 1.0)


def seeds_needed(power_of: Callable[[int], float], target: float = 0.8, max_seeds: int = MAX_SEEDS) -> int:
    """The smallest n >= 2 with ``power_of(n) >= target``, for a power that rises with n.

    Searched by doubling, then bisection.

    Raises:
        ValueError: ``target`` outside (0, 1), or not reached with ``max_seeds`` seeds.
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target power must be in (0, 1), got {target}")
    if power_of(2) >= target:
        return 2
    low, high = 2, 4
    while power_of(high) < target:
        if high >= max_seeds:
            raise ValueError(f"power {target:g} needs more than {max_seeds} seeds")
        low, high = high, min(2 * high, max_seeds)
    while high - low > 1:  # power_of(low) < target <= power_of(high)
        middle = (low + high) // 2
        low, high = (low, middle) if power_of(middle) >= target else (middle, high)
    return high


def seeds_to_detect(sd: float, delta: float, power: float = 0.8, confidence: float = 0.95) -> int:
    """Seeds for the verdict *holds* with probability ``power`` when the true difference is ``delta``."""
    return seeds_needed(lambda n: detection_power(n, sd, delta, confidence), power)


def seeds_for_equivalence(sd: float, margin: float, power: float = 0.8, true_difference: float = 0.0,
                          alpha: float = EQUIVALENCE_ALPHA) -> int:
    """Seeds for the verdict *equivalent* with probability ``power`` when the true difference is ``true_difference``.

    Raises:
        ValueError: ``|true_difference| >= margin`` (the power stays below alpha), or as :func:`seeds_needed`.
    """
    if abs(true_difference) >= margin:
        raise ValueError(f"|true_difference| {abs(true_difference):g} must be below the margin {margin:g}")
    return seeds_needed(lambda n: equivalence_power(n, sd, margin, true_difference, alpha), power)
