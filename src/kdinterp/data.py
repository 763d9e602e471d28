"""Classification data: ImageFolder data sets, torchvision transforms, seeded loaders.

The same code reads the concept world (``data/concept_world/{train,val}``) and ImageNet in
ImageFolder layout. Two augmentation recipes exist:

* ``crop_flip`` (small images, CIFAR-style): random crop with 1/8 reflect padding, horizontal flip.
* ``imagenet`` (the paper's torchdistill recipe): ``RandomResizedCrop(size)`` + flip for training,
  ``Resize(size * 256 / 224)`` + ``CenterCrop(size)`` for evaluation.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets
from torchvision.transforms import v2

from kdinterp.io import read_json
from kdinterp.params import DataParams

__all__ = ["DataError", "WithIndex", "build_transform", "class_names", "image_folder", "make_loader", "normalize"]


class DataError(ValueError):
    """The data set on disk does not match what the parameters describe."""


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


def image_folder(root: str | Path, transform: v2.Transform) -> datasets.ImageFolder:
    """An ImageFolder data set (one sub-directory per class, sorted names = class indices).

    Raises:
        DataError: ``root`` is missing or holds no class directories.
    """
    path = Path(root)
    if not path.is_dir():
        raise DataError(f"{path}: data directory not found; generate the data with `make data` "
                        "(or `dvc pull data.dvc` where a DVC remote is configured)")
    try:
        return datasets.ImageFolder(str(path), transform=transform)
    except FileNotFoundError as err:
        raise DataError(f"{path}: not an ImageFolder tree ({err})") from err


def class_names(data: DataParams) -> list[str]:
    """Class names in logit order, checked between train and val and against ``world.json``.

    Raises:
        DataError: train and val disagree, or the world description lists other classes.
    """
    train = image_folder(data.train_dir, transform=None).classes
    val = image_folder(data.val_dir, transform=None).classes
    if train != val:
        raise DataError(f"{data.train_dir} and {data.val_dir} have different class folders")
    if data.world_file:
        world = [c["name"] for c in read_json(data.world_file)["classes"]]
        if world != train:
            raise DataError(f"{data.world_file} lists other classes than {data.train_dir}; regenerate data/ (`make data`)")
    return train


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
