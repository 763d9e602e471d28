"""Great Expectations checks on a Broden-layout probe set (``broden1_224`` or the concept world's ``probe/``).

Issue 3 item 4, issue 25 item 3. The rules are :mod:`kdinterp.dissection.probe_format`'s, the
same that :func:`kdinterp.dissection.broden.load_broden` raises on for ``dissect``; this module is
the reporting layer on top. :func:`validate_broden` reads each table with the shared reader, adds
one helper column per rule (the rule's one-line problem on each failing row, empty elsewhere) and
lets Great Expectations check that every such column is empty. Required columns are checked first
(``ExpectColumnToExist``); the rules run only when they exist. :func:`probe_files_report` decodes
every image and segmentation PNG with the dissection's own reader, and checks the probe size for
``dissection.quantile``.

Helper columns start with ``_``; ``_row`` is the row's line in its CSV file (the header is line 1).
Failure messages name the file, the rule and example bad rows with their problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kdinterp.dissection import probe_format as fmt
from kdinterp.dissection.probe_format import DECIMAL
from kdinterp.validation.expectations import (
    Check,
    TableReport,
    ValidationError,
    empty,
    require_files,
    run_check,
    run_table,
    true,
)

__all__ = ["DECIMAL", "probe_files_report", "read_table", "validate_broden"]

_HINT = "Expected {what}; for the concept world run `make data`."
_LABEL_COLUMNS = ["number", "name", "category", "frequency", "coverage"]


def validate_broden(root: Path, categories: Sequence[str]) -> list[TableReport]:
    """Validate a Broden-layout directory's tables with :mod:`~kdinterp.dissection.probe_format`'s rules.

    Args:
        root: the directory with ``index.csv``, ``label.csv``, ``category.csv``,
            ``c_<category>.csv`` and ``images/``.
        categories: the selected categories (``dissection.categories``).

    Returns:
        Reports for category.csv, label.csv, each c_<category>.csv and index.csv, in that order.

    Raises:
        MissingTableError: a table file is missing (all missing files listed).
        ValidationError: a table is not a readable CSV file (BOM, encoding, ragged rows).
    """
    root = Path(root)
    paths = {name: root / name for name in ("category.csv", "label.csv", "index.csv")}
    c_paths = {cat: root / f"c_{cat}.csv" for cat in categories}
    _require_files([*paths.values(), *c_paths.values()], "a Broden-layout directory (dissection.broden_dir)")
    category, label, index = (_read(paths[n]) for n in ("category.csv", "label.csv", "index.csv"))
    known = [n for n in category.column("name") if n] if "name" in category.header else []
    selected = tuple(c for c in dict.fromkeys(known) if c in categories)
    names: tuple[str, ...] = ("",)
    reports = [_report(category, ["name"], ["name"], lambda: fmt.category_rules(category, categories)[1])]

    def labels() -> list[fmt.Rule]:
        nonlocal names
        names, rules = fmt.label_rules(label, known)
        return rules

    reports.append(_report(label, _LABEL_COLUMNS, ["number", "name"], labels))
    members: dict[str, set[int]] = {}
    for cat, path in c_paths.items():
        table = _read(path)

        def c_file(table: fmt.Table = table, cat: str = cat) -> list[fmt.Rule]:
            coverage, rules = fmt.c_rules(table, len(names))
            members[cat] = set(coverage)
            return rules

        reports.append(_report(table, ["number", "coverage"], ["number", "name"], c_file))
    reports.append(_report(index, ["image", "sh", "sw", *selected], ["image"],
                           lambda: fmt.index_rules(index, selected, len(names), members)[1]))
    return reports


def probe_files_report(root: Path, categories: Sequence[str], quantile: float | None = None,
                       batch_size: int | None = None) -> TableReport:
    """Read every probe image and segmentation PNG with the dissection's own reader (:func:`kdinterp.dissection.broden.unreadable_rows`).

    One table row per ``index.csv`` row: it must decode (image with the ``ih, iw`` of index.csv,
    segmentations RGB of size ``sh, sw``) and every label it uses must have a selected primary
    category. So a probe set that passes is one that dissection reads without error and without
    dropping a label. With ``quantile`` (``dissection.quantile``) and ``batch_size`` (``dissection.batch_size``)
    the probe set must also hold :func:`~kdinterp.dissection.probe_format.minimum_probe_images` images with data. When the
    tables cannot be parsed at all, the report holds that one error.
    """
    from kdinterp.dissection.broden import BrodenError, load_broden, unreadable_rows

    root = Path(root)
    try:
        broden = load_broden(root, tuple(categories), quantile, batch_size=batch_size)
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


def _read(path: Path) -> fmt.Table:
    """The shared reader's table; its refusal (BOM, encoding, ragged rows) as a :class:`ValidationError`."""
    try:
        return fmt.read_table(path)
    except fmt.BrodenError as err:
        raise ValidationError(str(err)) from None


def read_table(path: Path) -> pd.DataFrame:
    """A CSV table with every cell as text (empty cells missing) and ``_row``, its line in the file.

    Raises:
        ValidationError: the file is not a readable UTF-8 CSV table (:func:`kdinterp.dissection.probe_format.read_table`).
    """
    return _frame(_read(path))


def _frame(table: fmt.Table) -> pd.DataFrame:
    frame = pd.DataFrame(list(table.rows), columns=list(table.header), dtype=object)
    return frame.mask(frame == "").assign(_row=list(table.lines))


def _report(table: fmt.Table, required: Sequence[str], keys: Sequence[str],
            rules: Callable[[], list[fmt.Rule]]) -> TableReport:
    """GX on one table: its required columns, then one ``empty`` expectation per rule's helper column."""
    frame = _frame(table)

    def parts() -> list[tuple[pd.DataFrame, list[Any]]]:
        checked = rules()
        row_rules = [r for r in checked if r.rows]
        rows = frame.assign(**{r.name: list(r.problems) for r in row_rules})
        show = ["_row", *(k for k in keys if k in frame.columns)]
        result = [(rows, [empty(r.name, r.description, [*show, r.name]) for r in row_rules])]
        table_rules = [r for r in checked if not r.rows]
        if table_rules:
            whole = pd.DataFrame({r.name: [r.problems[0]] for r in table_rules})
            result.append((whole, [empty(r.name, r.description, [r.name]) for r in table_rules]))
        return result

    return run_table(table.path, frame, required, parts)
