"""Where the dissected layer's activations wait between the threshold pass and the tally pass.

NetDissect-Lite runs the model once and keeps every activation in a float64 memmap
(``<layer>.mmap``, ``research/dissection.md`` §1.1); the tally then reads it back. Here the layer's
output is kept as the model produced it (float32, so the tally sees exactly the values the
thresholds were computed from), in one of three ways (param ``dissection.activations``):

* ``auto`` (default): in memory when the whole probe set's activations, ``N * U * h * w * 4``
  bytes, fit in ``dissection.activation_memory_mb``; otherwise on disk.
* ``disk``: always on disk, in a float32 ``np.memmap`` file in a temporary directory (the stage
  puts it in the model's dissection output directory). Each batch is written and read through its
  own short-lived mapping of just that batch's rows, so no mapping of the whole file stays
  resident: peak memory does not grow with the number of images (the file pages go to the page
  cache, which the kernel can drop). The file is deleted when the store is closed, also on error.
* ``recompute``: keep nothing; the tally pass runs the model again (cheaper than disk on a GPU).

For Broden's 63,305 images and ResNet-18 ``layer4`` (512 units, 7x7) the file is 6.4 GB.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import torch

__all__ = ["ActivationStorage", "ActivationStore"]

ActivationStorage = Literal["auto", "disk", "recompute"]


class ActivationStore:
    """Activations ``(N, U, h, w)`` float32, written batch by batch in probe order, read back by image range.

    Use as a context manager: :meth:`close` (on exit) deletes the memmap file.

    Args:
        storage: ``auto``, ``disk`` or ``recompute`` (module docstring).
        num_images: ``N``, the probe images that will be added.
        memory_bytes: ``auto`` keeps the activations in memory up to this many bytes.
        directory: where ``disk`` creates its temporary directory (None: the system's temp directory).

    Raises:
        ValueError: an unknown storage.
    """

    def __init__(self, storage: ActivationStorage, num_images: int, memory_bytes: int,
                 directory: str | Path | None = None) -> None:
        if storage not in ("auto", "disk", "recompute"):
            raise ValueError(f"activations must be 'auto', 'disk' or 'recompute', got {storage!r}")
        self.storage, self.num_images, self.memory_bytes = storage, num_images, memory_bytes
        self.directory = directory
        self.where: Literal["memory", "disk", "none"] | None = None  # decided by the first batch
        self.written = 0
        self._batches: list[torch.Tensor] = []
        self._tmp: Path | None = None
        self.path: Path | None = None
        self._shape: tuple[int, ...] = ()

    @property
    def kept(self) -> bool:
        """Whether the activations are kept (False: ``recompute``); known after the first :meth:`append`."""
        return self.where in ("memory", "disk")

    def _open(self, shape: tuple[int, ...]) -> None:
        self._shape = shape
        size = self.num_images * int(np.prod(shape)) * 4
        if self.storage == "recompute":
            self.where = "none"
        elif self.storage == "auto" and size <= self.memory_bytes:
            self.where = "memory"
        else:
            self.where = "disk"
            if self.directory is not None:
                Path(self.directory).mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(prefix=".activations.", dir=self.directory))
            self.path = self._tmp / "activations.f32"
            np.memmap(self.path, dtype=np.float32, mode="w+", shape=(self.num_images, *shape)).flush()  # sparse

    def _rows(self, start: int, stop: int, mode: str) -> np.memmap:
        """A mapping of images ``[start, stop)`` only."""
        row = int(np.prod(self._shape)) * 4
        return np.memmap(self.path, dtype=np.float32, mode=mode, offset=start * row, shape=(stop - start, *self._shape))

    def append(self, activations: torch.Tensor) -> None:
        """Add the next batch ``(B, U, h, w)`` (any float dtype; kept as float32).

        Raises:
            ValueError: more images than ``num_images``, or a batch shape unlike the first.
        """
        if self.where is None:
            self._open(tuple(activations.shape[1:]))
        batch = activations.shape[0]
        if tuple(activations.shape[1:]) != self._shape or self.written + batch > self.num_images:
            raise ValueError(f"batch {tuple(activations.shape)} does not fit a store of {self.num_images} x "
                             f"{self._shape} with {self.written} images written")
        if self.where == "memory":
            self._batches.append(activations.to(torch.float32, copy=True))
        elif self.where == "disk":
            rows = self._rows(self.written, self.written + batch, "r+")
            rows[:] = activations.detach().to("cpu", torch.float32).numpy()
            del rows  # unmapped: the written pages stay in the page cache (no msync needed to read them back)
        self.written += batch

    def get(self, start: int, stop: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Images ``[start, stop)`` ``(stop - start, U, h, w)`` float32 on ``device``.

        Raises:
            RuntimeError: nothing is kept (``recompute``) or not all images were written.
        """
        if not self.kept or self.written != self.num_images:
            raise RuntimeError(f"activations not kept ({self.where}) or incomplete ({self.written}/{self.num_images})")
        if self.where == "disk":
            rows = self._rows(start, stop, "r")
            out = torch.from_numpy(np.array(rows))
            del rows
            return out.to(device)
        parts = self._slices(start, stop)
        return (parts[0] if len(parts) == 1 else torch.cat(parts)).to(device)

    def _slices(self, start: int, stop: int) -> list[torch.Tensor]:
        out, first = [], 0
        for batch in self._batches:
            last = first + batch.shape[0]
            if last > start and first < stop:
                out.append(batch[max(start - first, 0):min(stop, last) - first])
            first = last
        return out

    def close(self) -> None:
        """Drop the activations and delete the memmap file (if any)."""
        self._batches = []
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> ActivationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
