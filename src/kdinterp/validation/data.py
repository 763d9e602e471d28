"""Great Expectations checks on the data, run before any model is dissected.

Issue 3 item 4 (validate ``index.csv`` and ``label.csv`` before dissecting) and issue 4 item 5
(checks on the generated concept world). Two entry points return :class:`~kdinterp.validation.dissection.TableReport`
lists, and :func:`validate_data` runs them for the ``validate_data`` stage:

* :func:`validate_broden`: any Broden-layout directory (``broden1_224`` or the concept world's
  ``probe/``): its tables. Files are checked to *exist* here; :func:`probe_files_report` (run by
  :func:`validate_data` on the dissected probe set) decodes each of them with the dissection's own
  reader.

  - ``category.csv``: a ``name`` column, names unique, every selected category listed.
  - ``label.csv``: columns ``number, name, category, frequency, coverage``; numbers plain integers
    >= 1 and unique; names unique; ``category`` a ``;``-list of ``cat(count)`` items naming
    categories of ``category.csv``; ``frequency`` a plain integer; ``coverage`` a plain decimal
    (NetDissect-Lite parses ``^\\d+\\.\\d*$``: ``5e-1`` would stay a string).
  - ``c_<category>.csv`` per selected category: columns ``number, coverage``; numbers unique and in
    ``label.csv``; coverage a plain decimal.
  - ``index.csv``: columns ``image, sh, sw`` and one per selected category; images unique, listed
    files exist under ``images/``; ``sh``/``sw`` (and ``ih``/``iw`` if present) positive integers,
    one segmentation size throughout (the reader batches images); ``split`` (if present) ``train``
    or ``val``; some row carries a label; each ``;``-item of a category field is a plain integer
    (an image-level label: ``83.0`` is refused) or a PNG name; every PNG exists; every image-level
    label is 0 (unlabelled, the label-0 policy of :mod:`kdinterp.dissection.broden`) or a number of
    ``label.csv``.

* :func:`validate_world`: a generated concept world (``kdinterp.world.generate.generate_world``).

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

Every check runs on a frame (CSV cells read as text, so ``83.0`` stays ``83.0``) with the helper
columns it needs, through :func:`kdinterp.validation.dissection.run_check` on an ephemeral GX context. Helper
columns start with ``_``; ``_row`` is the row's line in its CSV file (the header is line 1), as in
:mod:`kdinterp.dissection.broden`'s messages. Failure messages name the file, the check and example bad rows.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kdinterp.core.io import write_json
from kdinterp.validation.dissection import Check, MissingTableError, TableReport, ValidationError, run_check

__all__ = [
    "BALANCE_TOLERANCE",
    "MIN_CONCEPT_SHARE",
    "min_concept_images",
    "validate_broden",
    "validate_data",
    "validate_world",
]

#: Default share of probe images that must show each concept (``--min-concept-share``).
MIN_CONCEPT_SHARE = 0.01
#: Default largest relative deviation of a class's image count from the mean (``--balance-tolerance``).
BALANCE_TOLERANCE = 0.05
#: Largest accepted difference between world.json's coverage and label.csv's coverage / images.
COVERAGE_TOLERANCE = 1e-6

_POSITIVE_INT = r"^[1-9]\d*$"
_PLAIN_INT = r"^\d+$"
_DECIMAL = r"^\d+(?:\.\d*)?$"
_ITEM = r"^(?:\d+|.+\.[Pp][Nn][Gg])$"
_CATEGORY_FIELD = r"^[^();]+\(\d+\)(?:;[^();]+\(\d+\))*$"
_INT_ITEM = re.compile(_PLAIN_INT)
_CATEGORY_ITEM = re.compile(r"^([^(]*)\(")
_SIGNATURES = {".png": (b"\x89PNG\r\n\x1a\n",), ".jpg": (b"\xff\xd8\xff",), ".jpeg": (b"\xff\xd8\xff",)}
_SPLITS = ("train", "val")


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


# --------------------------------------------------------------------------- public API


def validate_broden(root: Path, categories: Sequence[str]) -> list[TableReport]:
    """Validate a Broden-layout directory's tables (see the module docstring for the checks).

    Args:
        root: the directory with ``index.csv``, ``label.csv``, ``category.csv``,
            ``c_<category>.csv`` and ``images/``.
        categories: the selected categories (``dissection.categories``).

    Returns:
        Reports for category.csv, label.csv, each c_<category>.csv and index.csv, in that order.

    Raises:
        MissingTableError: a table file is missing (all missing files listed).
        ValidationError: a table is not a readable CSV file.
    """
    root = Path(root)
    paths = {name: root / name for name in ("category.csv", "label.csv", "index.csv")}
    c_paths = {cat: root / f"c_{cat}.csv" for cat in categories}
    _require([*paths.values(), *c_paths.values()], "a Broden-layout directory (dissection.broden_dir)")
    category, label, index = (_read_table(paths[n]) for n in ("category.csv", "label.csv", "index.csv"))
    names = set(category["name"].dropna()) if "name" in category.columns else set()
    numbers = _label_numbers(label)
    reports = [_category_report(paths["category.csv"], category, categories),
               _label_report(paths["label.csv"], label, names)]
    reports += [_c_report(path, _read_table(path), numbers) for path in c_paths.values()]
    reports.append(_index_report(paths["index.csv"], index, categories, numbers))
    return reports


def probe_files_report(root: Path, categories: Sequence[str]) -> TableReport:
    """Read every probe image and segmentation PNG with the dissection's own reader (:func:`kdinterp.dissection.broden.unreadable_rows`).

    One table row per ``index.csv`` row: it must decode (image with the ``ih, iw`` of index.csv,
    segmentations RGB of size ``sh, sw``) and every label it uses must have a selected primary
    category. So a probe set that passes is one that dissection reads without error and without
    dropping a label. When the tables cannot be parsed at all, the report holds that one error.
    """
    from kdinterp.dissection.broden import BrodenError, load_broden, unreadable_rows

    root = Path(root)
    try:
        broden = load_broden(root, tuple(categories))
        errors = {row.line: message for row, message in unreadable_rows(broden)}
        rows = [{"_row": row.line, "image": row.image, "_error": errors.get(row.line)} for row in broden.rows]
    except BrodenError as err:
        rows = [{"_row": 0, "image": None, "_error": str(err)}]
    frame = pd.DataFrame(rows, columns=["_row", "image", "_error"])
    frame["_readable"] = frame["_error"].isna()
    check = _true("_readable", "every image and segmentation decodes with the dissection's reader and every label "
                  "it uses has a selected category", ["_row", "image", "_error"])
    return run_check(Check(root / "images", frame, [check]), TableReport(root / "images"))


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
    _require([world_file], "a concept world directory (`kdinterp world generate`)")
    world = _read_world(world_file)
    probe = root / "probe"
    _require([probe / "label.csv", probe / "index.csv"], "the concept world's probe set")
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
    _require([index], "the concept world's probe set")
    with index.open(encoding="utf-8") as f:
        rows = sum(1 for line in f if line.strip()) - 1
    return math.floor(share * max(rows, 0) + 1e-9)


def validate_data(
    broden_dir: Path,
    categories: Sequence[str],
    report_path: Path,
    *,
    world_dir: Path | None = None,
    max_coverage: float,
    min_concept_share: float = MIN_CONCEPT_SHARE,
    balance_tolerance: float = BALANCE_TOLERANCE,
    raise_on_failure: bool = True,
) -> bool:
    """Validate the probe set (and the concept world) and write one JSON report (stage validate_data).

    The report, written atomically even when validation fails, holds overall ``success``, the GX
    version, the world directory (null when skipped), the thresholds and, per table: ``path``,
    ``success``, ``evaluated_expectations``, ``successful_expectations`` and ``failures`` (as
    :func:`kdinterp.validation.dissection.validate_dissections` writes them).

    Args:
        broden_dir: the Broden-layout probe directory (``dissection.broden_dir``).
        categories: the selected categories (``dissection.categories``).
        report_path: where the JSON report goes.
        world_dir: the concept world directory, or None when the data is not a concept world. When
            ``broden_dir`` is its ``probe/``, the probe set is validated once (with every category).
        max_coverage: largest share of probe pixels one concept may cover (world only).
        min_concept_share: every concept must appear in ``floor(share * probe images)`` probe
            images (world only; see :func:`min_concept_images`).
        balance_tolerance: largest relative deviation of a class's image count from the mean
            (world only).
        raise_on_failure: raise :class:`ValidationError` (after writing the report) instead of
            returning False.

    Returns:
        True when every table passed.

    Raises:
        MissingTableError: a table file is missing (nothing validated, no report).
        ValidationError: a file cannot be parsed, or validation failed and ``raise_on_failure``.
    """
    broden_dir = Path(broden_dir)
    reports: list[TableReport] = []
    thresholds = None
    if world_dir is not None:
        needed = min_concept_images(world_dir, min_concept_share)
        thresholds = {"max_coverage": max_coverage, "min_concept_share": min_concept_share,
                      "min_concept_images": needed, "balance_tolerance": balance_tolerance}
        reports += validate_world(world_dir, min_concept_images=needed, max_coverage=max_coverage,
                                  balance_tolerance=balance_tolerance)
    if world_dir is None or broden_dir.resolve() != (Path(world_dir) / "probe").resolve():
        reports += validate_broden(broden_dir, categories)
    reports.append(probe_files_report(broden_dir, categories))
    success = all(report.success for report in reports)
    write_json(report_path, {
        "success": success,
        "great_expectations_version": _gx_version(),
        "broden_dir": str(broden_dir),
        "categories": list(categories),
        "world_dir": None if world_dir is None else str(world_dir),
        "thresholds": thresholds,
        "tables": [report.to_json() for report in reports],
    })  # fmt: skip
    if not success and raise_on_failure:
        failed = [report for report in reports if not report.success]
        lines = [f"{len(failed)} of {len(reports)} data tables failed validation (report: {report_path}):"]
        lines += [line for report in failed for line in report.describe()]
        raise ValidationError("\n".join(lines), reports)
    return success


# --------------------------------------------------------------------------- reading


def _require(paths: Iterable[Path], what: str) -> None:
    """Raise one :class:`MissingTableError` naming every missing file."""
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise MissingTableError("\n".join(f"{path}: file not found" for path in missing)
                                + f"\nExpected {what}; for the concept world run `make data`.")


def _read_table(path: Path) -> pd.DataFrame:
    """A CSV table with every cell as text (empty cells missing) and ``_row``, its line in the file."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValidationError(f"{path}: not a readable CSV table ({err}); re-save it as a UTF-8 CSV file") from err
    return frame.assign(_row=range(2, len(frame) + 2))


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


