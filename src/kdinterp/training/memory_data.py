"""Classification data decoded once into memory, augmented a whole batch at a time with tensor ops.

For small images (the concept world: 4,800 PNGs of 32 x 32 px, 15 MB decoded) decoding and
augmenting every image with PIL in every epoch costs more than the training step itself. Here an
ImageFolder tree is decoded once into a uint8 tensor, and the ``crop_flip`` recipe of
:func:`kdinterp.training.data.build_transform` is applied to a batch at once, on the training device:

* :func:`draw_crop_flip` draws per image a crop offset in the reflect-padded image and a flip,
  from an explicit ``torch.Generator``;
* :func:`crop_flip` gathers the crops (reflect padding by index arithmetic, one gather);
* :func:`to_normalized` converts to float and normalises.

:class:`TrainBatches` (one training epoch) and :class:`EvalBatches` (evaluation) are iterables
with ``len()``, standing in for DataLoaders. :class:`InMemoryImages` itself is also a map-style
data set (items ``(image, target)`` like ``ImageFolder`` with ``build_transform``), so code that
wraps a data set in a DataLoader (feature-KD preliminary stages) keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from kdinterp.core.params import DataParams
from kdinterp.training.decode_cache import cached_images
from kdinterp.training.folders import DataError, image_folder

__all__ = ["EvalBatches", "InMemoryImages", "TrainBatches", "crop_flip", "decoded_size", "draw_crop_flip",
           "to_normalized"]


def decoded_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of the image file at ``path`` (reads the header only)."""
    with Image.open(path) as image:
        return image.height, image.width


class InMemoryImages(Dataset):
    """An ImageFolder tree decoded once into a uint8 tensor.

    Same samples, order, class names and class indices as ``torchvision.datasets.ImageFolder(root)``
    (the listing is ImageFolder's own). Every file is decoded with PIL and ``convert("RGB")``, or the
    same bytes are read from the decode cache (:mod:`kdinterp.training.decode_cache`).

    Attributes:
        root: the tree's directory.
        classes, class_to_idx, samples: as ``ImageFolder`` (``samples``: ``[(path, class index)]``).
        images: uint8 ``(N, 3, H, W)``, the decoded pixels. Training set: as stored; evaluation set
            (``train=False``): already passed through ``Resize(S)`` + ``CenterCrop(S)`` (the
            evaluation geometry of ``crop_flip``; nothing happens to ``S x S`` images), so ``S x S``.
        targets: int64 ``(N,)``, the class indices (``ImageFolder.targets`` as a tensor).
        train: augment (``__getitem__``) or not.
        size, padding: ``S = data.image_size`` and ``S // 8``, the crop and its reflect padding.
        mean, std: the normalisation.

    Items (``dataset[i]``) are ``(float32 (3, S, S) normalised image, int class index)``, with the
    crop and flip drawn from the global RNG in training, like ``ImageFolder`` with
    ``build_transform(data, train)``. Training loops use :class:`TrainBatches` instead.

    Raises:
        DataError: ``root`` is not an ImageFolder tree; the images differ in size (the message
            names the first file that differs from the first image); the training images are
            too small for an ``S x S`` crop of the padded image.
    """

    def __init__(self, root: str | Path, data: DataParams, train: bool) -> None:
        folder = image_folder(root, transform=None)
        self.root = str(root)
        self.classes: list[str] = folder.classes
        self.class_to_idx: dict[str, int] = folder.class_to_idx
        self.samples: list[tuple[str, int]] = folder.samples
        self.targets = torch.tensor(folder.targets, dtype=torch.int64)
        self.train = train
        self.size, self.padding = data.image_size, data.image_size // 8
        self.mean, self.std = tuple(data.mean), tuple(data.std)
        geometry = None if train else v2.Compose([v2.Resize(self.size), v2.CenterCrop(self.size)])
        self.images = cached_images(self.samples, "as stored" if train else f"resize + center crop {self.size}",
                                    lambda: self._decode(geometry))
        height, width = self.images.shape[-2:]
        if train and (height + 2 * self.padding < self.size or width + 2 * self.padding < self.size
                      or self.padding >= min(height, width)):
            raise DataError(f"{self.root}: images of {height}x{width} px are too small for a {self.size} px crop "
                            f"with {self.padding} px reflect padding")

    def _decode(self, geometry: v2.Transform | None) -> torch.Tensor:
        """Decode every sample into one uint8 ``(N, 3, H, W)`` tensor (after ``geometry``, a PIL transform)."""
        first: tuple[int, int] | None = None
        images: torch.Tensor | None = None
        for i, (path, _) in enumerate(self.samples):
            with Image.open(path) as file:
                image = file.convert("RGB")
            if first is None:
                first = image.size
            elif image.size != first:
                raise DataError(f"{path}: image is {image.size[1]}x{image.size[0]} px (height x width), but "
                                f"{self.samples[0][0]} is {first[1]}x{first[0]}; in-memory data needs one size")
            if geometry is not None and image.size != (self.size, self.size):  # S x S: the identity
                image = geometry(image)
            pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
            if images is None:
                images = torch.empty((len(self.samples), *pixels.shape), dtype=torch.uint8)
            images[i] = pixels
        if images is None:
            raise DataError(f"{self.root}: no images")
        return images

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index:index + 1]
        if self.train:
            tops, lefts, flips = draw_crop_flip(1, *image.shape[-2:], self.size, self.padding)
            image = crop_flip(image, tops, lefts, flips, self.size, self.padding)
        return to_normalized(image, self.mean, self.std)[0], int(self.targets[index])


