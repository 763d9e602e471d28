"""The decode cache of image folders: a hit gives the decoder's bytes, any change of the listing is a miss."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from kdinterp.core.params import DataParams
from kdinterp.training import decode_cache
from kdinterp.training.memory_data import InMemoryImages


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("KDINTERP_DECODE_CACHE", str(folder))
    return folder


def _data(folders: dict[str, Path]) -> DataParams:
    return DataParams(train_dir=str(folders["train"]), val_dir=str(folders["val"]), image_size=16, augment="crop_flip",
                      mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.mark.parametrize("train", [True, False])
def test_a_cached_folder_has_the_decoded_bytes(tiny_folders, cache: Path, train: bool, monkeypatch) -> None:
    data = _data(tiny_folders)
    root = tiny_folders["train" if train else "val"]
    first = InMemoryImages(root, data, train)
    assert len(list(cache.glob("*.npy"))) == 1
    calls = []
    monkeypatch.setattr(InMemoryImages, "_decode", lambda self, geometry: calls.append(1) or torch.zeros(0))
    second = InMemoryImages(root, data, train)
    assert calls == [] and torch.equal(first.images, second.images) and second.images.dtype == torch.uint8


def test_a_touched_file_is_decoded_again(tiny_folders, cache: Path) -> None:
    data = _data(tiny_folders)
    first = InMemoryImages(tiny_folders["train"], data, True)
    path = first.samples[0][0]
    info = os.stat(path)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))
    InMemoryImages(tiny_folders["train"], data, True)
    assert len(list(cache.glob("*.npy"))) == 2


def test_a_damaged_entry_is_a_miss_and_is_rewritten(tiny_folders, cache: Path) -> None:
    data = _data(tiny_folders)
    first = InMemoryImages(tiny_folders["val"], data, False)
    [entry] = cache.glob("*.npy")
    entry.write_bytes(b"not an npy file")
    again = InMemoryImages(tiny_folders["val"], data, False)
    assert torch.equal(first.images, again.images)
    assert np.array_equal(np.load(entry), first.images.numpy())


def test_zero_turns_the_cache_off(tiny_folders, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KDINTERP_DECODE_CACHE", "0")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert decode_cache.cache_dir() is None
    InMemoryImages(tiny_folders["val"], _data(tiny_folders), False)
    assert not (tmp_path / "xdg").exists()


def test_the_default_folder_follows_xdg(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("KDINTERP_DECODE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert decode_cache.cache_dir() == tmp_path / "kdinterp" / "decoded"
