"""In-memory data: same samples and pixels as ImageFolder, batched crop+flip equal to the per-image transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets
from torchvision.transforms.v2 import functional as TF

from kdinterp.core.params import DataParams
from kdinterp.training import data as data_module
from kdinterp.training import distributed
from kdinterp.training.data import build_transform, eval_loader, load_dataset, make_loader, normalize
from kdinterp.training.folders import DataError, image_folder
from kdinterp.training.memory_data import EvalBatches, InMemoryImages, crop_flip, draw_crop_flip, to_normalized
from kdinterp.training.train import _epoch_batches, _epoch_loader


def _data(folders: dict[str, Path], size: int = 16, augment: str = "crop_flip") -> DataParams:
    return DataParams(train_dir=str(folders["train"]), val_dir=str(folders["val"]), image_size=size,
                      augment=augment, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))


def test_same_samples_classes_and_pixels_as_image_folder(tiny_folders) -> None:
    memory = InMemoryImages(tiny_folders["train"], _data(tiny_folders), train=True)
    folder = datasets.ImageFolder(str(tiny_folders["train"]))
    assert memory.classes == folder.classes and memory.class_to_idx == folder.class_to_idx
    assert memory.samples == folder.samples and len(memory) == len(folder) == 24
    assert memory.targets.dtype == torch.int64 and memory.targets.tolist() == folder.targets
    assert memory.images.dtype == torch.uint8 and memory.images.shape == (24, 3, 16, 16)
    for i, (path, _) in enumerate(folder.samples):
        expected = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(memory.images[i], expected), path


def _reference(image: torch.Tensor, top: int, left: int, flip: bool, size: int, padding: int) -> torch.Tensor:
    """One image through reflect pad, slice, flip (what RandomCrop + RandomHorizontalFlip do for these parameters)."""
    padded = TF.pad(image, [padding], padding_mode="reflect")
    crop = padded[:, top:top + size, left:left + size]
    return TF.horizontal_flip(crop) if flip else crop


@pytest.mark.parametrize(("height", "width", "size", "padding"), [(16, 16, 16, 2), (10, 13, 12, 3), (8, 8, 8, 7)])
def test_batched_crop_flip_equals_per_image_reference(height, width, size, padding) -> None:
    images = torch.randint(0, 256, (6, 3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    for _ in range(20):  # covers the extreme offsets: corner crops read the reflected border
        tops, lefts, flips = draw_crop_flip(len(images), height, width, size, padding, generator)
        out = crop_flip(images, tops, lefts, flips, size, padding)
        assert out.shape == (6, 3, size, size) and out.dtype == torch.uint8
        for b in range(len(images)):
            expected = _reference(images[b], int(tops[b]), int(lefts[b]), bool(flips[b]), size, padding)
            assert torch.equal(out[b], expected), (b, tops[b], lefts[b], flips[b])
        index = torch.tensor([5, 0, 5])  # gathers from images[index] without the copy
        assert torch.equal(crop_flip(images, tops[:3], lefts[:3], flips[:3], size, padding, index=index),
                           crop_flip(images[index], tops[:3], lefts[:3], flips[:3], size, padding))


def test_drawn_offsets_cover_the_padded_image_and_flip_half() -> None:
    tops, lefts, flips = draw_crop_flip(4000, 16, 14, 16, 2, torch.Generator().manual_seed(0))
    assert tops.dtype == lefts.dtype == torch.int64 and flips.dtype == torch.bool
    assert sorted(tops.unique().tolist()) == list(range(5)) and sorted(lefts.unique().tolist()) == list(range(3))
    assert 0.45 < flips.float().mean() < 0.55
    again = draw_crop_flip(4000, 16, 14, 16, 2, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip((tops, lefts, flips), again, strict=True))
    with pytest.raises(ValueError, match="larger than the padded image"):
        draw_crop_flip(1, 8, 8, 16, 2)


def test_normalisation_equals_the_v2_transforms(tiny_folders) -> None:
    data = _data(tiny_folders)
    images = torch.randint(0, 256, (4, 3, 5, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = to_normalized(images, data.mean, data.std)
    assert out.dtype == torch.float32 and out.shape == images.shape
    for b in range(len(images)):
        assert torch.equal(out[b], normalize(data)(images[b]))
    mean, std = torch.tensor(data.mean)[:, None, None], torch.tensor(data.std)[:, None, None]
    torch.testing.assert_close(out, (images.float() / 255 - mean) / std)


def test_items_equal_the_file_based_transforms(tiny_folders) -> None:
    data = _data(tiny_folders)
    for train in (False, True):
        memory = load_dataset(data, train=train)
        assert isinstance(memory, InMemoryImages)
        files = image_folder(data.train_dir if train else data.val_dir, build_transform(data, train=train))
        for i in range(len(files)):
            torch.manual_seed(i)  # same draws: RandomCrop's top and left, then RandomHorizontalFlip's coin
            image, target = memory[i]
            torch.manual_seed(i)
            expected, expected_target = files[i]
            assert target == expected_target and torch.equal(image, expected), (train, i)


def test_evaluation_images_of_another_size_are_resized_once(tiny_folders) -> None:
    data = _data(tiny_folders, size=12)
    memory = load_dataset(data, train=False)
    assert memory.images.shape == (12, 3, 12, 12)
    files = make_loader(image_folder(data.val_dir, build_transform(data, train=False)), 5, shuffle=False)
    batches = eval_loader(memory, 5)
    assert isinstance(batches, EvalBatches) and len(batches) == len(files) == 3
    for (images, targets), (expected, expected_targets) in zip(batches, files, strict=True):
        assert torch.equal(targets, expected_targets) and torch.equal(images, expected)


def test_images_of_different_sizes_raise_naming_the_file(tiny_folders) -> None:
    odd = tiny_folders["train"] / "a_two" / "a_two_003.png"
    Image.new("RGB", (16, 12)).save(odd)
    with pytest.raises(DataError, match=r"a_two_003\.png: image is 12x16 px"):
        load_dataset(_data(tiny_folders), train=True)


def test_load_dataset_falls_back_to_files(tiny_folders, monkeypatch) -> None:
    assert not isinstance(load_dataset(_data(tiny_folders, augment="imagenet"), train=True), InMemoryImages)
    monkeypatch.setattr(data_module, "IN_MEMORY_LIMIT_BYTES", 24 * 3 * 16 * 16 - 1)
    files = load_dataset(_data(tiny_folders), train=True)
    assert isinstance(files, datasets.ImageFolder) and files.transform is not None
    monkeypatch.setattr(data_module, "IN_MEMORY_LIMIT_BYTES", 24 * 3 * 16 * 16)
    assert isinstance(load_dataset(_data(tiny_folders), train=True), InMemoryImages)
    with pytest.raises(DataError, match="not found"):
        load_dataset(DataParams(train_dir=str(tiny_folders["train"] / "missing"), val_dir="", image_size=16,
                                augment="crop_flip", mean=(0.5,) * 3, std=(0.25,) * 3), train=True)


@pytest.mark.parametrize(("world_size", "batch_size"), [(1, 8), (1, 5), (2, 8), (3, 6), (1, 32)])
def test_epoch_batches_hold_the_samples_of_the_distributed_sampler(tiny_folders, world_size, batch_size) -> None:
    memory = load_dataset(_data(tiny_folders), train=True)
    files = image_folder(tiny_folders["train"], build_transform(_data(tiny_folders), train=True))
    for rank in range(world_size):
        ctx = distributed.Context(rank, world_size, torch.device("cpu"))
        batches = _epoch_batches(memory, memory.images, batch_size, 3007, 11, ctx)
        loader = _epoch_loader(data_module.WithIndex(files), batch_size, 3007, 0, ctx)
        assert len(batches) == len(loader)
        for (images, targets, indices), (_, expected_targets, expected_indices) in zip(batches, loader, strict=True):
            assert torch.equal(indices, expected_indices) and torch.equal(targets, expected_targets)
            assert images.dtype == torch.float32 and images.shape == (len(indices), 3, 16, 16)
        first, again = next(iter(batches))[0], next(iter(batches))[0]
        assert torch.equal(first, again)  # the epoch's augmentation is fixed by its seed
