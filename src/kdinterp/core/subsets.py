"""Evenly spread subsets of a sorted list of items (the image files of an ImageFolder, sorted by class).

One rule for every stage that scores a subset of images (saliency, DiffROAR): picking evenly over a
class-sorted list takes about the same number of images from every class.
"""

from __future__ import annotations

import numpy as np

__all__ = ["evenly_spread"]


def evenly_spread(count: int, wanted: int | None) -> np.ndarray:
    """Indices of ``wanted`` of ``count`` items spread evenly, first and last included: int64 ``(n,)``, increasing.

    ``round(linspace(0, count - 1, wanted))``; all ``count`` items (``arange(count)``) when ``wanted``
    is None or ``>= count``. For ``wanted <= count`` the rounded points are distinct, so ``n = wanted``.
    """
    if wanted is None or wanted >= count:
        return np.arange(count, dtype=np.int64)
    return np.unique(np.linspace(0, count - 1, wanted).round().astype(np.int64))
