"""A disk cache of decoded image folders, so that each stage does not decode the same PNGs again.

Every training, DiffROAR, evaluation and saliency stage of the study decodes the same concept-world
folders into a uint8 tensor (:class:`kdinterp.training.memory_data.InMemoryImages`): 4,800 training
PNGs take about 1.4 s, 1,200 validation PNGs about 0.3 s, some 75 s over a default run. The decoded
tensor is kept as one ``.npy`` file per (folder listing, geometry), and read back in a few
milliseconds. It holds the same bytes the decoder would produce, so results do not depend on it.

The key is the SHA-256 of :data:`VERSION`, the geometry's name and, for every file of the listing
in order, its path, class index, size and modification time (ns): any changed, added, removed or
touched file makes a new key, and a stale entry is simply never read again. The cache lives in
``$KDINTERP_DECODE_CACHE`` if set (``0`` turns it off), else ``$XDG_CACHE_HOME/kdinterp/decoded``
(``~/.cache/kdinterp/decoded``). Nothing in the workspace is written; a file that cannot be read or
written is ignored (the images are decoded as without a cache).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from kdinterp.core.io import atomic_path

__all__ = ["VERSION", "cache_dir", "cached_images", "listing_key"]

#: Part of every key: change it when the decoder's output changes for the same files.
VERSION = "kdinterp-decoded-1"


def cache_dir() -> Path | None:
    """The cache folder, or None when ``KDINTERP_DECODE_CACHE`` is ``0``."""
    configured = os.environ.get("KDINTERP_DECODE_CACHE")
    if configured == "0":
        return None
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kdinterp" / "decoded"


def listing_key(samples: Sequence[tuple[str, int]], geometry: str) -> str:
    """The hex key of ``samples`` (``[(path, class index)]``, in order) decoded with ``geometry`` (a name).

    Raises:
        OSError: a file cannot be stat-ed.
    """
    digest = hashlib.sha256(f"{VERSION}\0{geometry}\0".encode())
    for path, target in samples:
        info = os.stat(path)
        digest.update(f"{os.path.abspath(path)}\0{target}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cached_images(samples: Sequence[tuple[str, int]], geometry: str,
                  decode: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``decode()`` (uint8 ``(N, 3, H, W)`` of ``samples``), read from the cache when it holds this listing.

    A hit is a ``.npy`` of uint8 with ``N`` images; anything else (missing, unreadable, another shape)
    is a miss: ``decode()`` runs and its result is written atomically. Errors of ``decode`` propagate.
    """
    folder = cache_dir()
    if folder is None or not samples:
        return decode()
    try:
        path = folder / f"{listing_key(samples, geometry)}.npy"
    except OSError:
        return decode()
    try:
        array = np.load(path, allow_pickle=False) if path.is_file() else None
    except (OSError, ValueError):
        array = None
    if array is not None and array.dtype == np.uint8 and array.ndim == 4 and len(array) == len(samples):
        return torch.from_numpy(array)
    images = decode()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, images.numpy(), allow_pickle=False)
    except OSError:
        pass
    return images
