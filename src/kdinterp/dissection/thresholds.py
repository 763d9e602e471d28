"""Per-unit activation thresholds: the exact top-``quantile`` value, computed in one streaming pass.

NetDissect-Lite estimates the threshold with a seeded KLL sketch and reads the quantile at level
994/999 (``research/dissection.md`` §1.2). We compute the *exact* quantile at level
``1 - quantile`` with numpy's default ("linear") interpolation between order statistics: with the
``n`` values of a unit sorted ascending, ``pos = level * (n - 1)`` and the threshold is
``v[floor(pos)] + frac(pos) * (v[floor(pos) + 1] - v[floor(pos)])``. Only the top
``n - floor(pos)`` values per unit can enter that formula, so a running top-k per unit is enough:
memory is ``units * k`` (k ~= quantile * n), never all activations.
"""

from __future__ import annotations

import math

import torch

__all__ = ["TopQuantile"]


class TopQuantile:
    """Exact upper quantile per unit over a stream of activations.

    Args:
        num_units: number of units ``U``.
        total: number of values each unit will receive in total (images x positions).
        quantile: upper tail mass, e.g. 0.005 (the threshold is the ``1 - quantile`` quantile).
        device: where the running top-k lives.
    """

    def __init__(self, num_units: int, total: int, quantile: float, device: torch.device | str = "cpu") -> None:
        if total < 2:
            raise ValueError(f"need at least 2 values per unit, got {total}")
        position = (1.0 - quantile) * (total - 1)
        self.low = math.floor(position)
        self.fraction = position - self.low
        self.total = total
        self.k = total - self.low  # values of ascending ranks low..total-1
        self.top = torch.empty(num_units, 0, device=device)
        self.seen = 0

    def update(self, values: torch.Tensor) -> None:
        """Add a block of values ``(U, M)`` (M = positions in this batch)."""
        merged = torch.cat([self.top, values.to(self.top.device, torch.float32)], dim=1)
        self.top = merged.topk(min(self.k, merged.shape[1]), dim=1, sorted=True).values
        self.seen += values.shape[1]

    def thresholds(self) -> torch.Tensor:
        """The per-unit thresholds ``(U,)`` float32.

        Raises:
            RuntimeError: fewer or more values were added than ``total``.
        """
        if self.seen != self.total:
            raise RuntimeError(f"expected {self.total} values per unit, got {self.seen}")
        descending = self.top  # descending[:, j] is ascending rank total - 1 - j
        lower = descending[:, self.total - 1 - self.low]
        upper = descending[:, max(self.total - 2 - self.low, 0)]
        return lower + self.fraction * (upper - lower)
