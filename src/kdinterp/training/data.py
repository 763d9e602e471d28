"""Classification data: ImageFolder data sets, torchvision transforms, seeded loaders.

The same code reads the concept world (``data/concept_world/{train,val}``) and ImageNet in
ImageFolder layout. Two augmentation recipes exist:

* ``crop_flip`` (small images, CIFAR-style): random crop with 1/8 reflect padding, horizontal flip.
* ``imagenet`` (the paper's torchdistill recipe): ``RandomResizedCrop(size)`` + flip for training,
  ``Resize(size * 256 / 224)`` + ``CenterCrop(size)`` for evaluation.

:func:`load_dataset` is the entry point: for ``crop_flip`` data that fits in
:data:`IN_MEMORY_LIMIT_BYTES` it returns an :class:`~kdinterp.training.memory_data.InMemoryImages` (decoded
once, augmented a batch at a time by the trainer), else an ``ImageFolder`` with
:func:`build_transform`. :func:`eval_loader` gives the evaluation batches of either.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from kdinterp.core.params import DataParams
from kdinterp.training.folders import image_folder
from kdinterp.training.memory_data import EvalBatches, InMemoryImages, decoded_size

__all__ = ["IN_MEMORY_LIMIT_BYTES", "SHUFFLE_SEED_OFFSET", "WithIndex", "build_transform", "eval_loader",
           "load_dataset", "make_loader", "normalize", "shuffle_labels"]

#: Largest decoded size (``N * 3 * H * W`` bytes) for which :func:`load_dataset` keeps a data set in memory.
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3

#: :func:`shuffle_labels` draws its permutation from ``numpy.random.default_rng(SHUFFLE_SEED_OFFSET + seed)``:
#: a stream of its own, apart from the seed's initialisation, data order and augmentation.
SHUFFLE_SEED_OFFSET = 10_000


def normalize(data: DataParams) -> v2.Transform:
    """uint8 image -> float32 tensor ``(3, H, W)`` scaled to [0, 1] and normalised by ``data.mean/std``."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(data.mean, data.std)])