def _label_numbers(label: pd.DataFrame) -> set[int]:
    """The well-formed label numbers of label.csv (malformed ones fail label.csv's own checks)."""
    if "number" not in label.columns:
        return set()
    return {int(n) for n in label["number"].dropna() if re.fullmatch(_POSITIVE_INT, n)}


def _gx_version() -> str:
    import great_expectations

    return great_expectations.__version__


# --------------------------------------------------------------------------- expectation builders


def _gxe() -> Any:
    import great_expectations.expectations as gxe

    return gxe


def _meta(show: Sequence[str]) -> dict[str, Any]:
    return {"show": list(show)}


def _exists(columns: Iterable[str], table: str) -> list[Any]:
    return [_gxe().ExpectColumnToExist(column=c, description=f"{table} has a {c} column") for c in columns]


def _filled(column: str, description: str, show: Sequence[str]) -> Any:
    return _gxe().ExpectColumnValuesToNotBeNull(column=column, description=description, meta=_meta(show))


def _unique(column: str, description: str, show: Sequence[str]) -> Any:
    return _gxe().ExpectColumnValuesToBeUnique(column=column, description=description, meta=_meta(show))


def _matches(column: str, regex: str, description: str, show: Sequence[str]) -> Any:
    return _gxe().ExpectColumnValuesToMatchRegex(column=column, regex=regex, description=description, meta=_meta(show))


