"""Does a concept world fit this machine? Checked from the parameters before anything is rendered.

The generator's memory grows with the side of the rendered canvas (every image is drawn at
``size x supersample`` pixels a side, on float32 and int32 planes) and with the probe count (the
main process keeps one record per probe image until the tables are written); its disk use grows
with the pixels written. Both are estimated from measured constants (below) and compared with what
the machine has, so that a hostile ``image_size`` or ``probe_images`` is refused in milliseconds, naming
the key, what it needs and what is free, instead of allocating until memory runs out.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kdinterp.core.config import ParamsError
from kdinterp.core.params import WorldParams

__all__ = ["BYTES_PER_CANVAS_PIXEL", "BYTES_PER_PROBE_RECORD", "MIN_DISK_BYTES_PER_PIXEL", "available_memory",
           "check_capacity"]

#: Peak bytes while one image is rendered, per pixel of its supersampled canvas (measured with tracemalloc:
#: about 140 for a probe scene, 70-80 for a classification image with its saliency map; rounded up).
BYTES_PER_CANVAS_PIXEL = 160
#: Bytes the main process keeps per probe image, besides its per-label pixel counts (int64 each): the
#: index.csv row and Python object overhead.
BYTES_PER_PROBE_RECORD = 2048
#: Disk bytes per written image pixel, a lower bound (the default world writes about 2.5: noisy RGB PNGs,
#: their saliency maps and the probe set's segmentation PNGs).
MIN_DISK_BYTES_PER_PIXEL = 1


def available_memory() -> int:
    """Bytes of memory this process can still allocate without swapping (psutil's ``available``)."""
    try:
        import psutil
    except ImportError:  # psutil is a dependency of dependencies; without it, the free pages
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.virtual_memory().available)


def _show(n: float) -> str:
    """Bytes as a short decimal size: ``6.4 TB``."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (where the disk usage is read)."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_capacity(params: WorldParams, out_dir: Path, *, workers: int, n_classes: int, n_labels: int) -> None:
    """Refuse a world that would not fit in this machine's memory or on the disk of ``out_dir``.

    Args:
        params: the world parameters.
        out_dir: where the world will be written (it, or its nearest existing ancestor, sits on the disk checked).
        workers: rendering processes; each holds one canvas at a time.
        n_classes: classes of the catalog (``object_types x subtypes_per_type``).
        n_labels: concept labels of the catalog (each probe record keeps one int64 count per label).

    Raises:
        ParamsError: memory or disk would not suffice; the message names the key that needs the most, the
            bytes needed and the bytes free, and the fix.
    """
    ss = params.supersample
    canvas = {"world.image_size": (params.image_size * ss) ** 2 * BYTES_PER_CANVAS_PIXEL,
              "world.probe_image_size": (params.probe_image_size * ss) ** 2 * BYTES_PER_CANVAS_PIXEL}
    records = params.probe_images * (BYTES_PER_PROBE_RECORD + 8 * (n_labels + 1))
    memory = {key: need * workers for key, need in canvas.items()} | {"world.probe_images": records}
    need = max(canvas.values()) * workers + records
    free = available_memory()
    if need > free:
        key = max(memory, key=memory.__getitem__)
        raise ParamsError(f"{key}: the world would need about {_show(need)} of memory ({_describe(params, key)}, "
                          f"{workers} worker(s)), but {_show(free)} is available; lower {key}"
                          + (" or --workers" if key != "world.probe_images" else ""))
    pixels = {"world.image_size": n_classes * (params.train_per_class + params.val_per_class)
              * params.image_size ** 2 * 2,  # each classification image and its saliency map
              "world.probe_images": params.probe_images * params.probe_image_size ** 2 * 2}  # image, segmentation
    disk = sum(pixels.values()) * MIN_DISK_BYTES_PER_PIXEL
    where = _existing(out_dir)
    free_disk = shutil.disk_usage(where).free
    if disk > free_disk:
        key = max(pixels, key=pixels.__getitem__)
        raise ParamsError(f"{key}: the world would need at least {_show(disk)} on disk ({_describe(params, key)}), "
                          f"but {_show(free_disk)} is free under {where}; lower {key} (or the image counts), "
                          "or choose --out on a larger disk")


def _describe(params: WorldParams, key: str) -> str:
    """What makes ``key``'s share large, in the params' own terms."""
    if key == "world.probe_images":
        return f"world.probe_images: {params.probe_images:,} images of {params.probe_image_size} px"
    size = params.image_size if key == "world.image_size" else params.probe_image_size
    return f"{key}: {size:,} px x supersample {params.supersample}"
