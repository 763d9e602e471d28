"""The probe images on which each unit fires most strongly (for the report's image strips).

NetDissect-Lite stores every image's per-unit maximum (``<layer>_max.mmap``) and sorts it after
feature extraction to draw the top images of each unit (``research/dissection.md`` §1.1, §3.1).
Here the same ranking is kept as an exact running top-k while the activations stream by: memory
is ``U * (k + B) * h * w`` floats, independent of the number of probe images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["TopImages", "TopImagesResult"]


@dataclass(frozen=True)
class TopImagesResult:
    """The ``k`` top-activating images of every unit, best first (``k = min(top_images, images)``).

    Attributes:
        image_index: ``(U, k)`` int64 positions in the probe set (``load_broden(...).rows``, i.e.
            the rows kept by the reader, in ``index.csv`` order).
        max_activation: ``(U, k)`` float32, the unit's maximum raw activation on that image.
        maps: ``(U, k, h, w)`` float32, the unit's raw activation map on that image (layer
            resolution; upsample and compare with the unit's threshold to draw its mask).
    """

    image_index: np.ndarray
    max_activation: np.ndarray
    maps: np.ndarray

    def save(self, path) -> None:
        """Write the three arrays to an ``.npz`` file (``path``: a file name or a binary file)."""
        np.savez(path, image_index=self.image_index, max_activation=self.max_activation, maps=self.maps)


class TopImages:
    """Running top-k of images per unit by maximum activation; ties: the lower image index first.

    Args:
        k: images to keep per unit (>= 1).
    """

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"top_images must be >= 1, got {k}")
        self.k = k
        self.values: torch.Tensor | None = None  # (U, k') descending
        self.index: torch.Tensor | None = None   # (U, k')
        self.maps: torch.Tensor | None = None    # (U, k', h, w)
        self.seen = 0

    def update(self, activations: torch.Tensor) -> None:
        """Add the next batch of images, ``activations (B, U, h, w)`` of the layer."""
        batch = activations.shape[0]
        maps = activations.detach().float().transpose(0, 1)                 # (U, B, h, w)
        values = maps.flatten(2).amax(2)                                    # (U, B)
        index = torch.arange(self.seen, self.seen + batch, device=maps.device).expand_as(values)
        self.seen += batch
        if self.values is not None:
            values = torch.cat([self.values, values], dim=1)
            index = torch.cat([self.index, index], dim=1)
            maps = torch.cat([self.maps, maps], dim=1)
        # Kept entries come first and have lower indices than the batch, and both parts are in
        # ascending index order among equal values, so a stable sort breaks ties by index.
        order = values.sort(dim=1, descending=True, stable=True).indices[:, : self.k]
        self.values = values.gather(1, order)
        self.index = index.gather(1, order)
        self.maps = maps[torch.arange(maps.shape[0], device=maps.device)[:, None], order]

    def result(self) -> TopImagesResult:
        """The top images so far, on the CPU.

        Raises:
            RuntimeError: no image was added.
        """
        if self.values is None:
            raise RuntimeError("no activations were added")
        return TopImagesResult(image_index=self.index.cpu().numpy().astype(np.int64),
                               max_activation=self.values.cpu().numpy(), maps=self.maps.cpu().numpy())
