"""Per-unit activation thresholds: an exact upper quantile, computed in one streaming pass.

The threshold of a unit is the exact quantile at level ``1 - quantile`` (0.995 for the paper's
0.005) of all ``n`` raw (not upsampled) activations of the unit over the probe set, with numpy's
``linear`` rule: with the values sorted ascending, ``pos = level * (n - 1)`` and the threshold is
``v[floor(pos)] + frac(pos) * (v[floor(pos) + 1] - v[floor(pos)])``, interpolated in float64.
Only the top ``n - floor(pos)`` values per unit can enter that formula, so a running top-k per unit
is enough: memory is ``units * k`` with ``k ~= quantile * n`` (0.5 % of the activations), never all
of them.

This is the only convention. NetDissect-Lite (``research/dissection.md`` §1.2) *estimates* the
quantile with a seeded KLL sketch (``util/vecquantile.py``) read out at ``linspace(0, 1, 1000)``,
column ``int(1000 * (1 - quantile) - 1)`` (nominal level ``994 / 999`` for 0.005). Its value
depends on the sketch's compactions and readout rule (each retained sample placed at the midpoint
of its cumulative weight), which sit about 0.4 % away from the exact quantile at either level
(issue 15); an exact quantile at Lite's nominal level does not reproduce them, so no such option
is offered. For parity with a Lite run, feed Lite's own thresholds to the tally.
"""

from __future__ import annotations

import math

import torch

__all__ = ["TopQuantile", "quantile_level"]


def quantile_level(quantile: float) -> float:
    """The quantile level whose value becomes the threshold: ``1 - quantile``.

    Args:
        quantile: upper tail mass, e.g. 0.005.

    Raises:
        ValueError: a level outside ``[0, 1]``.
    """
    level = 1.0 - quantile
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

    Raises:
        ValueError: ``total < 2`` or a quantile outside ``[0, 1]``.
    """

    def __init__(self, num_units: int, total: int, quantile: float, device: torch.device | str = "cpu") -> None:
        if total < 2:
            raise ValueError(f"need at least 2 values per unit, got {total}")
        position = quantile_level(quantile) * (total - 1)
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
