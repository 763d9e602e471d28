"""Paired comparisons over seeds: mean difference, 95% t-interval, and a four-way verdict.

A student's seed fixes its initialisation, data order and augmentation, so two students of the
same seed share everything but their supervision: their values are *paired*, and a comparison of
two models is a comparison of the per-seed differences ``d_i = a_i - b_i``. A teacher has one
seed; it is compared against each seed's value of the other model (its single value is broadcast).

The interval is Student's t confidence interval for the mean of the differences (Student, 1908;
the paired t-interval, e.g. Wasserman, *All of Statistics*, 2004, §10.7; NIST/SEMATECH
e-Handbook of Statistical Methods, §7.2.2.1)::

    mean(d) +- t_{1 - (1 - confidence) / 2, n - 1} * s(d) / sqrt(n),   s: sample sd (ddof = 1)

It assumes the differences are independent draws from a normal distribution; with n = 3 seeds the
t quantile is 4.30, so only large, consistent differences exclude 0. When every difference is the
same (s = 0), the interval collapses to that value.

Verdicts (:func:`verdict`), in this order: a prediction of the sign of a difference **holds** when
the 95% interval excludes 0 on the predicted side and is **contradicted** when it excludes 0 on the
other side; otherwise it is **equivalent** when a pre-registered margin delta is given and the
difference is shown to lie inside (-delta, +delta), and **inconclusive** otherwise, including
n < 2 (no interval). Several comparisons behind one prediction (an ordering, a trend, "every
model") are combined by :func:`combine`.

Equivalence is Schuirmann's two one-sided tests (TOST; Schuirmann, *J. Pharmacokinet. Biopharm.*
15, 1987, 657-680): reject both "mean <= -delta" and "mean >= +delta" with one-sided t-tests at level
alpha (0.05). It rejects both exactly when the (1 - 2 alpha) t-interval, the 90% interval, lies
inside (-delta, +delta) (Schuirmann 1987; Wellek, *Testing Statistical Hypotheses of Equivalence
and Noninferiority*, 2010, §2.3): :func:`equivalent` uses the interval, :func:`tost_p_value` the
tests, and ``tests/test_statistics.py`` checks that they agree. Sample sizes for either question
are in :mod:`kdinterp.core.power`.

Everything here is a pure function on numpy arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

__all__ = ["CONTRADICTED", "EQUIVALENCE_ALPHA", "EQUIVALENT", "HOLDS", "INCONCLUSIVE", "VERDICTS", "Comparison",
           "Interval", "combine", "equivalence_interval", "equivalent", "mean_sd", "monotone", "paired_difference",
           "t_interval", "tost_p_value", "verdict"]

HOLDS = "holds"
CONTRADICTED = "contradicted"
EQUIVALENT = "equivalent"
INCONCLUSIVE = "inconclusive"
#: The four verdicts, in the order they are decided and reports list them.
VERDICTS: tuple[str, ...] = (HOLDS, CONTRADICTED, EQUIVALENT, INCONCLUSIVE)
#: The level of each one-sided test of TOST (Schuirmann 1987): the equivalence interval is the 90% interval.
EQUIVALENCE_ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    """A t confidence interval for a mean.

    Attributes:
        mean: the sample mean.
        low, high: the interval's ends (NaN when ``n < 2``).
        n: number of values.
        sd: sample standard deviation, ddof 1 (NaN when ``n < 2``).
        confidence: the interval's confidence level, e.g. 0.95.
    """

    mean: float
    low: float
    high: float
    n: int
    sd: float
    confidence: float


@dataclass(frozen=True)
class Comparison:
    """A paired difference ``a - b`` over seeds, its interval, and the verdict on a predicted sign.

    Attributes:
        interval: t-interval of the mean difference, in the units of ``a`` and ``b``.
        direction: the predicted sign of ``a - b``: +1 (a > b) or -1 (a < b).
        verdict: ``holds``, ``contradicted``, ``equivalent`` or ``inconclusive`` (:func:`verdict`).
        margin: the equivalence margin delta, in the units of ``a`` and ``b``, or None (no margin:
            never ``equivalent``).
        equivalence: the (1 - 2 alpha) t-interval TOST reads (:func:`equivalence_interval`), or None
            without a margin.
    """

    interval: Interval
    direction: int
    verdict: str
    margin: float | None = None
    equivalence: Interval | None = None

    @property
    def mean(self) -> float:
        """The mean difference ``mean(a - b)``."""
        return self.interval.mean

    @property
    def n(self) -> int:
        """The number of paired differences."""
        return self.interval.n


def _vector(values: ArrayLike, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what}: expected a non-empty 1-D array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: values must be finite, got {array.tolist()}")
    return array


def mean_sd(values: ArrayLike) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof 1) and count of ``values``.

    Args:
        values: shape ``(n,)`` (a scalar counts as ``(1,)``), finite.

    Returns:
        ``(mean, sd, n)``; ``sd`` is NaN for ``n = 1``.

    Raises:
        ValueError: ``values`` is empty, not 1-D or not finite.
    """
    x = _vector(values, "values")
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan, int(x.size)