def _in_set(column: str, values: Iterable[Any], description: str, show: Sequence[str]) -> Any:
    return _gxe().ExpectColumnValuesToBeInSet(column=column, value_set=list(values), description=description,
                                              meta=_meta(show))


def _true(column: str, description: str, show: Sequence[str]) -> Any:
    return _in_set(column, [True], description, show)


def _between(column: str, description: str, show: Sequence[str], **bounds: Any) -> Any:
    return _gxe().ExpectColumnValuesToBeBetween(column=column, description=description, meta=_meta(show), **bounds)


def _run(path: Path, table: pd.DataFrame, required: Sequence[str],
         parts: Callable[[], Sequence[tuple[pd.DataFrame, list[Any]]]]) -> TableReport:
    """Validate one table: its required columns, then (if they all exist) the content checks.

    With every required column present, the column checks run together with the first content
    frame (one GX run per frame); otherwise only they run and the report says the content checks
    were skipped. ``parts`` builds the ``(frame, expectations)`` pairs (helper columns need the
    required columns, so it is called only when they exist).
    """
    schema = _exists(required, path.name)
    if not set(required) <= set(table.columns):
        return run_check(Check(path, table, schema))
    report = TableReport(path)
    for k, (frame, expectations) in enumerate(parts()):
        report = run_check(Check(path, frame, [*schema, *expectations] if k == 0 else expectations), report)
    return report


