"""Great Expectations checks on a generated concept world (issue 4 item 5; ``kdinterp.world.generate.generate_world``).

  - ``train/`` and ``val/`` (ImageFolder trees, one table row per class): every class of
    ``world.json`` has a folder and every folder is a class (ImageFolder makes a class of every
    folder); as many images as ``world.json`` says (``params.<split>_per_class``); class sizes
    within ``balance_tolerance`` of the mean; every file a PNG/JPEG by its signature (headers are
    read, images are not decoded); when ``world.json`` declares saliency maps, one per image under
    ``saliency/<split>/<class>/``.
  - ``world.json`` (the per-concept coverage table, one row per concept): every concept has a
    coverage entry at most ``max_coverage`` (the coverage bound: a unit is active on about
    ``quantile`` of probe pixels, so its IoU with a concept covering a share c is at most
    ``quantile / c``; above ``quantile / iou_threshold`` no unit can become a detector); every
    concept is in ``probe/label.csv`` and present in at least ``min_concept_images`` probe images
    (its ``frequency``); the coverage agrees with ``label.csv`` (``coverage / probe images``).
  - ``probe/``: :func:`validate_broden` with every category of ``world.json``.

The checks follow the idiom of :mod:`kdinterp.validation.expectations`; the probe set's own tables
are :mod:`kdinterp.validation.probe`'s.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kdinterp.validation.expectations import (TableReport, ValidationError, between, filled, gxe, require_files,
                                              run_table, true)
from kdinterp.validation.probe import DECIMAL, read_table, validate_broden

__all__ = ["COVERAGE_TOLERANCE", "min_concept_images", "validate_world"]

#: Largest accepted difference between world.json's coverage and label.csv's coverage / images.
COVERAGE_TOLERANCE = 1e-6

_SIGNATURES = {".png": (b"\x89PNG\r\n\x1a\n",), ".jpg": (b"\xff\xd8\xff",), ".jpeg": (b"\xff\xd8\xff",)}
_SPLITS = ("train", "val")
_HINT = "Expected {what}; for the concept world run `make data`."


@dataclass(frozen=True)
class _Thresholds:
    """The thresholds of :func:`validate_world`.

    Attributes:
        max_coverage: largest share of probe pixels one concept may cover (quantile / iou_threshold).
        min_concept_images: probe images each concept must appear in.
        balance_tolerance: largest relative deviation of a class's image count from the mean.
    """

    max_coverage: float
    min_concept_images: int
    balance_tolerance: float


def validate_world(
    world_dir: Path, *, min_concept_images: int, max_coverage: float, balance_tolerance: float
) -> list[TableReport]:
    """Validate a generated concept world (see the module docstring for the checks).

    Args:
        world_dir: the output directory of :func:`kdinterp.world.generate.generate_world`.
        min_concept_images: probe images each concept must appear in (label.csv ``frequency``).
        max_coverage: largest share of probe pixels one concept may cover.
        balance_tolerance: largest relative deviation of a class's image count from the split's mean.

    Returns:
        Reports for ``train/``, ``val/``, ``world.json`` (coverage table), then the probe set's
        tables (:func:`validate_broden`).

    Raises:
        MissingTableError: world.json or a probe table is missing.
        ValidationError: world.json is not a world description, or a probe table is not readable.
    """
    root = Path(world_dir)
    world_file = root / "world.json"
    require_files([world_file], _HINT.format(what="a concept world directory (`kdinterp world generate`)"))
    world = _read_world(world_file)
    probe = root / "probe"
    require_files([probe / "label.csv", probe / "index.csv"], _HINT.format(what="the concept world's probe set"))
    classes = [c["name"] for c in world["classes"]]
    reports = [_split_report(root, split, world, classes, balance_tolerance) for split in _SPLITS]
    thresholds = _Thresholds(max_coverage, min_concept_images, balance_tolerance)
    reports.append(_coverage_report(world_file, world, probe, thresholds))
    categories = list(dict.fromkeys(c["category"] for c in world["concepts"]))
    return reports + validate_broden(probe, categories)


def min_concept_images(world_dir: Path, share: float) -> int:
    """Probe images every concept must appear in: ``floor(share * probe images)``.

    The requirement grows with the probe set; a probe set under ``1 / share`` images (a test-sized
    world) gets none, since it cannot show every concept.

    Raises:
        MissingTableError: the world has no ``probe/index.csv``.
    """
    index = Path(world_dir) / "probe" / "index.csv"
    require_files([index], _HINT.format(what="the concept world's probe set"))
    with index.open(encoding="utf-8") as f:
        rows = sum(1 for line in f if line.strip()) - 1
    return math.floor(share * max(rows, 0) + 1e-9)


def _read_world(path: Path) -> dict[str, Any]:
    """world.json, checked to hold what the checks read."""
    try:
        world = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValidationError(f"{path}: not valid JSON ({err}); regenerate the world (`make data`)") from err
    needed = {"classes": list, "concepts": list, "coverage": dict, "params": dict}
    wrong = [key for key, kind in needed.items() if not isinstance(world, dict) or not isinstance(world.get(key), kind)]
    if wrong:
        raise ValidationError(f"{path}: not a concept world description (missing or malformed {wrong}); "
                              "regenerate the world (`make data`)")
    return world


# --------------------------------------------------------------------------- concept world


def _readable(path: Path) -> bool:
    """Whether ``path`` is a PNG/JPEG file by its extension and signature (not decoded)."""
    signatures = _SIGNATURES.get(path.suffix.lower())
    if signatures is None or not path.is_file():
        return False
    with path.open("rb") as f:
        head = f.read(8)
    return head.startswith(signatures)


def _split_frame(root: Path, split: str, world: dict[str, Any], classes: list[str]) -> pd.DataFrame:
    """One row per class (of world.json or with a folder in ``split/``): counts and problems."""
    folder, saliency = root / split, root / world.get("saliency", {}).get("dir", "saliency") / split
    folders = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    rows = []
    for name in sorted(set(classes) | set(folders)):
        files = sorted(p for p in (folder / name).iterdir() if not p.is_dir()) if name in folders else []
        bad = [p.name for p in files if not _readable(p)]
        row = {"class": name, "images": len(files), "_in_world_json": name in classes, "_has_folder": name in folders,
               "_unreadable": len(bad), "_first_unreadable": bad[0] if bad else None}
        if "saliency" in world:
            maps = {p.name for p in (saliency / name).iterdir()} if (saliency / name).is_dir() else set()
            lacking = [p.name for p in files if p.name not in maps]
            row |= {"_without_saliency": len(lacking), "_first_without_saliency": lacking[0] if lacking else None}
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else ["class", "images", "_in_world_json"])
    mean = frame.loc[frame["_in_world_json"], "images"].mean() if len(frame) else 0.0
    return frame.assign(_mean_images=mean, _share_of_mean=frame["images"] / mean if mean else 0.0)


def _split_report(root: Path, split: str, world: dict[str, Any], classes: list[str], tolerance: float) -> TableReport:
    path = root / split
    frame = _split_frame(root, split, world, classes)
    expected = world["params"].get(f"{split}_per_class")
    show = ["class", "images"]
    checks = [
        true("_has_folder", f"every class of world.json has a folder in {split}/", ["class"]),
        true("_in_world_json", "every folder is a class of world.json (ImageFolder makes a class of every folder)",
              ["class"]),
        between("_share_of_mean", f"class sizes within {tolerance:.0%} of the mean (class balance)",
                 [*show, "_mean_images"], min_value=1 - tolerance, max_value=1 + tolerance),
        between("_unreadable", "every file in a class folder is a PNG/JPEG image", [*show, "_first_unreadable"],
                 min_value=0, max_value=0),
    ]
    if isinstance(expected, int):
        checks.append(between("images", f"as many images as world.json says (params.{split}_per_class = {expected})",
                               show, min_value=expected, max_value=expected))
    if "_without_saliency" in frame.columns:
        checks.append(between("_without_saliency", "every image has a saliency map (world.json saliency.dir)",
                               [*show, "_first_without_saliency"], min_value=0, max_value=0))
    checks.insert(0, gxe().ExpectTableRowCountToBeBetween(
        min_value=1, description=f"world.json lists classes or {split}/ has class folders"))
    return run_table(path, frame, [], lambda: [(frame, checks)])


def _coverage_frame(world: dict[str, Any], probe: Path) -> pd.DataFrame:
    """world.json's concepts with their coverage, and label.csv's frequency and coverage per concept."""
    label = read_table(probe / "label.csv")
    by_name = {}
    if {"name", "frequency", "coverage"} <= set(label.columns):
        by_name = {n: (f, c) for n, f, c in zip(label["name"], label["frequency"], label["coverage"], strict=True)}
    images = max(len(read_table(probe / "index.csv")), 1)
    rows = []
    for concept in world["concepts"]:
        frequency, coverage = by_name.get(concept["name"], (None, None))
        fraction = world["coverage"].get(concept["name"])
        label_fraction = float(coverage) / images if coverage and re.fullmatch(DECIMAL, coverage) else None
        rows.append({"concept": concept["name"], "category": concept["category"], "fraction": fraction,
                     "images": int(frequency) if frequency and frequency.isdigit() else None,
                     "_label_csv_fraction": label_fraction,
                     "_coverage_error": abs(fraction - label_fraction)
                     if fraction is not None and label_fraction is not None else math.inf})
    return pd.DataFrame(rows).astype({"fraction": float, "images": float})


def _coverage_report(path: Path, world: dict[str, Any], probe: Path, t: _Thresholds) -> TableReport:
    frame = _coverage_frame(world, probe)
    show = ["concept", "category"]
    bound = (f"every concept covers at most {t.max_coverage:.4g} of probe pixels (quantile / iou_threshold: "
             "no unit can reach the IoU threshold on a larger concept)")
    checks = [
        gxe().ExpectTableRowCountToBeBetween(min_value=1, description="world.json lists concepts"),
        filled("fraction", "every concept has a coverage entry in world.json", show),
        between("fraction", bound, show, min_value=0.0, max_value=t.max_coverage),
        filled("images", "every concept is in probe/label.csv with a frequency", show),
        between("images", f"every concept is present in at least {t.min_concept_images} probe images "
                 "(probe/label.csv frequency)", show, min_value=t.min_concept_images),
        between("_coverage_error", "world.json coverage equals probe/label.csv coverage / probe images",
                 [*show, "fraction", "_label_csv_fraction"], min_value=0.0, max_value=COVERAGE_TOLERANCE),
    ]
    return run_table(path, frame, [], lambda: [(frame, checks)])
