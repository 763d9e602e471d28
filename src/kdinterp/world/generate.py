"""Generation of the whole concept world: classification images, saliency maps, probe set, ``world.json``.

Every image is rendered from its own generator, ``numpy.random.default_rng([seed, split, ...])``,
so the output is byte-identical for the same parameters whatever the number of worker processes
or the order in which chunks finish. Workers are spawned (not forked), so a caller that has
already started threads (torch, a progress bar) cannot deadlock them. Workers write their PNGs
directly; the main process then writes the probe tables and ``world.json``. Everything goes to
a staging directory renamed into place at the end.

Layout of a generated world::

    world.json                          classes, concepts, params, coverage, saliency encoding
    train/<class>/<class>_<k>.png       classification images (ImageFolder layout)
    val/<class>/<class>_<k>.png
    saliency/{train,val}/<class>/<class>_<k>.png
                                        ground-truth saliency of each classification image:
                                        R = 255 object, G = 255 discriminative part, B = 0
                                        (see kdinterp.world.saliency)
    probe/                              the probe set in the Broden layout (kdinterp.world.broden_writer)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from kdinterp.core.errors import OutputError, environment_fault
from kdinterp.core.io import write_json
from kdinterp.core.params import WorldParams
from kdinterp.world.broden_writer import ProbeRecord, write_image, write_probe_image, write_tables
from kdinterp.world.capacity import check_capacity
from kdinterp.world.catalog import Catalog, WorldClass, build_catalog
from kdinterp.world.colors import COLOR_NAMES, PROTOTYPES
from kdinterp.world.compose import (
    Rendered,
    render_class_image,
    render_probe_closeup,
    render_probe_scene,
    render_texture_tile,
)
from kdinterp.world.coverage import coverage_table
from kdinterp.world.params import check_vocabulary
from kdinterp.world.saliency import SALIENCY_DIR, SALIENCY_ENCODING, encode_saliency, saliency_masks
from kdinterp.world.vocabulary import MATERIALS, OBJECT_TYPES, SCENES, TEXTURES

__all__ = ["FORMAT_VERSION", "describe", "generate_world", "is_texture_tile", "probe_kind"]

FORMAT_VERSION = 3  # 2: saliency maps (saliency/, world.json "saliency"); 3: probe close-ups (images/closeups/)
_SPLIT_IDS = {"train": 0, "val": 1, "probe": 2}
_CHUNK = 48  # images per job sent to a worker


@dataclass(frozen=True)
class _Job:
    """Images ``start..stop-1`` of one split (of one class, for train and val)."""

    split: str
    start: int
    stop: int
    class_index: int = -1


def _spread(index: int, fraction: float) -> bool:
    """Whether item ``index`` is one of a ``fraction`` of items spread evenly through a sequence."""
    return math.floor((index + 1) * fraction) > math.floor(index * fraction)


def is_texture_tile(index: int, texture_fraction: float) -> bool:
    """Whether probe image ``index`` is a texture tile (tiles are spread evenly through the set)."""
    return _spread(index, texture_fraction)


def probe_kind(params: WorldParams, index: int) -> tuple[str, int]:
    """What probe image ``index`` is: ``("texture" | "closeup" | "scene", k)``, the k-th of its kind.

    Texture tiles are a ``texture_fraction`` of the set and close-ups a ``closeup_fraction``, each
    spread evenly through the index; the rest are scenes (scene k shows scene k mod len(SCENES)).
    ``k`` of a close-up is returned for symmetry; close-ups do not depend on it.
    """
    tiles_before = math.floor(index * params.texture_fraction)
    if is_texture_tile(index, params.texture_fraction):
        return "texture", tiles_before
    j = index - tiles_before  # position among the images that are not tiles
    share = params.closeup_fraction / (1.0 - params.texture_fraction)
    closeups_before = math.floor(j * share)
    if _spread(j, share):
        return "closeup", closeups_before
    return "scene", j - closeups_before


def _render_probe(params: WorldParams, index: int) -> Rendered:
    rng = np.random.default_rng([params.seed, _SPLIT_IDS["probe"], index])
    kind, k = probe_kind(params, index)
    if kind == "texture":
        return render_texture_tile(params, k, rng)
    if kind == "closeup":
        return render_probe_closeup(params, rng)
    return render_probe_scene(params, k, rng)


def _class_seed(params: WorldParams, split: str, cls: WorldClass, k: int) -> list[int]:
    type_index = OBJECT_TYPES.index(cls.object_type)
    return [params.seed, _SPLIT_IDS[split], type_index, cls.object_type.subtypes.index(cls.subtype), k]


def _run_job(params: WorldParams, out_dir: Path, job: _Job) -> list[ProbeRecord]:
    """Render and write the images of one job; probe jobs return their records."""
    catalog = build_catalog(check_vocabulary(params))
    if job.split == "probe":
        n_labels = len(catalog.concepts)
        return [write_probe_image(out_dir / "probe", i, _render_probe(params, i), n_labels)
                for i in range(job.start, job.stop)]
    cls = catalog.classes[job.class_index]
    for k in range(job.start, job.stop):
        rng = np.random.default_rng(_class_seed(params, job.split, cls, k))
        rendered = render_class_image(params, cls, rng)
        name = f"{cls.name}_{k:05d}.png"
        write_image(out_dir / job.split / cls.name / name, rendered.image)
        regions = saliency_masks(rendered.masks, cls, catalog.number)
        write_image(out_dir / SALIENCY_DIR / job.split / cls.name / name, encode_saliency(*regions))
    return []


def _chunks(split: str, total: int, class_index: int = -1) -> list[_Job]:
    return [_Job(split, a, min(a + _CHUNK, total), class_index) for a in range(0, total, _CHUNK)]


def _plan(params: WorldParams, catalog: Catalog) -> list[_Job]:
    jobs = _chunks("probe", params.probe_images)
    for cls in catalog.classes:
        jobs += _chunks("train", params.train_per_class, cls.index)
        jobs += _chunks("val", params.val_per_class, cls.index)
    return jobs


def _progress(enabled: bool) -> Progress:
    columns = (TextColumn("[bold]concept world"), BarColumn(), MofNCompleteColumn(), TextColumn("images"),
               TimeElapsedColumn(), TimeRemainingColumn())
    return Progress(*columns, disable=not enabled)


def _execute(params: WorldParams, out_dir: Path, jobs: list[_Job], workers: int, progress: bool) -> list[ProbeRecord]:
    """Run every job (in-process when ``workers == 1``); return the probe records in index order."""
    results: dict[int, list[ProbeRecord]] = {}
    with _progress(progress) as bar:
        task = bar.add_task("render", total=sum(j.stop - j.start for j in jobs))
        if workers == 1:
            for n, job in enumerate(jobs):
                results[n] = _run_job(params, out_dir, job)
                bar.advance(task, job.stop - job.start)
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(_run_job, params, out_dir, job): n for n, job in enumerate(jobs)}
                try:
                    for fut in as_completed(futures):
                        results[futures[fut]] = fut.result()
                        bar.advance(task, jobs[futures[fut]].stop - jobs[futures[fut]].start)
                except BaseException:
                    pool.shutdown(cancel_futures=True)  # a failed job (or Ctrl-C) stops the rest
                    raise
    return [r for n in range(len(jobs)) for r in results[n]]


def _check_out(out_dir: Path) -> None:
    """Refuse an output path the world cannot be generated into, before any work (see :func:`generate_world`)."""
    fix = "the concept world is generated into a new or empty folder"
    for parent in out_dir.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{out_dir}: {parent} is a file, not a folder, so nothing can be created under it; "
                              f"move that file away or choose another --out ({fix})")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: is a file, not a folder; delete it or choose another --out ({fix})")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise OutputError(f"{out_dir}: is a folder that is not empty; delete it or choose another --out ({fix})")


def _prepare(staging: Path, catalog: Catalog) -> None:
    shutil.rmtree(staging, ignore_errors=True)  # left over from a killed run
    for split in ("train", "val"):
        for cls in catalog.classes:
            (staging / split / cls.name).mkdir(parents=True, exist_ok=True)
            (staging / SALIENCY_DIR / split / cls.name).mkdir(parents=True, exist_ok=True)
    for group in ("scenes", "textures", "closeups"):
        (staging / "probe" / "images" / group).mkdir(parents=True, exist_ok=True)


def _class_entry(cls: WorldClass) -> dict[str, Any]:
    differs = {"part": cls.object_type.differs_in, "property": cls.object_type.property}
    return {"index": cls.index, "name": cls.name, "object_type": cls.object_type.name,
            "subtype": cls.subtype.name, "differs_in": differs}


def describe(params: WorldParams, catalog: Catalog, records: list[ProbeRecord]) -> dict[str, Any]:
    """The machine-readable description of a generated world (the content of ``world.json``)."""
    labels = [(c.number, c.name, c.category) for c in catalog.concepts]
    pixels = np.sum([r.counts for r in records], axis=0)
    total = sum(int(r.row["sh"]) * int(r.row["sw"]) for r in records)
    table = coverage_table(labels, pixels, total)
    kinds = [probe_kind(params, i)[0] for i in range(params.probe_images)]
    return {
        "format_version": FORMAT_VERSION,
        "params": dataclasses.asdict(params),
        "classes": [_class_entry(c) for c in catalog.classes],
        "object_types": {t.name: {"parts": list(t.part_names), "scenes": list(t.scenes),
                                  "subtypes": [s.name for s in t.subtypes],
                                  "differs_in": {"part": t.differs_in, "property": t.property}}
                         for t in OBJECT_TYPES},
        "scenes": {s.name: {"materials": list(s.materials)} for s in SCENES},
        "materials": [m.name for m in MATERIALS],
        "textures": list(TEXTURES),
        "colors": {name: list(rgb) for name, rgb in zip(COLOR_NAMES, PROTOTYPES, strict=True)},
        "concepts": [{"number": c.number, "name": c.name, "category": c.category} for c in catalog.concepts],
        "counts": {"train": params.train_per_class * len(catalog.classes),
                   "val": params.val_per_class * len(catalog.classes), "probe": params.probe_images,
                   "probe_scenes": kinds.count("scene"), "probe_textures": kinds.count("texture"),
                   "probe_closeups": kinds.count("closeup")},
        "coverage": {name: float(f) for name, f in zip(table["concept"], table["fraction"], strict=True)},
        "saliency": {"dir": SALIENCY_DIR, **SALIENCY_ENCODING},
    }


def generate_world(params: WorldParams, out_dir: str | Path, *, workers: int = 2, progress: bool = True) -> dict:
    """Generate the concept world into ``out_dir``, all or nothing.

    Everything is written into a sibling ``.<name>.partial`` directory that is renamed to
    ``out_dir`` at the end, so an interrupted or failed run leaves no half-written world behind: the
    staging directory, and the parents of ``out_dir`` it created, are removed. The output path, and
    the memory and disk the world needs (:func:`kdinterp.world.capacity.check_capacity`), are checked
    before anything is rendered. Writes
    ``train/<class>/<class>_<k>.png`` and ``val/...`` (ImageFolder layout, RGB PNG of
    ``params.image_size`` pixels), their saliency maps under ``saliency/`` (same relative paths),
    the Broden-layout probe set under ``probe/`` and, last, ``world.json``. Same ``params`` give
    byte-identical files whatever ``workers`` is.

    Args:
        params: the world parameters.
        out_dir: output directory; must not exist or be empty.
        workers: rendering processes (1 renders in this process).
        progress: show a rich progress bar.

    Returns:
        The content of ``world.json``.

    Raises:
        OutputError: ``out_dir`` is a file, lies under a file or is a folder that is not empty; or a write
            failed for a reason of the machine (full disk, no permission): the staging folder is removed.
        ParamsError: the images would not fit in memory or on disk (:func:`kdinterp.world.capacity.check_capacity`).
        ValueError: ``workers`` < 1.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir)
    catalog = build_catalog(params)
    _check_out(out)
    check_capacity(params, out, workers=workers, n_classes=len(catalog.classes), n_labels=len(catalog.concepts))
    full = Path(os.path.abspath(out))
    if not full.name:
        raise OutputError(f"{out}: the root folder cannot hold the concept world; choose another --out")
    staging = full.with_name(f".{full.name}.partial")
    created = [p for p in full.parents if not p.exists()]  # made by _prepare's mkdir, deepest first
    try:
        _prepare(staging, catalog)
        records = _execute(params, staging, _plan(params, catalog), workers, progress)
        write_tables(staging / "probe", records, catalog.concepts)
        description = describe(params, catalog, records)
        write_json(staging / "world.json", description)
        if out.exists():
            out.rmdir()  # empty, checked by _check_out
        staging.rename(out)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # deepest first; only while empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        fault = environment_fault(err, out) if isinstance(err, OSError) else None
        if fault is not None:
            raise fault from err
        raise
    return description