# --------------------------------------------------------------------------- Broden tables


def _category_report(path: Path, category: pd.DataFrame, selected: Sequence[str]) -> TableReport:
    show = ["_row", "name"]

    def parts() -> list[tuple[pd.DataFrame, list[Any]]]:
        listed = set(category["name"].dropna())
        wanted = pd.DataFrame({"category": list(selected), "_listed": [c in listed for c in selected]})
        return [
            (category, [_filled("name", "every category has a name", show),
                        _unique("name", "category names are unique", show)]),
            (wanted, [_true("_listed", "every selected category (dissection.categories) is listed", ["category"])]),
        ]

    return _run(path, category, ["name"], parts)  # fmt: skip


def _first_unknown_category(field: Any, known: set[str]) -> Any:
    if not isinstance(field, str):
        return None
    for item in field.split(";"):
        match = _CATEGORY_ITEM.match(item)
        if match and match.group(1) not in known:
            return match.group(1)
    return None


def _label_report(path: Path, label: pd.DataFrame, categories: set[str]) -> TableReport:
    show = ["_row", "number", "name"]

    def parts() -> list[tuple[pd.DataFrame, list[Any]]]:
        unknown = [_first_unknown_category(field, categories) for field in label["category"]]
        return [(label.assign(_unknown_category=unknown), [
            *(_filled(c, f"every label has a {c}", show) for c in ("number", "name", "category", "coverage")),
            _matches("number", _POSITIVE_INT, "label numbers are plain integers >= 1", show),
            _unique("number", "label numbers are unique", show),
            _unique("name", "label names are unique", show),
            _matches("category", _CATEGORY_FIELD, "category is a ;-list of cat(count) items", [*show, "category"]),
            _gxe().ExpectColumnValuesToBeNull(column="_unknown_category", meta=_meta([*show, "category"]),
                                              description="every category named in it is listed in category.csv"),
            _matches("frequency", _PLAIN_INT, "frequency is a plain integer", show),
            _matches("coverage", _DECIMAL, "coverage is a plain decimal (0.5, not 5e-1)", show),
        ])]  # fmt: skip

    return _run(path, label, ["number", "name", "category", "frequency", "coverage"], parts)


def _c_report(path: Path, table: pd.DataFrame, numbers: set[int]) -> TableReport:
    show = ["_row", "number", "name"]
    checks = [
        _filled("number", "every row has a label number", show),
        _in_set("number", sorted(str(n) for n in numbers), "every number is a label number of label.csv", show),
        _unique("number", "each label is listed once", show),
        _filled("coverage", "every row has a coverage", show),
        _matches("coverage", _DECIMAL, "coverage is a plain decimal (0.5, not 5e-1)", [*show, "coverage"]),
    ]
    return _run(path, table, ["number", "coverage"], lambda: [(table, checks)])


def _items(index: pd.DataFrame, categories: Sequence[str], images: Path) -> pd.DataFrame:
    """One row per ``;``-item of the category fields, with what the item checks need."""
    rows = []
    for category in categories:
        for line, image, field in zip(index["_row"], index["image"], index[category], strict=True):
            if not isinstance(field, str):
                continue
            for item in field.split(";"):
                is_label = bool(_INT_ITEM.match(item))
                is_png = not is_label and re.fullmatch(_ITEM, item) is not None
                rows.append((line, image, category, item, int(item) if is_label else None,
                             os.path.isfile(images / item) if is_png else None))
    columns = ["_row", "image", "category", "item", "_label", "_png_exists"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"_label": object, "_png_exists": object})


def _index_report(path: Path, index: pd.DataFrame, categories: Sequence[str], numbers: set[int]) -> TableReport:
    return _run(path, index, ["image", "sh", "sw", *categories], lambda: _index_parts(path, index, categories, numbers))


