"""The per-unit test of :mod:`kdinterp.dissection.calibrated`: concept selection on half A, X on half B, the null.

For unit u with concept c (chosen on A), ``J`` the images of B where c's category is present:
``X[i, j] = |U_i ∩ C_j|`` (pixels) is one sparse product, ``U (|J|, S) @ C (|J|, S)^T`` of 0/1
CSR matrices (an image-level label covers its whole image: ``X[i, j] = |U_i|``). Its trace is the
observed intersection T; its row and column structure gives the permutation null (Hoeffding 1951
moments, or Monte Carlo permutations). Benjamini-Hochberg (1995) over the units ends the test.
"""

from __future__ import annotations

import numpy as np
import torch

from kdinterp.dissection.calibrated import (
    CalibratedCollector,
    CalibratedOptions,
    CalibratedResult,
    benjamini_hochberg,
    normal_p_value,
    permutation_moments,
    permutation_p_value,
    sparse_rows,
)

__all__ = ["calibrated_detectors", "intersection_matrix", "run_tests", "select_concepts"]


def select_concepts(iou_a: np.ndarray, label_category: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's concept: the label with the highest IoU on A (ties: the lowest label number).

    Args:
        iou_a: ``(U, L + 1)`` float64 IoU on half A.
        label_category: ``(L + 1,)`` category index per label, -1 to ignore.

    Returns:
        ``(concept, iou)``: int64 ``(U,)`` (0 where the unit's best IoU is 0) and float64 ``(U,)``.
    """
    masked = np.where(label_category[None, :] >= 0, iou_a, -1.0)
    concept = masked.argmax(1)
    iou = np.maximum(masked[np.arange(len(concept)), concept], 0.0)
    return np.where(iou > 0, concept, 0).astype(np.int64), iou


def intersection_matrix(unit_rows: np.ndarray, unit_pixels: np.ndarray, concept_rows: np.ndarray,
                        concept_pixels: np.ndarray, whole: np.ndarray, num_pixels: int) -> np.ndarray:
    """``X[i, j] = |U_i ∩ C_j|`` (pixels) over the ``n`` images of ``J``, float64 ``(n, n)``.

    Args:
        unit_rows, unit_pixels: the unit's active pixels: row in ``J`` and flat pixel, int64 ``(m,)``.
        concept_rows, concept_pixels: the concept's labelled pixels, likewise (each pixel once per image).
        whole: bool ``(n,)``: the concept is an image-level label of image j (``C_j`` is the whole image).
        num_pixels: ``S``.
    """
    n = len(whole)
    unit = sparse_rows(unit_rows, unit_pixels, (n, num_pixels))
    concept = sparse_rows(concept_rows, concept_pixels, (n, num_pixels))
    x = (unit @ concept.T).toarray()
    if whole.any():
        x[:, whole] = np.asarray(unit.sum(1))                                     # |U_i| for every such j
    return x


def run_tests(collector: CalibratedCollector, options: CalibratedOptions) -> CalibratedResult:
    """The calibrated detectors of the collected layer (:mod:`kdinterp.dissection.calibrated`): select each
    unit's concept on A, test it on B, and control the FDR over the units.

    Raises:
        RuntimeError: not every probe image was added to ``collector``.
    """
    collector.check_complete()
    units, (_, b) = collector.num_units, collector.split
    cat = collector.label_category
    concept, iou_a = select_concepts(collector.tally_a.iou().numpy(), cat)
    out = {k: np.zeros(units) for k in ("iou_b", "intersection_b", "null_mean", "null_sd", "z")}
    p, images_b = np.ones(units), np.zeros(units, dtype=np.int64)
    u_image, u_unit, u_pixel = collector.unit_pixels()
    u_bounds = np.searchsorted(u_unit, np.arange(units + 1))
    l_label, l_image, l_pixel = collector.label_pixels()
    l_bounds = np.searchsorted(l_label, np.arange(len(cat) + 1))
    s_image, s_label = collector.image_labels()
    present = collector.present.numpy()
    generator = torch.Generator().manual_seed(options.split_seed)
    permutations: dict[int, torch.Tensor] = {}
    for u in np.flatnonzero(concept > 0):
        lab = int(concept[u])
        j = b[present[b, cat[lab]]]
        images_b[u] = len(j)
        if len(j) < 2:
            continue
        row = np.full(collector.num_images, -1, dtype=np.int64)
        row[j] = np.arange(len(j))
        us, ls = slice(u_bounds[u], u_bounds[u + 1]), slice(l_bounds[lab], l_bounds[lab + 1])
        ur, cr = row[u_image[us]], row[l_image[ls]]
        whole = np.zeros(len(j), dtype=bool)
        whole[row[s_image[s_label == lab]]] = True                               # every B image-level label is in J
        x = intersection_matrix(ur[ur >= 0], u_pixel[us][ur >= 0], cr[cr >= 0], l_pixel[ls][cr >= 0], whole,
                                collector.num_pixels)
        observed = float(np.trace(x))
        area_u = float((ur >= 0).sum())
        area_c = float(np.bincount(cr[cr >= 0], minlength=len(j))[~whole].sum() + whole.sum() * collector.num_pixels)
        union = area_u + area_c - observed
        out["iou_b"][u] = observed / union if union > 0 else 0.0
        out["intersection_b"][u] = observed
        mean, sd = permutation_moments(x)
        out["null_mean"][u], out["null_sd"][u] = mean, sd
        if sd == 0:
            continue
        out["z"][u] = (observed - mean) / sd
        if options.null == "normal":
            p[u] = normal_p_value(out["z"][u])
        else:
            if len(j) not in permutations:
                draws = torch.rand(options.permutations, len(j), generator=generator)
                permutations[len(j)] = torch.argsort(draws, dim=1)
            p[u] = permutation_p_value(x, permutations[len(j)])
    q = benjamini_hochberg(p)
    detector = (q <= options.fdr) & (out["iou_b"] >= options.min_iou) & (concept > 0)
    category = np.where(concept > 0, cat[concept], -1)
    return CalibratedResult(concept=concept, category=category, iou_a=iou_a, p=p, q=q, detector=detector,
                            images_b=images_b, split=collector.split, options=options, **out)


def calibrated_detectors(activations: torch.Tensor, thresholds: torch.Tensor, planes: torch.Tensor,
                         scalars: torch.Tensor, label_category: np.ndarray, num_categories: int,
                         size: tuple[int, int], options: CalibratedOptions = CalibratedOptions(),
                         strata: np.ndarray | None = None, batch_size: int = 100) -> CalibratedResult:
    """Calibrated detectors of one layer from its activations held whole (tests, timing; the engine streams).

    Args:
        activations: float ``(N, U, h, w)`` raw layer output on the probe images.
        thresholds: ``(U,)`` per-unit thresholds (e.g. :class:`~kdinterp.dissection.thresholds.TopQuantile`).
        planes: int ``(N, P, S)`` pixel labels; scalars: int ``(N, K)`` image-level labels (0: none).
        label_category: ``(L + 1,)`` category index per label, -1 to ignore (label 0 included).
        num_categories: C.
        size: ``(sh, sw)``, ``S = sh * sw``.
        options: the test's settings; ``options.split_seed`` and ``strata`` give the split (:func:`split_halves`).
        batch_size: images upsampled at once.

    Raises:
        ValueError: fewer than 2 images, or strata of the wrong shape.
    """
    from kdinterp.dissection.calibrated import split_halves
    from kdinterp.dissection.upsample import active_pixels

    n, units = activations.shape[:2]
    collector = CalibratedCollector(n, units, label_category, num_categories,
                                    split_halves(n, options.split_seed, strata))
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        collector.add(start, active_pixels(activations[start:stop], thresholds, size), planes[start:stop],
                      scalars[start:stop])
    return run_tests(collector, options)