def draw_crop_flip(n: int, height: int, width: int, size: int, padding: int,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random crop offsets and flips for ``n`` images, as ``RandomCrop`` + ``RandomHorizontalFlip`` draw them.

    Per image: ``top`` uniform in ``[0, height + 2 * padding - size]``, ``left`` uniform in
    ``[0, width + 2 * padding - size]`` (the crop's corner in the padded image), and a flip with
    probability 0.5. Drawn on the CPU from ``generator`` (the global RNG if None), so the
    augmentation does not depend on the device.

    Returns:
        ``(tops, lefts, flips)``: int64 ``(n,)``, int64 ``(n,)``, bool ``(n,)``, on the CPU.

    Raises:
        ValueError: the crop is larger than the padded image.
    """
    if height + 2 * padding < size or width + 2 * padding < size:
        raise ValueError(f"crop {size} is larger than the padded image {height + 2 * padding}x{width + 2 * padding}")
    tops = torch.randint(0, height + 2 * padding - size + 1, (n,), generator=generator)
    lefts = torch.randint(0, width + 2 * padding - size + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return tops, lefts, flips


def _reflect(coords: torch.Tensor, length: int) -> torch.Tensor:
    """Map coordinates in ``[-(length - 1), 2 * (length - 1)]`` into ``[0, length)``: reflection, edge not repeated."""
    coords = coords.abs()
    return torch.where(coords > length - 1, 2 * (length - 1) - coords, coords)


def crop_flip(images: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, flips: torch.Tensor, size: int,
              padding: int, index: torch.Tensor | None = None) -> torch.Tensor:
    """Crop ``size x size`` from every image reflect-padded by ``padding``, flipping where ``flips``.

    Equals, per image ``b``: ``v2.functional.pad(image, padding, padding_mode="reflect")``, then
    ``[..., tops[b]:tops[b] + size, lefts[b]:lefts[b] + size]``, then
    ``v2.functional.horizontal_flip`` if ``flips[b]`` -- i.e. ``v2.RandomCrop(size, padding=padding,
    padding_mode="reflect")`` + ``v2.RandomHorizontalFlip()`` for the drawn parameters. The
    padding is never materialised: one gather reads the reflected coordinates.

    Args:
        images: ``(N, C, H, W)`` of any dtype, on any device; needs ``padding < min(H, W)``.
        tops, lefts: int64 ``(B,)``, crop corners in the padded image (see :func:`draw_crop_flip`).
        flips: bool ``(B,)``.
        size: crop side ``S``.
        padding: reflect padding on each side.
        index: int64 ``(B,)``, which images to crop (``images[index]`` without the copy); None:
            all, ``B = N``.

    Returns:
        ``(B, C, S, S)``, the dtype and device of ``images``.

    Raises:
        ValueError: ``padding >= min(H, W)`` (reflection needs it, as in ``torch.nn.functional.pad``).
    """
    n, channels, height, width = images.shape
    if padding >= min(height, width):
        raise ValueError(f"reflect padding {padding} needs images larger than {padding} px, got {height}x{width}")
    device = images.device
    tops, lefts, flips = tops.to(device), lefts.to(device), flips.to(device)
    index = torch.arange(n, device=device) if index is None else index.to(device)
    steps = torch.arange(size, device=device)
    rows = _reflect(tops[:, None] + steps - padding, height)
    cols = _reflect(lefts[:, None] + torch.where(flips[:, None], size - 1 - steps, steps) - padding, width)
    # Linear offsets into images: ((index * C + c) * H + row) * W + col, shaped (B, C, S, S).
    base = (index[:, None] * channels + torch.arange(channels, device=device)) * height  # (B, C)
    offsets = ((base[:, :, None] + rows[:, None, :]) * width)[..., None] + cols[:, None, None, :]
    return images.reshape(-1)[offsets] if images.is_contiguous() else images.reshape(-1).contiguous()[offsets]


def to_normalized(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(..., 3, H, W)`` -> float32 scaled to [0, 1] and normalised, on the same device.

    Exactly ``v2.ToDtype(torch.float32, scale=True)`` + ``v2.Normalize(mean, std)`` (their kernels, on a batch).
    """
    return TF.normalize(TF.to_dtype(images, torch.float32, scale=True), list(mean), list(std))


class TrainBatches:
    """One training epoch over in-memory images: an iterable of augmented batches with ``len()``.

    Batch ``k`` holds the samples ``order[k * batch_size:(k + 1) * batch_size]`` (the last,
    shorter one only without ``drop_last``), cropped and flipped with parameters drawn for the
    whole epoch from ``torch.Generator().manual_seed(seed)`` at the start of each iteration
    (iterating twice gives the same batches), then normalised -- ``build_transform(data,
    train=True)`` for ``crop_flip``, on ``device``.

    Args:
        dataset: the training set; its ``images`` are used as they are if already on ``device``
            (pass ``images`` to reuse a device copy across epochs).
        order: int64 ``(M,)`` sample indices, this process's share of the epoch in order.
        batch_size: images per batch.
        drop_last: drop a last batch smaller than ``batch_size``.
        seed: seeds the augmentation of this epoch.
        device: where batches are assembled and returned.
        images: uint8 ``(N, 3, H, W)``, ``dataset.images`` (or a copy of it) on ``device``.

    Yields:
        ``(images float32 (B, 3, S, S), targets int64 (B,), indices int64 (B,))``, all on
        ``device``; ``indices`` are positions in ``dataset``, like ``WithIndex``'s.
    """

    def __init__(self, dataset: InMemoryImages, order: torch.Tensor, batch_size: int, *, drop_last: bool, seed: int,
                 device: torch.device, images: torch.Tensor | None = None) -> None:
        self.dataset, self.batch_size, self.drop_last, self.seed = dataset, batch_size, drop_last, seed
        self.device = torch.device(device)
        self.order = torch.as_tensor(order, dtype=torch.int64)
        self.images = dataset.images.to(self.device) if images is None else images
        self.targets = dataset.targets.to(self.device)

    def __len__(self) -> int:
        full, rest = divmod(len(self.order), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        d = self.dataset
        generator = torch.Generator().manual_seed(self.seed)
        tops, lefts, flips = draw_crop_flip(len(self.order), *self.images.shape[-2:], d.size, d.padding, generator)
        order, tops, lefts, flips = (t.to(self.device, non_blocking=True) for t in (self.order, tops, lefts, flips))
        for k in range(len(self)):
            part = slice(k * self.batch_size, (k + 1) * self.batch_size)
            index = order[part]
            crops = crop_flip(self.images, tops[part], lefts[part], flips[part], d.size, d.padding, index=index)
            yield to_normalized(crops, d.mean, d.std), self.targets[index], index


class EvalBatches:
    """Evaluation batches of in-memory images, in data-set order: stands in for a DataLoader without shuffling.

    The images get no augmentation (an evaluation :class:`InMemoryImages` already holds them after
    ``Resize(S)`` + ``CenterCrop(S)``), only :func:`to_normalized` -- ``build_transform(data,
    train=False)`` for ``crop_flip``.

    Args:
        dataset: an :class:`InMemoryImages` with ``S x S`` images.
        batch_size: images per batch (the last batch may be smaller).
        device: where images are normalised and returned (default: the CPU); targets stay on the CPU.

    Yields:
        ``(images float32 (B, 3, S, S), targets int64 (B,))``.

    Raises:
        ValueError: the data set's images are not ``S x S`` (a training set of other-sized images).
    """

    def __init__(self, dataset: InMemoryImages, batch_size: int, device: torch.device | str | None = None) -> None:
        if tuple(dataset.images.shape[-2:]) != (dataset.size, dataset.size):
            raise ValueError(f"{dataset.root}: evaluation needs {dataset.size}x{dataset.size} images, got "
                             f"{tuple(dataset.images.shape[-2:])}; load it with train=False")
        self.dataset, self.batch_size = dataset, batch_size
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        d = self.dataset
        for start in range(0, len(d), self.batch_size):
            images = d.images[start:start + self.batch_size].to(self.device, non_blocking=True)
            yield to_normalized(images, d.mean, d.std), d.targets[start:start + self.batch_size]
