"""Streaming IoU tally between unit masks and Broden concept masks (NetDissect-Lite semantics).

For every batch of probe images the caller gives boolean unit masks ``(B, U, S)`` (the unit's
activation map upsampled to the segmentation size, ``> threshold``; S = sh * sw pixels) and the
labels. Counts accumulate over the whole probe set as exact int64 (``research/dissection.md`` §1.3):

* ``intersection[u, l]``: active pixels of unit u lying on label l, summed over all label planes
  (a pixel labelled l in two planes counts twice, as in Lite); an image-level label covers the
  whole image, so it adds all of the unit's active pixels in that image.
* ``concept_area[l]``: pixels of label l (``S`` per image for an image-level label).
* ``unit_area[u, c]``: active pixels of unit u counted only on images where some active pixel
  lies on a label of category c, or the image has an image-level label of category c (Lite's
  category-restricted activation term).

The dataset-level IoU is ``intersection / (unit_area[u, cat(l)] + concept_area - intersection)``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["Tally"]


class Tally:
    """Accumulates intersections, unit areas and concept areas over batches.

    Args:
        num_units: ``U``.
        label_category: ``(L + 1,)`` primary-category index per label, -1 to ignore a label
            (label 0 and labels in no selected category).
        num_categories: ``C``.
        device: where the batch arithmetic runs; the totals are kept there as int64.
    """

    def __init__(self, num_units: int, label_category: np.ndarray, num_categories: int,
                 device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.label_category = torch.as_tensor(label_category, dtype=torch.int64, device=self.device)
        num_labels = len(label_category)
        counted = self.label_category >= 0
        self.category_onehot = torch.zeros(num_labels, num_categories, device=self.device)
        self.category_onehot[counted, self.label_category[counted]] = 1.0
        self.intersection = torch.zeros(num_units, num_labels, dtype=torch.int64, device=self.device)
        self.unit_area = torch.zeros(num_units, num_categories, dtype=torch.int64, device=self.device)
        self.concept_area = torch.zeros(num_labels, dtype=torch.int64, device=self.device)
        self.num_images = 0

    def update(self, masks: torch.Tensor, planes: torch.Tensor, scalars: torch.Tensor) -> None:
        """Add one batch.

        Args:
            masks: bool ``(B, U, S)`` unit masks at segmentation resolution.
            planes: int64 ``(B, P, S)`` pixel labels (0 = unlabelled), P >= 0.
            scalars: int64 ``(B, K)`` image-level labels (0 = padding), K >= 0.
        """
        masks, planes, scalars = (t.to(self.device) for t in (masks, planes, scalars))
        planes = torch.where(self.label_category[planes] >= 0, planes, 0)
        scalars = torch.where(self.label_category[scalars] >= 0, scalars, 0)
        batch, units, pixels = masks.shape
        image, unit, pixel = masks.nonzero(as_tuple=True)  # the active (image, unit, pixel) triples
        active = torch.bincount(image * units + unit, minlength=batch * units).view(batch, units)
        hit = self._pixel_labels(image, unit, pixel, planes, batch, units)  # (B, U, C) bool
        hit |= self._image_labels(active, scalars, pixels)[:, None, :]
        self.unit_area += (active[:, :, None] * hit).sum(0)
        self.num_images += batch

    def _pixel_labels(self, image: torch.Tensor, unit: torch.Tensor, pixel: torch.Tensor, planes: torch.Tensor,
                      batch: int, units: int) -> torch.Tensor:
        """Tally pixel labels; return which categories each unit's active pixels touch ``(B, U, C)``."""
        present = torch.unique(planes)
        present = present[present > 0]
        hit = torch.zeros(batch, units, self.category_onehot.shape[1], dtype=torch.bool, device=self.device)
        if present.numel() == 0:
            return hit
        self.concept_area += torch.bincount(planes.reshape(-1), minlength=len(self.concept_area)) * (
            torch.arange(len(self.concept_area), device=self.device) > 0)
        slot = torch.zeros(len(self.concept_area), dtype=torch.int64, device=self.device)
        slot[present] = torch.arange(1, present.numel() + 1, device=self.device)  # 0 = unlabelled
        width = present.numel() + 1
        cell = (image * units + unit) * width
        counts = torch.zeros(batch * units * width, dtype=torch.int64, device=self.device)
        for plane in range(planes.shape[1]):
            counts += torch.bincount(cell + slot[planes[image, plane, pixel]], minlength=counts.numel())
        per_image = counts.view(batch, units, width)[:, :, 1:]  # (B, U, n) intersections per image
        self.intersection[:, present] += per_image.sum(0)
        return (per_image.float() @ self.category_onehot[present]) > 0

    def _image_labels(self, active: torch.Tensor, scalars: torch.Tensor, pixels: int) -> torch.Tensor:
        """Tally image-level labels; return the categories each image has such labels in ``(B, C)``."""
        valid = scalars > 0
        if not valid.any():
            return torch.zeros(active.shape[0], self.category_onehot.shape[1], dtype=torch.bool, device=self.device)
        image_of = torch.arange(scalars.shape[0], device=self.device)[:, None].expand_as(scalars)[valid]
        labels = scalars[valid]
        self.intersection.index_add_(1, labels, active[image_of].T.contiguous())
        self.concept_area.index_add_(0, labels, torch.full_like(labels, pixels))
        return (self.category_onehot[scalars] * valid[..., None]).sum(1) > 0

    def iou(self) -> torch.Tensor:
        """Dataset-level IoU ``(U, L + 1)`` float64; 0 where the union is empty or the label ignored."""
        counted = self.label_category >= 0
        unit_area = self.unit_area[:, self.label_category.clamp(min=0)]  # (U, L+1): area of the label's category
        union = (unit_area + self.concept_area[None, :] - self.intersection).double()
        iou = torch.where(union > 0, self.intersection.double() / union.clamp(min=1), 0.0)
        return iou * counted[None, :]
