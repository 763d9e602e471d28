"""The tally as it was before issue 15 (dense per-pair counts over the batch's labels), kept as a reference.

``tests/test_dissection_engine.py`` checks that the sparse :class:`kdinterp.dissection.tally.Tally`
gives exactly its counts. This is the engine's code of commit 0dca39d, renamed ``DenseTally``;
the oracle (``tests/lite_oracle.py``) is the independent per-image reference.
"""

from __future__ import annotations

import numpy as np
import torch

from kdinterp.dissection.upsample import ActivePixels

CHUNK = 1 << 21


class DenseTally:
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
                 device: torch.device | str = "cpu", rule: str = "lite") -> None:
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
        self.intersection = torch.zeros(num_units, num_labels, dtype=torch.int64, device=self.device)
        self.unit_area = torch.zeros(num_units, num_categories, dtype=torch.int64, device=self.device)
        self.concept_area = torch.zeros(num_labels, dtype=torch.int64, device=self.device)
        self.num_images = 0

    @property
    def num_labels(self) -> int:
        """``L + 1``."""
        return len(self.concept_area)

    def update(self, active: ActivePixels, planes: torch.Tensor, scalars: torch.Tensor) -> None:
        """Add one batch.

        Args:
            active: the units' active pixels on the ``B`` images of the batch.
            planes: int64 ``(B, P, S)`` pixel labels (0 = unlabelled), P >= 0.
            scalars: int64 ``(B, K)`` image-level labels (0 = padding), K >= 0.
        """
        planes, scalars, active = planes.to(self.device), scalars.to(self.device), active.to(self.device)
        scalars = self.label_map.index_select(0, scalars.reshape(-1)).view(scalars.shape)
        count = active.pair_count()                                                # (M,) |active| per pair
        present = self._count_concepts(planes, scalars, active.num_pixels) > 0    # (L + 1,)
        touched = self._pixel_intersections(active, planes, present)              # (M, C)
        image_categories = self._image_intersections(active, count, scalars)      # (B, C)
        if self.rule == "lite":
            counted = touched | image_categories[active.pair_image]
        else:
            counted = (self._present_categories(planes) | image_categories)[active.pair_image]
        self.unit_area.index_add_(0, active.pair_unit, count[:, None] * counted)
        self.num_images += active.batch

    def _count_concepts(self, planes: torch.Tensor, scalars: torch.Tensor, pixels: int) -> torch.Tensor:
        """Add the batch's concept areas; return its pixel-label counts ``(L + 1,)`` (ignored labels zeroed).

        ``planes`` are raw labels, ``scalars`` already have the ignored labels set to 0.
        """
        counts = torch.bincount(planes.reshape(-1), minlength=self.num_labels) * (self.label_map > 0)
        self.concept_area += counts
        labels = scalars[scalars > 0]
        self.concept_area.index_add_(0, labels, torch.full_like(labels, pixels))
        return counts

    def _pixel_intersections(self, active: ActivePixels, planes: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Add pixel-label intersections; return which categories each pair's active pixels touch ``(M, C)``.

        ``present``: bool ``(L + 1,)``, the labels in this batch's planes. The per-pair bincount runs
        over those labels only (Lite's ``bt``, restricted to the columns that can be non-zero), in
        one ``bincount`` over all planes (a pixel labelled l in two planes counts twice).
        """
        pairs, (batch, num_planes, pixels) = active.pair_image.shape[0], planes.shape
        present = present.nonzero()[:, 0]
        if pairs == 0 or present.numel() == 0:
            return torch.zeros(pairs, self.category_onehot.shape[1], dtype=torch.bool, device=self.device)
        slot = torch.zeros(self.num_labels, dtype=torch.int64, device=self.device)
        slot[present] = torch.arange(1, present.numel() + 1, device=self.device)  # 0: unlabelled or ignored
        width = present.numel() + 1
        coded = slot.index_select(0, planes.transpose(1, 2).reshape(-1)).view(batch * pixels, num_planes)
        per_pair = torch.zeros(pairs * width, dtype=torch.int64, device=self.device)
        step = max(1, CHUNK // max(num_planes, 1))
        for start in range(0, active.pixel.shape[0], step):  # chunks bound the temporaries
            pixel_pair, pixel = active.pixel_pair[start:start + step], active.pixel[start:start + step]
            where = (active.pair_image * pixels).index_select(0, pixel_pair) + pixel                 # (n,)
            keys = coded.index_select(0, where) + (pixel_pair * width)[:, None]                      # (n, P)
            per_pair += torch.bincount(keys.reshape(-1), minlength=pairs * width)
        per_pair = per_pair.view(pairs, width)[:, 1:]
        per_unit = torch.zeros(self.intersection.shape[0], present.numel(), dtype=torch.int64, device=self.device)
        self.intersection[:, present] += per_unit.index_add_(0, active.pair_unit, per_pair)
        return ((per_pair > 0).float() @ self.category_onehot[present]) > 0

    def _image_intersections(self, active: ActivePixels, count: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
        """Add image-level-label intersections; return each image's image-level categories ``(B, C)``."""
        valid = scalars > 0
        labels = scalars[active.pair_image]                     # (M, K)
        pair_valid = valid[active.pair_image]
        cells = active.pair_unit[:, None] * self.num_labels + labels
        self.intersection.view(-1).index_add_(0, cells[pair_valid], count[:, None].expand_as(labels)[pair_valid])
        return (self.category_onehot[scalars] * valid[..., None]).sum(1) > 0

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
