"""Further tallies in the same dissection passes: other quantiles, and the rotated-basis control.

A *variant* is dissected alongside the main tally, from the same forward passes and the same
segmentation reads, and differs in two ways only:

* its threshold quantile (the sensitivity band over ``dissection.sensitivity.quantiles``);
* its basis: ``unit`` (the layer's own units) or ``rotated``, where the layer output ``A`` of shape
  ``(B, U, h, w)`` is replaced by ``Q A`` along the unit axis, ``Q`` a random orthogonal ``U x U``
  matrix. Bau et al. (CVPR 2017, §3.2, "Network Dissection: Quantifying Interpretability of Deep
  Visual Representations") use this control to show that interpretability is axis-aligned: a
  rotation keeps everything the layer represents but mixes its units, and the number of detectors
  drops. ``Q`` is drawn from the Haar measure by :func:`scipy.stats.ortho_group` with a fixed seed.

With ``Q`` the identity, the rotated variant is the unit basis exactly (every output is ``1 * a +
0 * others``, exact in float32 for finite activations); ``tests/test_dissection_variants.py`` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

__all__ = ["BASES", "BlockCounts", "Variant", "VariantResult", "random_rotation", "rotate"]

#: The bases a variant can use, in the order reports list them.
BASES: tuple[str, ...] = ("unit", "rotated")


@dataclass(frozen=True)
class Variant:
    """A further tally: thresholds at ``quantile`` of the layer output in ``basis``.

    Attributes:
        basis: ``unit`` or ``rotated``.
        quantile: upper tail mass of the per-unit (per-direction) thresholds.
        rotation: ``(U, U)`` orthogonal float32 matrix for ``rotated`` (None for ``unit``).
    """

    basis: str
    quantile: float
    rotation: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.basis not in BASES:
            raise ValueError(f"basis must be one of {BASES}, got {self.basis!r}")
        if (self.rotation is None) != (self.basis == "unit"):
            raise ValueError("a rotated variant needs a rotation matrix, a unit variant must not have one")

    def apply(self, activations: torch.Tensor) -> torch.Tensor:
        """The layer output in this variant's basis: ``(B, U, h, w)`` -> ``(B, U, h, w)``."""
        return activations if self.rotation is None else rotate(activations, self.rotation)


@dataclass(frozen=True)
class VariantResult:
    """A variant's thresholds and IoUs.

    Attributes:
        basis, quantile: as in :class:`Variant`.
        thresholds: ``(U,)`` float64.
        iou: ``(U, L + 1)`` float64 dataset-level IoU (0 for ignored labels).
    """

    basis: str
    quantile: float
    thresholds: np.ndarray
    iou: np.ndarray


@dataclass(frozen=True)
class BlockCounts:
    """The main tally's counts split over consecutive blocks of probe images (for the probe bootstrap).

    Summed over blocks they give the main tally exactly.

    Attributes:
        intersection: ``(K, U, L + 1)`` int64.
        unit_area: ``(K, U, C)`` int64.
        concept_area: ``(K, L + 1)`` int64.
        images: ``(K,)`` probe images per block.
    """

    intersection: np.ndarray
    unit_area: np.ndarray
    concept_area: np.ndarray
    images: np.ndarray


def random_rotation(units: int, seed: int) -> torch.Tensor:
    """A Haar-random orthogonal matrix ``(units, units)`` float32 (``scipy.stats.ortho_group``).

    Raises:
        ValueError: ``units < 2``.
    """
    if units < 2:
        raise ValueError(f"a rotation needs at least 2 units, got {units}")
    matrix = stats.ortho_group.rvs(units, random_state=np.random.default_rng(seed))
    return torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32))


def rotate(activations: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """``Q A`` along the unit axis: ``out[b, v, y, x] = sum_u Q[v, u] * A[b, u, y, x]``.

    Args:
        activations: ``(B, U, h, w)``.
        rotation: ``(U, U)``.

    Returns:
        ``(B, U, h, w)`` in the dtype and on the device of ``activations``.

    Raises:
        ValueError: the matrix does not match the number of units.
    """
    units = activations.shape[1]
    if rotation.shape != (units, units):
        raise ValueError(f"rotation is {tuple(rotation.shape)}, the layer has {units} units")
    q = rotation.to(activations.device, activations.dtype)
    return torch.einsum("vu,buhw->bvhw", q, activations).contiguous()