def build_transform(data: DataParams, train: bool) -> v2.Transform:
    """The image transform for training (augmented) or evaluation.

    Args:
        data: the ``data`` params (``augment``, ``image_size``, ``mean``, ``std``).
        train: augment (training) or not (evaluation).

    Returns:
        A torchvision v2 transform from a PIL image to a normalised ``(3, S, S)`` float tensor,
        ``S = data.image_size``.
    """
    size = data.image_size
    if data.augment == "crop_flip":
        geometry = [v2.RandomCrop(size, padding=size // 8, padding_mode="reflect"), v2.RandomHorizontalFlip()] \
            if train else [v2.Resize(size), v2.CenterCrop(size)]
    else:
        geometry = [v2.RandomResizedCrop(size), v2.RandomHorizontalFlip()] if train \
            else [v2.Resize(round(size * 256 / 224)), v2.CenterCrop(size)]
    return v2.Compose([*geometry, normalize(data)])


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader whose shuffling and worker seeds derive from ``seed`` only.

    Re-creating the loader with the same ``seed`` replays the same order, which makes training
    resumable at epoch boundaries (pass ``seed + epoch``).
    """
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      num_workers=num_workers, drop_last=drop_last, persistent_workers=False,
                      pin_memory=torch.cuda.is_available())


class WithIndex(Dataset):
    """Wraps a data set so that items are ``(image, target, index)``: contrastive distillers need the index."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image, target = self.dataset[index]
        return image, target, index


def load_dataset(data: DataParams, train: bool, *, augment: bool | None = None) -> Dataset:
    """The training (``train=True``, ``data.train_dir``) or evaluation (``data.val_dir``) data set.

    ``augment`` (default: ``train``) picks the transform: ``load_dataset(data, train=True,
    augment=False)`` is the training images as evaluation sees images (BatchNorm recalibration,
    :mod:`kdinterp.training.batchnorm`); read it with :func:`eval_loader`.

    ``crop_flip`` data whose decoded size ``N * 3 * H * W`` bytes (``H, W`` of the first image)
    is at most :data:`IN_MEMORY_LIMIT_BYTES` is decoded once into an
    :class:`~kdinterp.training.memory_data.InMemoryImages` (uint8 ``(N, 3, H, W)``; the trainer crops,
    flips and normalises whole batches on the device, with the semantics of
    ``build_transform(data, train)``). Otherwise (``imagenet``, or too large) an ImageFolder
    decoding files on every access through ``build_transform(data, train)``.

    Either way ``len()``, ``.classes``, ``.samples`` and ``.targets`` are ImageFolder's, and items
    are ``(float32 (3, S, S) normalised image, int class index)``.

    Raises:
        DataError: the directory is missing or not an ImageFolder tree; in-memory images differ
            in size (naming the file) or are too small to crop.
    """
    root = data.train_dir if train else data.val_dir
    augment = train if augment is None else augment
    if data.augment == "crop_flip":
        folder = image_folder(root, transform=None)
        height, width = decoded_size(folder.samples[0][0])
        if len(folder) * 3 * height * width <= IN_MEMORY_LIMIT_BYTES:
            return InMemoryImages(root, data, augment)
    return image_folder(root, build_transform(data, augment))


def shuffle_labels(dataset: Dataset, seed: int) -> Dataset:
    """A shallow copy of ``dataset`` whose labels are permuted once across its images (data randomisation).

    Image ``i`` gets the label of image ``perm[i]``, ``perm = numpy.random.default_rng(SHUFFLE_SEED_OFFSET
    + seed).permutation(N)``: every class keeps its number of images, the images lose their class, and
    the same seed gives the same labels (students of ``students.<name>.shuffle_labels``; Zhang et al.
    2017, Adebayo et al. 2018). ``dataset`` itself is not changed.

    Args:
        dataset: a training set of :func:`load_dataset`: an
            :class:`~kdinterp.training.memory_data.InMemoryImages` (``targets`` int64 ``(N,)``) or an
            ``ImageFolder`` (``samples``, ``targets``, ``imgs``).
        seed: the model's seed.

    Returns:
        The copy: ``targets``, ``samples`` (and an ImageFolder's ``imgs``) carry the permuted labels,
        so both :class:`~kdinterp.training.memory_data.TrainBatches` and ``dataset[i]`` yield them.

    Raises:
        TypeError: ``dataset`` has no ``samples`` and ``targets`` (not a data set of :func:`load_dataset`).
    """
    if not hasattr(dataset, "samples") or not hasattr(dataset, "targets"):
        raise TypeError(f"shuffle_labels needs a data set of load_dataset (samples, targets), "
                        f"got {type(dataset).__name__}")
    labels = np.asarray([target for _, target in dataset.samples], dtype=np.int64)
    permuted = labels[np.random.default_rng(SHUFFLE_SEED_OFFSET + seed).permutation(len(labels))]
    out = copy.copy(dataset)
    out.samples = [(path, int(target)) for (path, _), target in zip(dataset.samples, permuted, strict=True)]
    if isinstance(dataset.targets, torch.Tensor):
        out.targets = torch.from_numpy(permuted)
    else:
        out.targets = [int(t) for t in permuted]
    if hasattr(dataset, "imgs"):
        out.imgs = out.samples
    return out


def eval_loader(dataset: Dataset, batch_size: int, *, num_workers: int = 0,
                device: torch.device | str | None = None) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Evaluation batches ``(images float32 (B, 3, S, S), targets int64 (B,))`` in data-set order, with ``len()``.

    An :class:`~kdinterp.training.memory_data.InMemoryImages` gets an
    :class:`~kdinterp.training.memory_data.EvalBatches` (no DataLoader; images normalised on ``device``,
    default CPU; targets on the CPU); any other data set a ``make_loader(dataset, batch_size,
    shuffle=False, num_workers=num_workers)`` (``device`` unused: the consumer moves the batch).

    Raises:
        ValueError: an in-memory data set whose images are not ``S x S`` (load it with ``train=False``).
    """
    if isinstance(dataset, InMemoryImages):
        return EvalBatches(dataset, batch_size, device)
    return make_loader(dataset, batch_size, shuffle=False, num_workers=num_workers)
