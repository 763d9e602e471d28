"""Great Expectations checks on a Broden-layout probe set (``broden1_224`` or the concept world's ``probe/``).

Issue 3 item 4 (validate ``index.csv`` and ``label.csv`` before dissecting). :func:`validate_broden`
checks the tables; files are checked to *exist* there, and :func:`probe_files_report` decodes each
of them with the dissection's own reader (:mod:`kdinterp.dissection.broden`).

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

Every check runs on a frame (CSV cells read as text, so ``83.0`` stays ``83.0``) with the helper
columns it needs, in the idiom of :mod:`kdinterp.validation.expectations`. Helper columns start
with ``_``; ``_row`` is the row's line in its CSV file (the header is line 1), as in
:mod:`kdinterp.dissection.broden`'s messages. Failure messages name the file, the check and example bad rows.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kdinterp.validation.expectations import (
    Check,
    TableReport,
    ValidationError,
    empty,
    filled,
    gxe,
    in_set,
    matches,
    require_files,
    run_check,
    run_table,
    true,
    unique,
)

__all__ = ["DECIMAL", "probe_files_report", "read_table", "validate_broden"]

_POSITIVE_INT = r"^[1-9]\d*$"
_PLAIN_INT = r"^\d+$"
#: A plain decimal, as NetDissect-Lite parses numbers (``^\d+\.\d*$``; ``5e-1`` would stay a string).
DECIMAL = r"^\d+(?:\.\d*)?$"
_ITEM = r"^(?:\d+|.+\.[Pp][Nn][Gg])$"
_CATEGORY_FIELD = r"^[^();]+\(\d+\)(?:;[^();]+\(\d+\))*$"
_INT_ITEM = re.compile(_PLAIN_INT)
_CATEGORY_ITEM = re.compile(r"^([^(]*)\(")
_HINT = "Expected {what}; for the concept world run `make data`."


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
    _require_files([*paths.values(), *c_paths.values()], "a Broden-layout directory (dissection.broden_dir)")
    category, label, index = (read_table(paths[n]) for n in ("category.csv", "label.csv", "index.csv"))
    names = set(category["name"].dropna()) if "name" in category.columns else set()
    numbers = _label_numbers(label)
    reports = [_category_report(paths["category.csv"], category, categories),
               _label_report(paths["label.csv"], label, names)]
    reports += [_c_report(path, read_table(path), numbers) for path in c_paths.values()]
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
    check = true("_readable", "every image and segmentation decodes with the dissection's reader and every label "
                  "it uses has a selected category", ["_row", "image", "_error"])
    return run_check(Check(root / "images", frame, [check]), TableReport(root / "images"))


# --------------------------------------------------------------------------- reading


def _require_files(paths: Iterable[Path], what: str) -> None:
    """Raise one :class:`~kdinterp.validation.expectations.MissingTableError` naming every missing file."""
    require_files(paths, _HINT.format(what=what))


def read_table(path: Path) -> pd.DataFrame:
    """A CSV table with every cell as text (empty cells missing) and ``_row``, its line in the file.

    Raises:
        ValidationError: the file is not a readable UTF-8 CSV table.
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValidationError(f"{path}: not a readable CSV table ({err}); re-save it as a UTF-8 CSV file") from err
    return frame.assign(_row=range(2, len(frame) + 2))


def _label_numbers(label: pd.DataFrame) -> set[int]:
    """The well-formed label numbers of label.csv (malformed ones fail label.csv's own checks)."""
    if "number" not in label.columns:
        return set()
    return {int(n) for n in label["number"].dropna() if re.fullmatch(_POSITIVE_INT, n)}


# --------------------------------------------------------------------------- Broden tables


def _category_report(path: Path, category: pd.DataFrame, selected: Sequence[str]) -> TableReport:
    show = ["_row", "name"]

    def parts() -> list[tuple[pd.DataFrame, list[Any]]]:
        listed = set(category["name"].dropna())
        wanted = pd.DataFrame({"category": list(selected), "_listed": [c in listed for c in selected]})
        return [
            (category, [filled("name", "every category has a name", show),
                        unique("name", "category names are unique", show)]),
            (wanted, [true("_listed", "every selected category (dissection.categories) is listed", ["category"])]),
        ]

    return run_table(path, category, ["name"], parts)  # fmt: skip


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
            *(filled(c, f"every label has a {c}", show) for c in ("number", "name", "category", "coverage")),
            matches("number", _POSITIVE_INT, "label numbers are plain integers >= 1", show),
            unique("number", "label numbers are unique", show),
            unique("name", "label names are unique", show),
            matches("category", _CATEGORY_FIELD, "category is a ;-list of cat(count) items", [*show, "category"]),
            empty("_unknown_category", "every category named in it is listed in category.csv", [*show, "category"]),
            matches("frequency", _PLAIN_INT, "frequency is a plain integer", show),
            matches("coverage", DECIMAL, "coverage is a plain decimal (0.5, not 5e-1)", show),
        ])]  # fmt: skip

    return run_table(path, label, ["number", "name", "category", "frequency", "coverage"], parts)


def _c_report(path: Path, table: pd.DataFrame, numbers: set[int]) -> TableReport:
    show = ["_row", "number", "name"]
    checks = [
        filled("number", "every row has a label number", show),
        in_set("number", sorted(str(n) for n in numbers), "every number is a label number of label.csv", show),
        unique("number", "each label is listed once", show),
        filled("coverage", "every row has a coverage", show),
        matches("coverage", DECIMAL, "coverage is a plain decimal (0.5, not 5e-1)", [*show, "coverage"]),
    ]
    return run_table(path, table, ["number", "coverage"], lambda: [(table, checks)])


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
    return run_table(path, index, ["image", "sh", "sw", *categories], lambda: _index_parts(path, index, categories, numbers))


def _index_parts(path: Path, index: pd.DataFrame, categories: Sequence[str],
                 numbers: set[int]) -> list[tuple[pd.DataFrame, list[Any]]]:
    images = path.parent / "images"
    show = ["_row", "image"]
    rows = index.assign(
        _image_exists=[isinstance(i, str) and os.path.isfile(images / i) for i in index["image"]],
        _labels=index[list(categories)].notna().sum(axis=1),
    )
    sizes = [matches(c, _POSITIVE_INT, f"{c} is a positive integer", [*show, c]) for c in ("sh", "sw", "ih", "iw")
             if c in index.columns]
    one_size = [gxe().ExpectColumnUniqueValueCountToBeBetween(
        column=c, min_value=1, max_value=1, description=f"one {c} for every image (the reader batches them)")
        for c in ("sh", "sw")]  # fmt: skip
    splits = [in_set("split", ["train", "val"], "split is train or val", show)] if "split" in index.columns else []
    row_checks = [
        filled("image", "every row names an image", show),
        unique("image", "every image is listed once", show),
        true("_image_exists", f"every image file exists under {images}", show),
        *sizes, *one_size, *splits,
        gxe().ExpectColumnMaxToBeBetween(column="_labels", min_value=1,
                                          description="some row carries a label of a selected category"),
    ]  # fmt: skip
    item_show = ["_row", "image", "category", "item"]
    known = sorted(numbers | {0})
    item_checks = [
        matches("item", _ITEM, "each ;-item of a category field is a plain integer label or a PNG file name "
                 "(write label numbers without .0)", item_show),
        true("_png_exists", f"every PNG named in a category field exists under {images}", item_show),
        in_set("_label", known, "every image-level label is 0 (unlabelled) or a number of label.csv", item_show),
    ]
    return [(rows, row_checks), (_items(index, categories, images), item_checks)]
