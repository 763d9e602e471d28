"""Calibrated detectors: split-half concept selection, a permutation null per unit, and FDR control.

Network Dissection (Bau et al., CVPR 2017) calls a unit a *detector* when its best concept's
dataset-level IoU reaches a fixed threshold (0.04; 0.05 in the KD paper's code). That rule has no
null: the best of ~100 concepts is chosen and scored on the same images (selection bias), and
nothing says how much IoU a unit reaches from the concepts' areas and spatial layout alone. On the
concept world an untrained network passes it more often than trained ones. This module adds what
the fixed threshold lacks; the fixed-threshold count is kept beside it (``units.csv``).

1. **Split.** The probe images are split once, seeded, into halves A and B (:func:`split_halves`).
2. **Selection on A.** Each unit's concept is the one with the highest IoU on A (one concept per
   unit, as NetDissect labels a unit), with the "category present" area rule below.
3. **Test on B.** For unit u and its concept c, let ``J`` be the images of B where c's category is
   *present* (a pixel label of that category, or an image-level label of it), and
   ``X[i, j] = |U_i ∩ C_j|`` (pixels) for ``i, j`` in ``J``: unit u's mask on image i against
   concept c's mask on image j, both at segmentation resolution. The observed intersection is
   ``T = trace(X)``. The null pairs the *same* unit masks with the concept masks of *other* images
   of ``J``: ``T_pi = sum_i X[i, pi(i)]`` for a uniformly random permutation pi. This keeps both
   sets of masks (their areas and spatial priors, e.g. "sky is at the top") and breaks only their
   pairing within an image. The IoU on ``J``, ``T / (A_u + A_c - T)``, has ``A_u = sum_i |U_i|``
   and ``A_c = sum_j |C_j|`` invariant under pi, so testing T is testing the IoU.
4. **p-value.** ``null="permutation"``: Monte Carlo, ``p = (1 + #{T_pi >= T}) / (R + 1)`` with R
   permutations (shared by the units whose test uses the same ``J``). ``null="normal"``: the
   permutation distribution's exact mean and variance (Hoeffding, "A combinatorial central limit
   theorem", Ann. Math. Stat. 1951, :func:`permutation_moments`) and the upper normal tail of
   ``z = (T - E) / sd``. X is sparse and right-skewed, so the normal tail is anti-conservative far
   out; the permutation null is the default.
5. **FDR.** Benjamini-Hochberg (J. R. Stat. Soc. B 1995; ``scipy.stats.false_discovery_control``)
   over the units at level ``fdr``: a unit is a *calibrated detector* when its test is rejected and
   its IoU on B reaches ``min_iou`` (an effect-size floor; 0 by default).

Area rule: a unit's area counts all its active pixels on the images where the concept's category is
present (the original NetDissect's and gandissect's activation term, rule ``netdissect`` of
:mod:`~kdinterp.dissection.tally`, ``research/dissection.md`` §1.6), not NetDissect-Lite's
"touches the category" term, which depends on the pairing and is not invariant under the permutation.

Unit masks are those of the main tally (:func:`kdinterp.dissection.upsample.active_pixels` with the
thresholds of :class:`kdinterp.dissection.thresholds.TopQuantile`, computed on all probe images:
label-free, so A and B share them without leaking labels). :class:`CalibratedCollector` takes them
batch by batch during the tally pass, so no further forward pass is needed.

Shapes: N probe images, U units, S = sh * sw segmentation pixels, P pixel label planes per image,
K image-level label slots per image, L + 1 labels (0 = unlabelled), C categories.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from scipy import sparse, special, stats

from kdinterp.dissection.tally import Tally
from kdinterp.dissection.upsample import ActivePixels

__all__ = ["CalibratedCollector", "CalibratedOptions", "CalibratedResult", "Null", "benjamini_hochberg",
           "normal_p_value", "permutation_moments", "permutation_p_value", "select_images", "sparse_rows", "split_halves"]

Null = Literal["permutation", "normal"]


@dataclass(frozen=True)
class CalibratedOptions:
    """Settings of the test (``params.yaml`` ``dissection.calibrated``).

    Attributes:
        fdr: Benjamini-Hochberg level over the units, in (0, 1).
        split_seed: seeds the A/B split (``numpy.random.default_rng``) and the permutations (``torch.Generator``).
        permutations: R for ``null="permutation"`` (the smallest p-value is ``1 / (R + 1)``).
        null: ``permutation`` (Monte Carlo) or ``normal`` (Hoeffding's moments, normal tail).
        min_iou: a detector must also reach this IoU on B (0: significance alone).
        splits: the test is run on this many splits, seeded ``split_seed``, ``split_seed + 1``, ...
            (:meth:`per_split`); a count is then the mean over the splits (repeated sample splitting,
            which averages out the probe-set noise of one split).

    Raises:
        ValueError: a value outside its range or an unknown ``null``.
    """

    fdr: float = 0.05
    split_seed: int = 0
    permutations: int = 4999
    null: Null = "permutation"
    min_iou: float = 0.0
    splits: int = 1

    def per_split(self) -> tuple[CalibratedOptions, ...]:
        """The options of each split: ``splits`` copies with ``split_seed`` + 0, 1, ... and ``splits`` 1."""
        return tuple(replace(self, split_seed=self.split_seed + k, splits=1) for k in range(self.splits))

    def __post_init__(self) -> None:
        if self.splits < 1:
            raise ValueError(f"splits must be >= 1, got {self.splits}")
        if self.null not in ("permutation", "normal"):
            raise ValueError(f"null must be 'permutation' or 'normal', got {self.null!r}")
        if self.permutations < 1:
            raise ValueError(f"permutations must be >= 1, got {self.permutations}")
        if not 0.0 < self.fdr < 1.0:
            raise ValueError(f"fdr must be in (0, 1), got {self.fdr}")
        if not 0.0 <= self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in [0, 1], got {self.min_iou}")


@dataclass(frozen=True)
class CalibratedResult:
    """One row per unit; float64 ``(U,)`` arrays unless stated.

    Attributes:
        concept: int64: the concept (label number) chosen on half A; 0 if the unit overlaps nothing on A
            (then no test: p = q = 1, not a detector).
        category: int64: the concept's category index (-1 for concept 0).
        iou_a: its IoU on A (the selection score).
        iou_b: its IoU on B's images where the category is present (``J``).
        intersection_b, null_mean, null_sd: T, E T_pi and sd T_pi (pixels).
        z: ``(T - E) / sd`` (0 where sd is 0).
        p, q: the p-value and the BH-adjusted p-value.
        detector: bool: ``q <= fdr``, ``iou_b >= min_iou`` and a concept was chosen.
        images_b: int64: ``|J|``.
        split: ``(a, b)`` the probe image indices of the two halves (sorted int64).
        options: the settings.
    """

    concept: np.ndarray
    category: np.ndarray
    iou_a: np.ndarray
    iou_b: np.ndarray
    intersection_b: np.ndarray
    null_mean: np.ndarray
    null_sd: np.ndarray
    z: np.ndarray
    p: np.ndarray
    q: np.ndarray
    detector: np.ndarray
    images_b: np.ndarray
    split: tuple[np.ndarray, np.ndarray]
    options: CalibratedOptions

    @property
    def num_units(self) -> int:
        """``U``."""
        return len(self.concept)


def split_halves(num_images: int, seed: int = 0, strata: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded split of ``range(num_images)`` into halves A and B (sorted int64 index arrays).

    Args:
        num_images: N >= 2.
        seed: ``numpy.random.default_rng(seed)``.
        strata: optional ``(N,)`` labels (e.g. probe image kinds); each stratum is split in half
            (an odd stratum gives its extra image to A).

    Raises:
        ValueError: fewer than 2 images, or strata of the wrong shape.
    """
    if num_images < 2:
        raise ValueError(f"a split needs at least 2 images, got {num_images}")
    strata = np.zeros(num_images, dtype=np.int64) if strata is None else np.asarray(strata)
    if strata.shape != (num_images,):
        raise ValueError(f"strata must have shape ({num_images},), got {strata.shape}")
    rng = np.random.default_rng(seed)
    a, b = [], []
    for value in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == value))
        half = (len(members) + 1) // 2
        a.append(members[:half])
        b.append(members[half:])
    return np.sort(np.concatenate(a)).astype(np.int64), np.sort(np.concatenate(b)).astype(np.int64)