def t_interval(values: ArrayLike, confidence: float = 0.95) -> Interval:
    """Student's t confidence interval for the mean of ``values``.

    ``mean +- t_{(1 + confidence) / 2, n - 1} * sd / sqrt(n)`` with ``sd`` the sample standard
    deviation (ddof 1); ``scipy.stats.t.ppf`` gives the quantile.

    Args:
        values: shape ``(n,)`` (a scalar counts as ``(1,)``), finite.
        confidence: in (0, 1).

    Returns:
        The interval; ``low``, ``high`` and ``sd`` are NaN when ``n < 2``.

    Raises:
        ValueError: ``values`` is empty, not 1-D or not finite, or ``confidence`` is outside (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean, sd, n = mean_sd(values)
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, math.nan, confidence)
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, sd, confidence)


def equivalence_interval(values: ArrayLike, alpha: float = EQUIVALENCE_ALPHA) -> Interval:
    """The (1 - 2 alpha) t-interval of ``values``, the interval TOST at level ``alpha`` reads (90% for 0.05).

    Raises:
        ValueError: as :func:`t_interval`, or ``alpha`` outside (0, 0.5).
    """
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    return t_interval(values, 1.0 - 2.0 * alpha)


def _check_margin(margin: float) -> None:
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"an equivalence margin must be a finite number > 0, got {margin}")


def equivalent(interval: Interval, margin: float) -> bool:
    """Whether ``interval`` (from :func:`equivalence_interval`) lies strictly inside ``(-margin, +margin)``.

    False for an interval of NaNs (n < 2). When every difference is the same (sd 0) the interval is
    that value, and it is equivalent when its size is below the margin.

    Raises:
        ValueError: ``margin`` is not finite and > 0.
    """
    _check_margin(margin)
    if math.isnan(interval.low) or math.isnan(interval.high):
        return False
    return -margin < interval.low and interval.high < margin


def tost_p_value(values: ArrayLike, margin: float) -> float:
    """The p-value of Schuirmann's TOST of "the mean lies outside (-margin, +margin)": the larger of the
    one-sided t-tests' p-values of ``mean <= -margin`` and ``mean >= +margin`` (NaN when n < 2).

    Below alpha exactly when the (1 - 2 alpha) interval lies inside the margin (:func:`equivalent`).
    With sd 0 it is 0 when the mean is inside the margin, else 1.

    Raises:
        ValueError: as :func:`t_interval`, or ``margin`` not finite and > 0.
    """
    _check_margin(margin)
    mean, sd, n = mean_sd(values)
    if n < 2:
        return math.nan
    if sd == 0:
        return 0.0 if abs(mean) < margin else 1.0
    se = sd / math.sqrt(n)
    lower = float(stats.t.sf((mean + margin) / se, n - 1))   # H0: mean <= -margin
    upper = float(stats.t.cdf((mean - margin) / se, n - 1))  # H0: mean >= +margin
    return max(lower, upper)


def verdict(interval: Interval, direction: int, equivalence: Interval | None = None,
            margin: float | None = None) -> str:
    """The verdict on the prediction "the mean is > 0" (``direction`` +1) or "< 0" (-1).

    Args:
        interval: the 95% interval (:func:`t_interval`).
        direction: +1 or -1.
        equivalence: the TOST interval (:func:`equivalence_interval`), or None.
        margin: the pre-registered equivalence margin, or None: never ``equivalent``.

    Returns:
        ``holds`` if ``interval`` excludes 0 on the predicted side, ``contradicted`` if it excludes
        0 on the other side; else ``equivalent`` if ``equivalence`` lies inside ``(-margin,
        +margin)``; else ``inconclusive`` (also for an interval of NaNs, n < 2).

    Raises:
        ValueError: ``direction`` is not +1 or -1, or a bad ``margin``.
    """
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    if math.isnan(interval.low) or math.isnan(interval.high):
        return INCONCLUSIVE
    if interval.low > 0:
        return HOLDS if direction == 1 else CONTRADICTED
    if interval.high < 0:
        return HOLDS if direction == -1 else CONTRADICTED
    if margin is not None and equivalence is not None and equivalent(equivalence, margin):
        return EQUIVALENT
    return INCONCLUSIVE


def paired_difference(a: ArrayLike, b: ArrayLike, direction: int, confidence: float = 0.95,
                      margin: float | None = None, alpha: float = EQUIVALENCE_ALPHA) -> Comparison:
    """Compare two models over seeds: the t-interval of ``a - b`` and the verdict on its predicted sign.

    Args:
        a, b: per-seed values, shape ``(n,)``, aligned by seed (``a[i]`` and ``b[i]`` share seed
            ``i``). One of them may have shape ``()`` or ``(1,)`` (a teacher's single value): it is
            compared against each value of the other.
        direction: the predicted sign of ``a - b``: +1 for "a > b", -1 for "a < b".
        confidence: of the interval, in (0, 1).
        margin: the pre-registered equivalence margin (units of ``a``), or None: never ``equivalent``.
        alpha: of each one-sided test of TOST; the equivalence interval is the (1 - 2 alpha) interval.

    Returns:
        The comparison; its intervals are in the units of ``a`` and ``b``.

    Raises:
        ValueError: shapes that do not pair (``(n,)`` against ``(m,)`` with n != m, both > 1),
            non-finite values, a bad ``direction``, ``confidence``, ``margin`` or ``alpha``.
    """
    x, y = _vector(a, "a"), _vector(b, "b")
    if x.size != y.size and 1 not in (x.size, y.size):
        raise ValueError(f"a and b must be paired by seed: shapes {x.shape} and {y.shape}")
    interval = t_interval(x - y, confidence)
    if margin is None:
        return Comparison(interval, direction, verdict(interval, direction))
    _check_margin(margin)
    tost = equivalence_interval(x - y, alpha)
    return Comparison(interval, direction, verdict(interval, direction, tost, margin), margin, tost)


def monotone(values: Sequence[ArrayLike], direction: int, confidence: float = 0.95) -> list[Comparison]:
    """Check a strict ordering ``values[0] < values[1] < ...`` (direction +1) or ``>`` (-1) pairwise.

    Each adjacent pair is one paired comparison ``values[i + 1] - values[i]`` with predicted sign
    ``direction``; :func:`combine` turns them into one verdict. This is how an ordering of three
    models (``KD > scratch > LS``: pass ``[LS, scratch, KD]``, +1) and a trend over a grid (``#det
    increases with T``: pass the students in increasing T, +1) are checked. A trend is read as a
    chain of adjacent differences rather than a per-seed rank correlation: with the two to four
    temperatures of a grid, a per-seed Spearman coefficient takes only a handful of values (+-1 for
    two), while the differences keep the units of the measure and the pairing by seed.

    Args:
        values: two or more per-seed arrays, each as ``a`` in :func:`paired_difference`.
        direction: +1 for increasing, -1 for decreasing along ``values``.
        confidence: of each interval.

    Returns:
        ``len(values) - 1`` comparisons, in order.

    Raises:
        ValueError: fewer than two arrays, or as :func:`paired_difference`.
    """
    if len(values) < 2:
        raise ValueError(f"an ordering needs at least two arrays, got {len(values)}")
    return [paired_difference(after, before, direction, confidence) for before, after in zip(values, values[1:])]


def combine(verdicts: Iterable[str]) -> str:
    """One verdict for a prediction made of several comparisons.

    A prediction of several effects holds only if each is shown; one effect shown absent (a part
    ``equivalent``: smaller than its margin) is enough to say so, whatever the other parts.

    Returns:
        ``contradicted`` if any part is contradicted; else ``holds`` if every part holds; else
        ``equivalent`` if any part is equivalent; else ``inconclusive``.

    Raises:
        ValueError: no verdicts, or an unknown one.
    """
    parts = list(verdicts)
    unknown = sorted(set(parts) - set(VERDICTS))
    if not parts or unknown:
        raise ValueError(f"expected one or more of {VERDICTS}, got {parts}")
    if CONTRADICTED in parts:
        return CONTRADICTED
    if all(part == HOLDS for part in parts):
        return HOLDS
    return EQUIVALENT if EQUIVALENT in parts else INCONCLUSIVE
