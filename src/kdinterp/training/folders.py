"""Class folders on disk (ImageFolder layout): the class names, and the error for data that does not fit.

Shared by the loaders (:mod:`kdinterp.training.data`, :mod:`kdinterp.training.memory_data`), the
model files (their headers record the class names) and the measures that read images.
"""

from __future__ import annotations

from pathlib import Path

from torchvision import datasets
from torchvision.transforms import v2

from kdinterp.core.errors import KdinterpError
from kdinterp.core.io import read_json
from kdinterp.core.params import DataParams

__all__ = ["DataError", "class_names", "image_folder"]


class DataError(KdinterpError, ValueError):
    """The data set on disk does not match what the parameters describe."""


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