def _index_parts(path: Path, index: pd.DataFrame, categories: Sequence[str],
                 numbers: set[int]) -> list[tuple[pd.DataFrame, list[Any]]]:
    images = path.parent / "images"
    show = ["_row", "image"]
    rows = index.assign(
        _image_exists=[isinstance(i, str) and os.path.isfile(images / i) for i in index["image"]],
        _labels=index[list(categories)].notna().sum(axis=1),
    )
    sizes = [_matches(c, _POSITIVE_INT, f"{c} is a positive integer", [*show, c]) for c in ("sh", "sw", "ih", "iw")
             if c in index.columns]
    one_size = [_gxe().ExpectColumnUniqueValueCountToBeBetween(
        column=c, min_value=1, max_value=1, description=f"one {c} for every image (the reader batches them)")
        for c in ("sh", "sw")]  # fmt: skip
    splits = [_in_set("split", ["train", "val"], "split is train or val", show)] if "split" in index.columns else []
    row_checks = [
        _filled("image", "every row names an image", show),
        _unique("image", "every image is listed once", show),
        _true("_image_exists", f"every image file exists under {images}", show),
        *sizes, *one_size, *splits,
        _gxe().ExpectColumnMaxToBeBetween(column="_labels", min_value=1,
                                          description="some row carries a label of a selected category"),
    ]  # fmt: skip
    item_show = ["_row", "image", "category", "item"]
    known = sorted(numbers | {0})
    item_checks = [
        _matches("item", _ITEM, "each ;-item of a category field is a plain integer label or a PNG file name "
                 "(write label numbers without .0)", item_show),
        _true("_png_exists", f"every PNG named in a category field exists under {images}", item_show),
        _in_set("_label", known, "every image-level label is 0 (unlabelled) or a number of label.csv", item_show),
    ]
    return [(rows, row_checks), (_items(index, categories, images), item_checks)]


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
        _true("_has_folder", f"every class of world.json has a folder in {split}/", ["class"]),
        _true("_in_world_json", "every folder is a class of world.json (ImageFolder makes a class of every folder)",
              ["class"]),
        _between("_share_of_mean", f"class sizes within {tolerance:.0%} of the mean (class balance)",
                 [*show, "_mean_images"], min_value=1 - tolerance, max_value=1 + tolerance),
        _between("_unreadable", "every file in a class folder is a PNG/JPEG image", [*show, "_first_unreadable"],
                 min_value=0, max_value=0),
    ]
    if isinstance(expected, int):
        checks.append(_between("images", f"as many images as world.json says (params.{split}_per_class = {expected})",
                               show, min_value=expected, max_value=expected))
    if "_without_saliency" in frame.columns:
        checks.append(_between("_without_saliency", "every image has a saliency map (world.json saliency.dir)",
                               [*show, "_first_without_saliency"], min_value=0, max_value=0))
    checks.insert(0, _gxe().ExpectTableRowCountToBeBetween(
        min_value=1, description=f"world.json lists classes or {split}/ has class folders"))
    return _run(path, frame, [], lambda: [(frame, checks)])


def _coverage_frame(world: dict[str, Any], probe: Path) -> pd.DataFrame:
    """world.json's concepts with their coverage, and label.csv's frequency and coverage per concept."""
    label = _read_table(probe / "label.csv")
    by_name = {}
    if {"name", "frequency", "coverage"} <= set(label.columns):
        by_name = {n: (f, c) for n, f, c in zip(label["name"], label["frequency"], label["coverage"], strict=True)}
    images = max(len(_read_table(probe / "index.csv")), 1)
    rows = []
    for concept in world["concepts"]:
        frequency, coverage = by_name.get(concept["name"], (None, None))
        fraction = world["coverage"].get(concept["name"])
        label_fraction = float(coverage) / images if coverage and re.fullmatch(_DECIMAL, coverage) else None
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
        _gxe().ExpectTableRowCountToBeBetween(min_value=1, description="world.json lists concepts"),
        _filled("fraction", "every concept has a coverage entry in world.json", show),
        _between("fraction", bound, show, min_value=0.0, max_value=t.max_coverage),
        _filled("images", "every concept is in probe/label.csv with a frequency", show),
        _between("images", f"every concept is present in at least {t.min_concept_images} probe images "
                 "(probe/label.csv frequency)", show, min_value=t.min_concept_images),
        _between("_coverage_error", "world.json coverage equals probe/label.csv coverage / probe images",
                 [*show, "fraction", "_label_csv_fraction"], min_value=0.0, max_value=COVERAGE_TOLERANCE),
    ]
    return _run(path, frame, [], lambda: [(frame, checks)])
