"""Per-unit activation thresholds: an exact upper quantile, computed in one streaming pass.

Two conventions for the quantile *level* (param ``dissection.quantile_convention``):

* ``exact`` (default): the level is ``1 - quantile`` (0.995 for the paper's 0.005), i.e. the unit
  is active on the top ``quantile`` of its activations, as the papers describe it.
* ``lite``: NetDissect-Lite's level. Lite feeds the raw activations to a seeded KLL sketch
  (``util/vecquantile.py``), reads it out at ``linspace(0, 1, 1000)`` with the smallest value at
  level 0, the largest at level 1 and linear interpolation in between (numpy's default rule), and
  takes column ``int(1000 * (1 - quantile) - 1)``: level ``994 / 999 ~= 0.994995`` for 0.005
  (``research/dissection.md`` §1.2). We compute the quantile at that level *exactly*; the sketch's
  own error (about 0.1-0.2 % of the value) is not reproduced, so borderline units can still
  differ from a Lite run. Use it for parity runs against Lite's numbers.

Either way the value is the exact quantile of all ``n`` raw (not upsampled) activations of a unit
over the probe set, with numpy's ``linear`` rule: with the values sorted ascending,
``pos = level * (n - 1)`` and the threshold is ``v[floor(pos)] + frac(pos) * (v[floor(pos) + 1] -
v[floor(pos)])``, interpolated in float64. Only the top ``n - floor(pos)`` values per unit can enter
that formula, so a running top-k per unit is enough: memory is ``units * k`` with
``k ~= (1 - level) * n`` (0.5 % of the activations), never all of them.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

__all__ = ["QuantileConvention", "TopQuantile", "quantile_level"]

QuantileConvention = Literal["exact", "lite"]

#: NetDissect-Lite reads its quantile sketch at this many evenly spaced levels (``readout(1000)``).
LITE_READOUT = 1000


def quantile_level(quantile: float, convention: QuantileConvention = "exact") -> float:
    """The quantile level whose value becomes the threshold.

    Args:
        quantile: upper tail mass, e.g. 0.005.
        convention: ``exact`` -> ``1 - quantile``; ``lite`` -> NetDissect-Lite's
            ``int(1000 * (1 - quantile) - 1) / 999`` (``feature_operation.quantile_threshold``).

    Raises:
        ValueError: an unknown convention, or a level outside ``[0, 1]``.
    """
    if convention == "exact":
        level = 1.0 - quantile
    elif convention == "lite":
        level = int(LITE_READOUT * (1 - quantile) - 1) / (LITE_READOUT - 1)
    else:
        raise ValueError(f"quantile convention must be 'exact' or 'lite', got {convention!r}")
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"quantile {quantile} gives level {level} outside [0, 1]")
    return level


class TopQuantile:
    """Exact quantile per unit over a stream of activations (a running top-k).

    Args:
        num_units: number of units ``U``.
        total: number of values each unit will receive in total (images x positions).
        quantile: upper tail mass, e.g. 0.005.
        device: where the running top-k lives.
        convention: how ``quantile`` becomes a level, see :func:`quantile_level`.

    Raises:
        ValueError: ``total < 2`` or a bad convention.
    """

    def __init__(self, num_units: int, total: int, quantile: float, device: torch.device | str = "cpu",
                 convention: QuantileConvention = "exact") -> None:
        if total < 2:
            raise ValueError(f"need at least 2 values per unit, got {total}")
        position = quantile_level(quantile, convention) * (total - 1)
        self.low = min(math.floor(position), total - 1)
        self.fraction = position - self.low
        self.total = total
        self.k = total - self.low  # values of ascending ranks low..total-1
        self.top = torch.empty(num_units, 0, device=device)
        self.seen = 0

    def update(self, values: torch.Tensor) -> None:
        """Add a block of values ``(U, M)`` (M = positions in this batch); float32 is kept exactly."""
        merged = torch.cat([self.top, values.to(self.top.device, torch.float32)], dim=1)
        self.top = merged.topk(min(self.k, merged.shape[1]), dim=1, sorted=False).values
        self.seen += values.shape[1]

    def thresholds(self) -> torch.Tensor:
        """The per-unit thresholds ``(U,)`` float64.

        Raises:
            RuntimeError: fewer or more values were added than ``total``.
        """
        if self.seen != self.total:
            raise RuntimeError(f"expected {self.total} values per unit, got {self.seen}")
        descending = self.top.sort(dim=1, descending=True).values.double()  # [:, j] is ascending rank total-1-j
        lower = descending[:, self.total - 1 - self.low]
        upper = descending[:, max(self.total - 2 - self.low, 0)]
        return lower + self.fraction * (upper - lower)