def select_images(active: ActivePixels, keep: torch.Tensor) -> ActivePixels:
    """The active pixels of the images ``keep`` (bool ``(B,)``) of a batch, the images renumbered ``0..keep.sum()-1``."""
    keep = keep.to(active.pair_image.device)
    new_image = torch.cumsum(keep.long(), 0) - 1
    pair_kept = keep[active.pair_image]
    new_pair = torch.cumsum(pair_kept.long(), 0) - 1
    pixel_kept = pair_kept[active.pixel_pair]
    return ActivePixels(int(keep.sum()), active.num_pixels, new_image[active.pair_image[pair_kept]],
                        active.pair_unit[pair_kept], new_pair[active.pixel_pair[pixel_kept]], active.pixel[pixel_kept])


def permutation_moments(x: torch.Tensor | np.ndarray) -> tuple[float, float]:
    """Exact mean and sd of ``sum_i x[i, pi(i)]`` over uniform permutations pi of ``range(n)`` (Hoeffding 1951).

    ``E = sum_ij x_ij / n`` and ``Var = sum_ij d_ij^2 / (n - 1)`` with
    ``d_ij = x_ij - rowmean_i - colmean_j + mean``.

    Args:
        x: ``(n, n)`` float, n >= 2.

    Raises:
        ValueError: x is not square or n < 2.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if x.ndim != 2 or x.shape[1] != n or n < 2:
        raise ValueError(f"x must be square with n >= 2, got shape {x.shape}")
    d = x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + x.mean()
    return float(x.sum() / n), float(np.sqrt((d * d).sum() / (n - 1)))


def permutation_p_value(x: np.ndarray, permutations: torch.Tensor) -> float:
    """Monte Carlo p-value ``(1 + #{T_pi >= T}) / (R + 1)`` of ``T = trace(x)``.

    Args:
        x: ``(n, n)`` float64, X[i, j] = |U_i ∩ C_j| (pixels).
        permutations: int64 ``(R, n)``, each row a permutation of ``range(n)``.

    Only rows of x with a non-zero entry enter the sums (the others add 0 to every ``T_pi``).
    """
    observed = float(np.trace(x))
    rows = np.flatnonzero(x.sum(1) > 0)
    if rows.size == 0:
        return 1.0
    n = x.shape[0]
    flat = torch.from_numpy(np.ascontiguousarray(x).reshape(-1))
    index = torch.from_numpy(rows * n)[None, :] + permutations[:, torch.from_numpy(rows)]
    draws = flat[index].sum(1)                                                           # (R,)
    exceed = int((draws >= observed - 1e-9).sum())
    return (1.0 + exceed) / (permutations.shape[0] + 1.0)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (Benjamini & Hochberg 1995) of the 1-D ``p``: reject at level alpha where ``q <= alpha``.

    ``scipy.stats.false_discovery_control(p, method="bh")``; an empty ``p`` gives an empty array.
    """
    p = np.asarray(p, dtype=np.float64)
    return p.copy() if p.size == 0 else np.asarray(stats.false_discovery_control(p, method="bh"))


class CalibratedCollector:
    """Collects what the test needs during the tally pass, batch by batch (probe order), then runs it.

    Half A goes into a :class:`~kdinterp.dissection.tally.Tally` with rule ``netdissect`` (the
    selection IoUs). Half B's unit pixels (image, unit, pixel) and labelled pixels (label, image,
    pixel; image-level labels as (image, label)) are kept sparse, int32: for the concept world's
    1500 probe images about ``|B| * U * S`` times the active fraction (~1 %) unit pixels.

    Args:
        num_images: N.
        num_units: U.
        label_category: ``(L + 1,)`` category index per label, -1 to ignore (label 0 included).
        num_categories: C.
        split: ``(a, b)`` from :func:`split_halves`.

    Raises:
        ValueError: the halves do not partition ``range(num_images)``.
    """

    def __init__(self, num_images: int, num_units: int, label_category: np.ndarray, num_categories: int,
                 split: tuple[np.ndarray, np.ndarray]) -> None:
        a, b = (np.asarray(h, dtype=np.int64) for h in split)
        if not np.array_equal(np.sort(np.concatenate([a, b])), np.arange(num_images)):
            raise ValueError(f"the halves ({len(a)} + {len(b)} images) do not partition the {num_images} probe images")
        self.num_images, self.num_units, self.split = num_images, num_units, (a, b)
        self.label_category = np.asarray(label_category, dtype=np.int64)
        self.in_b = torch.zeros(num_images, dtype=torch.bool)
        self.in_b[torch.from_numpy(b)] = True
        self.tally_a = Tally(num_units, self.label_category, num_categories, "cpu", "netdissect")
        self.present = torch.zeros(num_images, num_categories, dtype=torch.bool)     # (N, C), filled for B
        self._units: list[torch.Tensor] = []      # (3, m) image, unit, pixel
        self._labels: list[torch.Tensor] = []     # (3, m) label, image, pixel
        self._scalars: list[torch.Tensor] = []    # (2, m) image, label
        self.num_pixels = 0

    def add(self, start: int, active: ActivePixels, planes: torch.Tensor, scalars: torch.Tensor) -> None:
        """Add one batch of probe images ``[start, start + B)``.

        Args:
            start: the batch's first probe image.
            active: the units' active pixels on the batch (the main tally's).
            planes: int ``(B, P, S)`` pixel labels (0 unlabelled); scalars: int ``(B, K)`` image-level labels.
        """
        active = active.to("cpu")
        planes, scalars = planes.cpu(), scalars.cpu()
        self.num_pixels = active.num_pixels
        in_b = self.in_b[start:start + active.batch]
        in_a = ~in_b
        if in_a.any():
            self.tally_a.update(select_images(active, in_a), planes[in_a], scalars[in_a])
        if not in_b.any():
            return
        labels = self.tally_a.prepare(planes[in_b], scalars[in_b], active.num_pixels)
        images = torch.nonzero(in_b)[:, 0] + start                                        # global indices
        self.present[images] = labels.present_categories | labels.image_categories
        part = select_images(active, in_b)
        image = images[part.pair_image[part.pixel_pair]]
        self._units.append(torch.stack([image, part.pair_unit[part.pixel_pair], part.pixel]).int())
        label = self.tally_a.label_map[labels.planes]                                     # (b, P, S)
        row, _, pixel = torch.nonzero(label, as_tuple=True)
        # a label in two planes counts once: unique (label, row, pixel) keys, as one int64 each (fast 1-D unique)
        size, rows = active.num_pixels, len(images)
        key = torch.unique((label[label > 0].long() * rows + row) * size + pixel)
        found, pixel = key // size, key % size
        self._labels.append(torch.stack([found // rows, images[found % rows], pixel]).int())
        row, slot = torch.nonzero(labels.scalars, as_tuple=True)
        self._scalars.append(torch.stack([images[row], labels.scalars[row, slot]]).int())

    def check_complete(self) -> None:
        """Raise RuntimeError unless every probe image was added (before the test:
        :func:`kdinterp.dissection.calibrated_null.run_tests`)."""
        if self.tally_a.num_images != len(self.split[0]) or not self._units and len(self.split[1]):
            raise RuntimeError(f"collected {self.tally_a.num_images} images of half A ({len(self.split[0])}) and "
                               f"{'some' if self._units else 'no'} batches of half B; add every probe image")

    def unit_pixels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Half B's unit pixels ``(image, unit, pixel)``, int64 ``(M,)`` each, sorted by unit."""
        return _sorted_columns(self._units, 3, key=1)

    def label_pixels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Half B's labelled pixels ``(label, image, pixel)``, int64 ``(M,)`` each, sorted by label."""
        return _sorted_columns(self._labels, 3, key=0)

    def image_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Half B's image-level labels ``(image, label)``, int64 ``(M,)`` each."""
        return _sorted_columns(self._scalars, 2, key=1)[:2]


def _sorted_columns(parts: list[torch.Tensor], rows: int, key: int) -> tuple[np.ndarray, ...]:
    """The concatenated ``(rows, m)`` parts as ``rows`` int64 arrays, stably sorted by row ``key``."""
    stacked = torch.cat(parts, 1).numpy() if parts else np.zeros((rows, 0), dtype=np.int32)
    order = np.argsort(stacked[key], kind="stable")
    return tuple(stacked[r][order].astype(np.int64) for r in range(rows))


def normal_p_value(z: float) -> float:
    """Upper tail ``P(Z >= z)`` of the standard normal."""
    return float(0.5 * special.erfc(z / np.sqrt(2.0)))


def sparse_rows(rows: np.ndarray, columns: np.ndarray, shape: tuple[int, int]) -> sparse.csr_matrix:
    """A 0/1 float64 CSR matrix with ones at ``(rows, columns)`` (duplicates summed)."""
    return sparse.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=shape)
