"""Streaming IoU tally between unit masks and Broden concept masks (NetDissect-Lite semantics).

For every batch of probe images the caller gives the units' active pixels (:class:`ActivePixels`:
the activation map upsampled to the segmentation size, ``> threshold``; S = sh * sw pixels) and
the labels. Counts accumulate over the whole probe set as exact int64; this is Lite's
``tally_job`` (``research/dissection.md`` §1.3) done for a batch at once:

* ``intersection[u, l]``: active pixels of unit u lying on label l, summed over all label planes
  (a pixel labelled l in two planes counts twice, as in Lite); an image-level label covers the
  whole image, so it adds all of the unit's active pixels in that image.
* ``concept_area[l]``: pixels of label l (``S`` per image for an image-level label).
* ``unit_area[u, c]``: the unit's active pixels, counted on the images selected by the
  activation rule (param ``dissection.activation_rule``):

  * ``lite`` (default; Lite's ``tally_job``): images where some active pixel of the unit lies on
    a label of category c, or that have an image-level label of category c;
  * ``netdissect`` (the original NetDissect and gandissect, §1.6): images where category c is
    present anywhere (a pixel label or an image-level label of c).

The counting is sparse: only the active pixels' labels are gathered and counted (one ``bincount``
over (unit, label) keys per batch and tally), and only the (image, unit) pairs that pass Lite's
gate ``max > T_u`` carry active pixels (:func:`~kdinterp.dissection.upsample.active_pixels`). A
batch's labels are prepared once (:meth:`Tally.prepare`) and shared by every tally of the batch
(the variants). Integer ops only, so the counts are exact on the CPU and on CUDA.

The dataset-level IoU is ``intersection / (unit_area[u, cat(l)] + concept_area - intersection)``.

Label 0 is "unlabelled" for pixels and image-level labels alike (Lite zeroes pixel bin 0 but
counts an image-level 0, pitfall P-C4; we drop it), and so is any label without a primary
category among the selected ones (``label_category == -1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from kdinterp.dissection.upsample import ActivePixels

__all__ = ["ActivationRule", "BatchLabels", "Tally"]

ActivationRule = Literal["lite", "netdissect"]

#: Active-pixel labels handled at once (bounds the temporaries, see ``upsample.MAX_UPSAMPLED``).
CHUNK = 1 << 21


@dataclass(frozen=True)
class BatchLabels:
    """One batch's labels, prepared once (:meth:`Tally.prepare`) for every tally of the batch.

    Attributes:
        batch: images ``B``.
        pixels: pixels per segmentation ``S``.
        planes: int64 ``(B, P, S)`` raw pixel labels, contiguous.
        scalars: int64 ``(B, K)`` image-level labels, ignored labels set to 0.
        concept_counts: int64 ``(L + 1,)`` what the batch adds to ``concept_area``.
        image_categories: bool ``(B, C)``: the categories of each image's image-level labels.
        present_categories: bool ``(B, C)``: categories with a pixel label in the image (rule
            ``netdissect`` only, else None).
    """

    batch: int
    pixels: int
    planes: torch.Tensor
    scalars: torch.Tensor
    concept_counts: torch.Tensor
    image_categories: torch.Tensor
    present_categories: torch.Tensor | None


class Tally:
    """Accumulates intersections, unit areas and concept areas over batches.

    Args:
        num_units: ``U``.
        label_category: ``(L + 1,)`` primary-category index per label, -1 to ignore a label
            (label 0 and labels in no selected category).
        num_categories: ``C``.
        device: where the batch arithmetic runs; the totals are kept there as int64.
        rule: the activation term, ``lite`` or ``netdissect`` (module docstring).

    Raises:
        ValueError: an unknown rule.
    """

    def __init__(self, num_units: int, label_category: np.ndarray, num_categories: int,
                 device: torch.device | str = "cpu", rule: ActivationRule = "lite") -> None:
        if rule not in ("lite", "netdissect"):
            raise ValueError(f"activation rule must be 'lite' or 'netdissect', got {rule!r}")
        self.rule = rule
        self.device = torch.device(device)
        self.label_category = torch.as_tensor(label_category, dtype=torch.int64, device=self.device)
        num_labels = len(label_category)
        counted = self.label_category >= 0
        self.label_map = torch.where(counted, torch.arange(num_labels, device=self.device), 0)  # ignored -> 0
        self.category_onehot = torch.zeros(num_labels, num_categories, device=self.device)
        self.category_onehot[counted, self.label_category[counted]] = 1.0  # Lite's labelcat, built right
        self.category_slot = (self.label_category + 1) * counted     # category + 1; 0: unlabelled or ignored
        self.intersection = torch.zeros(num_units, num_labels, dtype=torch.int64, device=self.device)
        self.unit_area = torch.zeros(num_units, num_categories, dtype=torch.int64, device=self.device)
        self.concept_area = torch.zeros(num_labels, dtype=torch.int64, device=self.device)
        self.num_images = 0

    @property
    def num_labels(self) -> int:
        """``L + 1``."""
        return len(self.concept_area)

    def prepare(self, planes: torch.Tensor, scalars: torch.Tensor, pixels: int | None = None) -> BatchLabels:
        """A batch's labels in the form :meth:`add` reads; one preparation serves every tally of the batch
        built with the same ``label_category``, ``num_categories`` and rule.

        Args:
            planes: int64 ``(B, P, S)`` pixel labels (0 = unlabelled), P >= 0.
            scalars: int64 ``(B, K)`` image-level labels (0 = padding), K >= 0.
            pixels: ``S``, the area of an image-level label (default ``planes.shape[2]``).
        """
        planes = planes.to(self.device).contiguous()
        scalars = scalars.to(self.device)
        scalars = self.label_map.index_select(0, scalars.reshape(-1)).view(scalars.shape)
        pixels = planes.shape[2] if pixels is None else pixels
        concepts = torch.bincount(planes.reshape(-1), minlength=self.num_labels) * (self.label_map > 0)
        labels = scalars[scalars > 0]
        concepts.index_add_(0, labels, torch.full_like(labels, pixels))
        image_categories = (self.category_onehot[scalars] * (scalars > 0)[..., None]).sum(1) > 0
        present = self._present_categories(planes) if self.rule == "netdissect" else None
        return BatchLabels(planes.shape[0], pixels, planes, scalars, concepts, image_categories, present)

    def update(self, active: ActivePixels, planes: torch.Tensor, scalars: torch.Tensor) -> None:
        """Add one batch: ``add(active, prepare(planes, scalars))``.

        Args:
            active: the units' active pixels on the ``B`` images of the batch.
            planes: int64 ``(B, P, S)`` pixel labels (0 = unlabelled), P >= 0.
            scalars: int64 ``(B, K)`` image-level labels (0 = padding), K >= 0.
        """
        self.add(active, self.prepare(planes, scalars, active.num_pixels))

    def add(self, active: ActivePixels, labels: BatchLabels) -> None:
        """Add one batch: the units' active pixels on its ``B`` images and its prepared labels."""
        active = active.to(self.device)
        count = active.pair_count()                                                # (M,) |active| per pair
        self.concept_area += labels.concept_counts
        touched = self._pixel_intersections(active, labels.planes)                # (M, C)
        self._image_intersections(active, count, labels.scalars)
        if self.rule == "lite":
            counted = touched | labels.image_categories[active.pair_image]
        else:
            counted = (labels.present_categories | labels.image_categories)[active.pair_image]
        self.unit_area.index_add_(0, active.pair_unit, count[:, None] * counted)
        self.num_images += active.batch

    def _pixel_intersections(self, active: ActivePixels, planes: torch.Tensor) -> torch.Tensor:
        """Add pixel-label intersections; return which categories each pair's active pixels touch ``(M, C)``.

        Sparse (Lite's ``bt`` without the dense per-unit pass): only the ``N`` active pixels' labels
        are gathered, from every plane (a pixel labelled l in two planes counts twice), and counted
        with one ``bincount`` over (unit, label) keys; a second ``bincount`` over (pair, category)
        keys gives the categories each pair touches. Unlabelled and ignored labels go to label 0
        (category slot 0), which is dropped. Exact int64 counts on any device.
        """
        pairs, (batch, num_planes, pixels) = active.pair_image.shape[0], planes.shape
        num_categories = self.category_onehot.shape[1]
        units, width = self.intersection.shape
        touched = torch.zeros(pairs * (num_categories + 1), dtype=torch.int64, device=self.device)
        if pairs == 0 or num_planes == 0 or active.pixel.shape[0] == 0:
            return touched.view(pairs, num_categories + 1)[:, 1:] > 0
        flat = planes.view(-1)
        plane_offset = torch.arange(num_planes, device=self.device) * pixels                         # (P,)
        intersection = torch.zeros(units * width, dtype=torch.int64, device=self.device)
        step = max(1, CHUNK // num_planes)
        for start in range(0, active.pixel.shape[0], step):  # chunks bound the temporaries
            pixel_pair, pixel = active.pixel_pair[start:start + step], active.pixel[start:start + step]
            first = active.pair_image.index_select(0, pixel_pair) * (num_planes * pixels) + pixel     # (n,)
            raw = flat.index_select(0, (first[:, None] + plane_offset).reshape(-1))                  # (n * P,)
            label = self.label_map.index_select(0, raw).view(-1, num_planes)                         # (n, P)
            unit = active.pair_unit.index_select(0, pixel_pair)
            intersection += torch.bincount(((unit * width)[:, None] + label).reshape(-1), minlength=units * width)
            slot = self.category_slot.index_select(0, label.reshape(-1)).view(-1, num_planes)        # (n, P)
            touched += torch.bincount(((pixel_pair * (num_categories + 1))[:, None] + slot).reshape(-1),
                                      minlength=pairs * (num_categories + 1))
        intersection = intersection.view(units, width)
        intersection[:, 0] = 0  # unlabelled or ignored
        self.intersection += intersection
        return touched.view(pairs, num_categories + 1)[:, 1:] > 0

    def _image_intersections(self, active: ActivePixels, count: torch.Tensor, scalars: torch.Tensor) -> None:
        """Add image-level-label intersections: every active pixel of a pair lies on its image's labels."""
        valid = scalars > 0
        labels = scalars[active.pair_image]                     # (M, K)
        pair_valid = valid[active.pair_image]
        cells = active.pair_unit[:, None] * self.num_labels + labels
        self.intersection.view(-1).index_add_(0, cells[pair_valid], count[:, None].expand_as(labels)[pair_valid])

    def _present_categories(self, planes: torch.Tensor) -> torch.Tensor:
        """Categories with a pixel label anywhere in each image ``(B, C)``."""
        batch = planes.shape[0]
        present = torch.zeros(batch, self.num_labels, dtype=torch.bool, device=self.device)
        present.scatter_(1, planes.reshape(batch, -1), True)
        return (present.float() @ self.category_onehot) > 0  # label 0 and ignored labels: all-zero rows

    def iou(self) -> torch.Tensor:
        """Dataset-level IoU ``(U, L + 1)`` float64; 0 where the union is empty or the label ignored."""
        counted = self.label_category >= 0
        unit_area = self.unit_area[:, self.label_category.clamp(min=0)]  # (U, L+1): area of the label's category
        union = (unit_area + self.concept_area[None, :] - self.intersection).double()
        iou = torch.where(union > 0, self.intersection.double() / union.clamp(min=1), 0.0)
        return iou * counted[None, :]
