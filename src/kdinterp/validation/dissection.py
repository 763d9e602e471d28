"""Great Expectations checks on the Network Dissection tables, run before any figure is drawn.

Issue 2, item 6. Each ``outputs/dissection/<model>/`` directory holds three tables:

* ``tally.csv``: one row per (unit, concept) pair with a non-zero intersection. The counts follow
  NetDissect-Lite's tally (``research/dissection.md`` §1.3): ``intersection`` and ``concept_area``
  are summed over the probe set, ``unit_area`` is the unit's active pixels on images where the
  concept's category is present (Lite's category-restricted activation term, so it is one number
  per (unit, category)), and ``iou = intersection / (unit_area + concept_area - intersection)``.
* ``units.csv``: one row per unit with its best concept overall and per category, and whether it
  is a detector (``iou >= iou_threshold``).
* ``summary.json``: detector and unique-concept counts, overall and per category. Its
  ``calibrated`` record (the calibrated detector, :mod:`kdinterp.dissection.calibrated`) is checked
  for its keys only, and ``calibrated.csv`` is not validated here.

A model directory is validated in two passes, each a suite built in code and run on an ephemeral
GX context (no project files, no progress bars, analytics off):

1. *schema*: each table's columns (in order; the key set for ``summary.json``, flattened with dots
   as in ``detectors.object``) and dtypes. If any table fails it, the content pass is skipped for
   that directory, because its checks would only error on missing or mistyped columns.
2. *content*: value checks plus the checks across tables. Checks that need arithmetic (IoU from the
   counts, one value per concept, units against tally maxima, summary against units) run on
   helper columns added to the frame just before validation. Helper names start with ``_`` or end
   in ``[units.csv]``; they appear in failure messages but never in the files.

Great Expectations is imported lazily, so importing this module stays cheap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kdinterp.core.errors import KdinterpError
from kdinterp.core.io import read_json, write_json
from kdinterp.core.params import CATEGORIES
from kdinterp.dissection.tables import SUMMARY_COUNTS, TALLY_COLUMNS, UNITS_COLUMNS
from kdinterp.measures.dissection import SUMMARY, SUMMARY_KEYS, TALLY, UNITS

if TYPE_CHECKING:
    from great_expectations.core import ExpectationValidationResult

# Before any Great Expectations import (they all happen inside functions below).
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

__all__ = [
    "Check",
    "Failure",
    "MissingTableError",
    "TableReport",
    "ValidationError",
    "format_failures",
    "run_check",
    "validate_dissection",
    "validate_dissections",
]

#: Largest accepted absolute difference between a stored IoU and the IoU recomputed from counts.
IOU_TOLERANCE = 1e-6
#: Example bad rows kept per failed expectation.
MAX_EXAMPLES = 5

# The tables and their schemas are owned by the study contract (kdinterp.core.study).
TALLY_FILE, UNITS_FILE, SUMMARY_FILE = TALLY.name, UNITS.name, SUMMARY.name
_RECOMPUTED_KEYS = SUMMARY_COUNTS
#: Columns that identify a row in example output, per table file.
_ROW_KEYS = {TALLY_FILE: ("unit", "concept"), UNITS_FILE: ("unit",), SUMMARY_FILE: ()}
_INT_TYPES = ["int64", "int32"]
_FLOAT_TYPES = ["float64", "float32"]
_COLUMN_KWARGS = ("column", "column_A", "column_B")
_HIDDEN_KWARGS = {"batch_id", "row_condition", "condition_parser", "result_format", "catch_exceptions"}


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Failure:
    """One expectation that failed, or raised instead of evaluating.

    Attributes:
        expectation: the GX expectation type, e.g. ``expect_column_values_to_be_between``.
        description: what the check means, in words.
        columns: the column(s) it looks at (empty for table-level checks).
        arguments: its other arguments.
        unexpected_count: bad rows, for row-wise checks.
        element_count: rows looked at, for row-wise checks.
        observed: the observed value, for table-level and dtype checks.
        error: the exception message when the check could not be evaluated.
        examples: up to ``MAX_EXAMPLES`` bad rows as ``{column: value}``.
    """

    expectation: str
    description: str
    columns: tuple[str, ...]
    arguments: dict[str, Any]
    unexpected_count: int | None = None
    element_count: int | None = None
    observed: Any = None
    error: str | None = None
    examples: tuple[dict[str, Any], ...] = ()

    def describe(self) -> str:
        """One line: the GX call, how it failed, the wording, and example bad rows."""
        args = ", ".join([*self.columns, *(f"{k}={_fmt(v)}" for k, v in self.arguments.items())])
        if self.error is not None:
            outcome = f"could not be evaluated ({self.error})"
        elif self.unexpected_count is not None:
            outcome = f"failed on {self.unexpected_count} of {self.element_count} rows"
        else:
            outcome = f"failed: observed {_fmt(self.observed)}"
        text = f"{self.expectation}({args}) {outcome} ({self.description})"
        if self.examples:
            text += ", e.g. " + "; ".join(" ".join(f"{k}={_fmt(v)}" for k, v in row.items()) for row in self.examples)
        return text

    def to_json(self) -> dict[str, Any]:
        """The failure as JSON-ready values."""
        return {
            "expectation": self.expectation,
            "description": self.description,
            "columns": list(self.columns),
            "arguments": _jsonable(self.arguments),
            "unexpected_count": self.unexpected_count,
            "element_count": self.element_count,
            "observed": _jsonable(self.observed),
            "error": self.error,
            "examples": _jsonable(list(self.examples)),
        }


@dataclass(frozen=True)
class TableReport:
    """The outcome of validating one table file.

    Attributes:
        path: the table file.
        evaluated: expectations evaluated on it (schema and content passes together).
        succeeded: those that passed.
        failures: those that failed or raised.
        content_checked: False when the content pass was skipped after a schema failure in the
            same model directory.
    """

    path: Path
    evaluated: int = 0
    succeeded: int = 0
    failures: tuple[Failure, ...] = ()
    content_checked: bool = False

    @property
    def success(self) -> bool:
        """True when every check ran and passed."""
        return self.content_checked and not self.failures

    def describe(self) -> list[str]:
        """Message lines for a person, each starting with the table's path (empty on success)."""
        lines = [f"{self.path}: {failure.describe()}" for failure in self.failures]
        if not self.content_checked:
            lines.append(f"{self.path}: content checks skipped until the schema failures above are fixed")
        return [] if self.success else lines

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {
            "path": str(self.path),
            "success": self.success,
            "content_checked": self.content_checked,
            "evaluated_expectations": self.evaluated,
            "successful_expectations": self.succeeded,
            "failures": [failure.to_json() for failure in self.failures],
        }


@dataclass(frozen=True)
class Check:
    """A frame to validate, the suite to run on it, and where it came from."""

    path: Path
    frame: pd.DataFrame = field(repr=False)
    expectations: list[Any] = field(repr=False)


class ValidationError(KdinterpError):
    """Dissection tables are missing or failed validation; the message names each file.

    Attributes:
        reports: the table reports behind the message (empty when files were missing).
    """

    def __init__(self, message: str, reports: Sequence[TableReport] = ()) -> None:
        super().__init__(message)
        self.reports = tuple(reports)

    @classmethod
    def from_reports(cls, reports: Sequence[TableReport]) -> ValidationError:
        """Build the error from table reports, listing every failure (see :func:`format_failures`)."""
        return cls(format_failures(reports), reports)


class MissingTableError(ValidationError, FileNotFoundError):
    """A dissection table file does not exist (also a ``FileNotFoundError``)."""


def format_failures(reports: Sequence[TableReport]) -> str:
    """Describe the failed tables for a person, one line per failed expectation.

    Each line reads ``<path>: <gx expectation>(<columns>, <args>) failed on N of M rows (<wording>),
    e.g. <bad row>; ...``. Tables that passed are left out.
    """
    failed = [report for report in reports if not report.success]
    lines = [f"{len(failed)} of {len(reports)} dissection tables failed validation:"]
    return "\n".join(lines + [line for report in failed for line in report.describe()])


# --------------------------------------------------------------------------- public API


def validate_dissection(model_dir: Path) -> tuple[TableReport, TableReport, TableReport]:
    """Validate one model's dissection tables (issue 2, item 6).

    Schema pass, per table: columns exactly as written by the dissection stage and in order
    (``summary.json``: the key set), integer dtypes for ids and counts, float for IoUs, bool for
    ``detector``, text for names. Content pass, only when every schema check passed:

    * ``tally.csv``: no nulls; ``unit`` in ``[0, num_units)`` (``num_units`` from summary.json);
      ``concept_id >= 1``; ``category`` in CATEGORIES; (unit, concept) unique; ``intersection >= 1``;
      ``concept_area >= 1``; ``iou`` in [0, 1]; ``intersection <= unit_area`` and
      ``intersection <= concept_area``; ``iou`` equal to the IoU from the counts within
      ``IOU_TOLERANCE``; one ``concept_area``, one ``category`` and one ``concept_id`` per concept
      and one concept per ``concept_id``; one ``unit_area`` per (unit, category), as Lite's
      category-restricted activation term implies.
    * ``units.csv``: ``num_units`` rows, unique ``unit`` in ``[0, num_units)`` (together: exactly
      0..num_units-1); ``iou`` present and in [0, 1]; ``detector == (iou >= iou_threshold)``;
      concept, concept_id and category filled wherever ``iou > 0`` (a unit that overlaps nothing
      keeps them empty, as Lite's label ``''``); ``category`` in CATEGORIES; against tally.csv:
      ``iou`` is the unit's largest tally IoU (0 without rows), the named concept has that IoU for
      the unit with the same concept_id and category, each ``<c>_iou`` is the unit's largest IoU in
      category c and each ``<c>_concept`` is a tally concept of category c.
    * ``summary.json``: ``num_units, num_images >= 1``; ``quantile`` in (0, 1); ``iou_threshold``
      in (0, 1]; ``num_detectors``, ``num_unique_concepts`` (distinct concepts among detectors) and
      their per-category counts equal to what units.csv gives.

    Args:
        model_dir: ``outputs/dissection/<model>``.

    Returns:
        Reports for tally.csv, units.csv and summary.json, in that order.

    Raises:
        MissingTableError: a table file is missing.
        ValidationError: a file cannot be parsed (bad CSV, bad JSON, summary not an object).
    """
    tally_path, units_path, summary_path = _table_paths(model_dir)
    tally, units = _read_csv(tally_path), _read_csv(units_path)
    summary = _read_summary(summary_path)
    schema = (
        run_check(Check(tally_path, tally, _tally_schema(tally))),
        run_check(Check(units_path, units, _units_schema(units))),
        run_check(Check(summary_path, summary, _summary_schema(summary))),
    )
    if any(report.failures for report in schema):
        return schema
    num_units, iou_threshold = int(summary.at[0, "num_units"]), float(summary.at[0, "iou_threshold"])
    units_frame = _units_frame(units, tally, iou_threshold)
    return (
        run_check(Check(tally_path, _tally_frame(tally), _tally_content(num_units)), schema[0]),
        run_check(Check(units_path, units_frame, _units_content(num_units, tally)), schema[1]),
        run_check(Check(summary_path, _summary_frame(summary, units), _summary_content()), schema[2]),
    )


def validate_dissections(model_dirs: Sequence[Path], report_path: Path, *, raise_on_failure: bool = False) -> bool:
    """Validate every model directory and write a JSON report (issue 2, item 6).

    The report, written atomically to ``report_path`` even when validation fails, holds overall
    ``success``, the GX version, and per table: ``path``, ``success``, ``content_checked``,
    ``evaluated_expectations``, ``successful_expectations`` and ``failures`` (expectation type,
    wording, columns, arguments, counts, observed value or error, up to five example rows).

    Args:
        model_dirs: ``outputs/dissection/<model>`` directories; see :func:`validate_dissection`
            for the checks.
        report_path: where the JSON report goes.
        raise_on_failure: raise :class:`ValidationError` (after writing the report) instead of
            returning False.

    Returns:
        True when every table of every directory passed.

    Raises:
        ValueError: ``model_dirs`` is empty.
        MissingTableError: table files are missing (all of them listed, nothing validated).
        ValidationError: a file cannot be parsed, or validation failed and ``raise_on_failure``.
    """
    if not model_dirs:
        raise ValueError("validate_dissections: no model directories given")
    _require_tables(model_dirs)
    reports = [report for model_dir in model_dirs for report in validate_dissection(Path(model_dir))]
    success = all(report.success for report in reports)
    write_json(report_path, {
        "success": success,
        "great_expectations_version": _gx().__version__,
        "tables": [report.to_json() for report in reports],
    })  # fmt: skip
    if not success and raise_on_failure:
        raise ValidationError.from_reports(reports)
    return success


# --------------------------------------------------------------------------- reading


def _table_paths(model_dir: Path) -> tuple[Path, Path, Path]:
    """The three table paths of a model directory, checked to exist."""
    _require_tables([model_dir])
    tally, units, summary = (Path(model_dir) / name for name in (TALLY_FILE, UNITS_FILE, SUMMARY_FILE))
    return tally, units, summary


def _require_tables(model_dirs: Sequence[Path]) -> None:
    """Raise one :class:`MissingTableError` naming every missing table and the stages to rerun."""
    missing = [
        Path(model_dir) / name
        for model_dir in model_dirs
        for name in (TALLY_FILE, UNITS_FILE, SUMMARY_FILE)
        if not (Path(model_dir) / name).is_file()
    ]
    if missing:
        stages = " ".join(dict.fromkeys(f"dissect@{path.parent.name}" for path in missing))
        raise MissingTableError(
            "\n".join(f"{path}: file not found" for path in missing)
            + f"\nThe dissection stage writes these files: run `dvc repro -s {stages}` (or `dvc repro`)."
        )


def _read_csv(path: Path) -> pd.DataFrame:
    """Read a table; only empty cells count as missing (a concept named "NA" stays a name)."""
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValidationError(f"{path}: not a readable CSV table ({err}); rerun the dissection stage") from err


def _read_summary(path: Path) -> pd.DataFrame:
    """Read summary.json as a one-row frame with nested keys flattened (``detectors.object``)."""
    try:
        summary = read_json(path)
    except ValueError as err:
        raise ValidationError(str(err)) from err
    if not isinstance(summary, dict):
        raise ValidationError(f"{path}: expected a JSON object, found {type(summary).__name__}")
    return pd.json_normalize(summary)


# --------------------------------------------------------------------------- expectation builders


def _gxe() -> Any:
    """``great_expectations.expectations``, imported on first use."""
    import great_expectations.expectations as gxe

    return gxe


def _between(column: str, description: str, show: Sequence[str] = (), **bounds: Any) -> Any:
    """``column`` within ``bounds`` (``min_value``, ``max_value``, ``strict_min``, ``strict_max``)."""
    meta = {"show": list(show)}
    return _gxe().ExpectColumnValuesToBeBetween(column=column, description=description, meta=meta, **bounds)


def _in_set(column: str, value_set: list[Any], description: str, show: Sequence[str] = ()) -> Any:
    """Every non-empty value of ``column`` in ``value_set``."""
    meta = {"show": list(show)}
    return _gxe().ExpectColumnValuesToBeInSet(column=column, value_set=value_set, description=description, meta=meta)


def _equal(column_a: str, column_b: str, description: str, show: Sequence[str] = ()) -> Any:
    """``column_a == column_b`` row by row (rows where both are empty are skipped)."""
    return _gxe().ExpectColumnPairValuesToBeEqual(
        column_A=column_a, column_B=column_b, description=description, meta={"show": list(show)}
    )


def _at_least(column_a: str, column_b: str) -> Any:
    """``column_a >= column_b`` row by row."""
    description = f"{column_b} <= {column_a}"
    return _gxe().ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=column_a, column_B=column_b, or_equal=True, description=description
    )


def _not_null(columns: Iterable[str], where_iou_positive: bool = False) -> list[Any]:
    """No empty cells in ``columns`` (only on rows with ``iou > 0`` if ``where_iou_positive``)."""
    from great_expectations.expectations.row_conditions import Column

    condition = Column("iou") > 0 if where_iou_positive else None
    scope = " wherever iou > 0" if where_iou_positive else ""
    return [
        _gxe().ExpectColumnValuesToNotBeNull(column=c, row_condition=condition, description=f"{c} is filled in{scope}")
        for c in columns
    ]


def _within_tolerance(column: str, description: str, show: Sequence[str]) -> Any:
    """A helper column of absolute differences at most ``IOU_TOLERANCE`` (infinite when missing)."""
    return _between(column, description, show, min_value=0.0, max_value=IOU_TOLERANCE)


def _one_per_row(column: str, description: str, show: Sequence[str]) -> Any:
    """A helper column of per-group distinct counts equal to 1 on every row."""
    return _in_set(column, [1], description, show)


def _unit_range(num_units: int) -> Any:
    description = f"unit is a 0-based index below num_units={num_units} (summary.json)"
    return _between("unit", description, min_value=0, max_value=num_units, strict_max=True)


# --------------------------------------------------------------------------- schema suites


def _columns_in_order(name: str, columns: Sequence[str]) -> Any:
    description = f"{name} has exactly the dissection stage's columns, in order"
    return _gxe().ExpectTableColumnsToMatchOrderedList(column_list=list(columns), description=description)


def _type_checks(frame: pd.DataFrame, ints: Iterable[str], floats: Iterable[str], texts: Iterable[str]) -> list[Any]:
    """Dtype expectations for the listed columns that exist (missing ones fail the column check)."""
    gxe = _gxe()
    checks = []
    for type_list, kind, columns in ((_INT_TYPES, "an integer", ints), (_FLOAT_TYPES, "a float", floats)):
        checks += [
            gxe.ExpectColumnValuesToBeInTypeList(column=c, type_list=type_list, description=f"{c} is {kind} column")
            for c in columns
            if c in frame.columns
        ]
    # pandas 3 reads text as dtype `str`, which ExpectColumnValuesToBeInTypeList(["str"]) rejects.
    checks += [
        gxe.ExpectColumnValuesToBeOfType(column=c, type_="str", description=f"{c} is a text column")
        for c in texts
        if c in frame.columns
    ]
    return checks


def _tally_schema(tally: pd.DataFrame) -> list[Any]:
    counts = ("unit", "concept_id", "intersection", "unit_area", "concept_area")
    types = _type_checks(tally, ints=counts, floats=["iou"], texts=["concept", "category"])
    return [_columns_in_order(TALLY_FILE, TALLY_COLUMNS), *types]


def _units_schema(units: pd.DataFrame) -> list[Any]:
    gxe = _gxe()
    checks = [_columns_in_order(UNITS_FILE, UNITS_COLUMNS)]
    # Empty cells (units that overlap nothing) make pandas read concept_id as float; its values are
    # checked against tally.csv in the content pass. <c>_concept may be empty throughout, so it is
    # checked by value (a tally concept of category c), not by dtype.
    if "concept_id" in units.columns:
        description = "concept_id is numeric (float only with empty cells)"
        type_list = [*_INT_TYPES, "float64"]
        checks.append(
            gxe.ExpectColumnValuesToBeInTypeList(column="concept_id", type_list=type_list, description=description)
        )
    if "detector" in units.columns:
        checks.append(
            gxe.ExpectColumnValuesToBeOfType(column="detector", type_="bool", description="detector is True/False")
        )
    ious = ["iou", *(f"{c}_iou" for c in CATEGORIES)]
    return checks + _type_checks(units, ints=["unit"], floats=ious, texts=["concept", "category"])


def _summary_keys(summary: pd.DataFrame) -> list[str]:
    """The keys summary.json must have: :data:`SUMMARY_KEYS` when it has a ``calibrated`` record; with
    ``calibrated: null`` (the calibrated detector off) the one key ``calibrated`` instead of the
    ``calibrated.*`` keys, and none of them in a summary written before the calibrated detector existed."""
    if any(str(c).startswith("calibrated.") for c in summary.columns):
        return list(SUMMARY_KEYS)
    return [key for key in SUMMARY_KEYS if not key.startswith("calibrated.")] + (
        ["calibrated"] if "calibrated" in summary.columns else [])


def _summary_schema(summary: pd.DataFrame) -> list[Any]:
    keys = _gxe().ExpectTableColumnsToMatchSet(
        column_set=_summary_keys(summary), exact_match=True,
        description=f"{SUMMARY_FILE} has exactly the expected keys",
    )
    counts = [key for key in SUMMARY_KEYS if key.startswith(("num_", "detectors.", "unique_concepts."))]
    bootstrap = [key for key in SUMMARY_KEYS if key.startswith("probe_bootstrap.")]
    ints = counts + [key for key in bootstrap if key.endswith(("replicates", "blocks"))]
    floats = ["quantile", "iou_threshold"] + [key for key in bootstrap if key not in ints]
    types = _type_checks(summary, ints=ints, floats=floats, texts=["model", "layer"])
    return [keys, *types]


# --------------------------------------------------------------------------- helper columns


def _abs_error(values: pd.Series, reference: pd.Series) -> pd.Series:
    """``|values - reference|``, infinite where either side is missing (so the row fails)."""
    return (values - reference).abs().fillna(np.inf)


def _tally_frame(tally: pd.DataFrame) -> pd.DataFrame:
    """tally.csv plus the helper columns its content suite checks."""
    by_concept = tally.groupby("concept", dropna=False)
    iou_from_counts = tally["intersection"] / (tally["unit_area"] + tally["concept_area"] - tally["intersection"])
    return tally.assign(
        _iou_from_counts=iou_from_counts,
        _iou_error=_abs_error(tally["iou"], iou_from_counts),
        _concept_areas=by_concept["concept_area"].transform("nunique"),
        _concept_categories=by_concept["category"].transform("nunique"),
        _concept_ids=by_concept["concept_id"].transform("nunique"),
        _id_concepts=tally.groupby("concept_id")["concept"].transform("nunique"),
        _unit_areas=tally.groupby(["unit", "category"], dropna=False)["unit_area"].transform("nunique"),
    )


def _units_frame(units: pd.DataFrame, tally: pd.DataFrame, iou_threshold: float) -> pd.DataFrame:
    """units.csv plus helper columns: the expected detector flag and the tally.csv counterparts."""
    pairs = tally.drop_duplicates(["unit", "concept"]).set_index(["unit", "concept"])
    at_concept = pairs.reindex(pd.MultiIndex.from_frame(units[["unit", "concept"]])).set_axis(units.index)
    tally_best = units["unit"].map(tally.groupby("unit")["iou"].max()).fillna(0.0)
    per_category = tally.groupby(["unit", "category"])["iou"].max().unstack().reindex(columns=list(CATEGORIES))
    helpers: dict[str, Any] = {
        "_detector_expected": units["iou"] >= iou_threshold,
        "_tally_best_iou": tally_best,
        "_best_iou_error": _abs_error(units["iou"], tally_best),
        "_tally_concept_iou": at_concept["iou"],
        # A unit without a concept (overlapping nothing) has nothing to look up: left empty, not failed.
        "_concept_iou_error": _abs_error(units["iou"], at_concept["iou"]).where(units["concept"].notna()),
        # ... and its concept_id is 0 (kdinterp.dissection.tables.units_table).
        "_tally_concept_id": at_concept["concept_id"].where(units["concept"].notna(), 0),
        "_tally_category": at_concept["category"],
    }
    for c in CATEGORIES:
        tally_max = units["unit"].map(per_category[c]).fillna(0.0)
        helpers[f"_tally_{c}_iou"] = tally_max
        helpers[f"_{c}_iou_error"] = _abs_error(units[f"{c}_iou"].fillna(0.0), tally_max)
    return units.assign(**helpers)


def _summary_frame(summary: pd.DataFrame, units: pd.DataFrame) -> pd.DataFrame:
    """summary.json's row plus ``<key>[units.csv]``: the same count recomputed from units.csv."""
    detectors = units[units["detector"]]
    expected = {"num_detectors": len(detectors), "num_unique_concepts": detectors["concept"].nunique()}
    for c in CATEGORIES:
        in_category = detectors[detectors["category"] == c]
        expected[f"detectors.{c}"] = len(in_category)
        expected[f"unique_concepts.{c}"] = in_category["concept"].nunique()
    return summary.assign(**{f"{key}[units.csv]": [value] for key, value in expected.items()})


# --------------------------------------------------------------------------- content suites


def _tally_content(num_units: int) -> list[Any]:
    iou_formula = "iou = intersection / (unit_area + concept_area - intersection)"
    unique_pairs = _gxe().ExpectCompoundColumnsToBeUnique(
        column_list=["unit", "concept"], description="one row per (unit, concept)"
    )
    return [
        *_not_null(TALLY_COLUMNS),
        _unit_range(num_units),
        _between("concept_id", "concept_id is a Broden label number (>= 1)", min_value=1),
        _in_set("category", list(CATEGORIES), "category is a Broden category"),
        unique_pairs,
        _between("intersection", "only pairs that overlap are listed", min_value=1),
        _between("concept_area", "a listed concept covers some pixels", min_value=1),
        _between("iou", "iou lies in [0, 1]", min_value=0, max_value=1),
        _at_least("unit_area", "intersection"),
        _at_least("concept_area", "intersection"),
        _within_tolerance(
            "_iou_error", iou_formula, ["iou", "_iou_from_counts", "intersection", "unit_area", "concept_area"]
        ),
        _one_per_row("_concept_areas", "each concept has one concept_area", ["concept_area"]),
        _one_per_row("_concept_categories", "each concept has one category", ["category"]),
        _one_per_row("_concept_ids", "each concept has one concept_id", ["concept_id"]),
        _one_per_row("_id_concepts", "each concept_id names one concept", ["concept_id"]),
        _one_per_row(
            "_unit_areas",
            "one unit_area per (unit, category): Lite's category-restricted activation",
            ["category", "unit_area"],
        ),
    ]


def _units_content(num_units: int, tally: pd.DataFrame) -> list[Any]:
    rows = _gxe().ExpectTableRowCountToEqual(
        value=num_units, description=f"one row per unit (num_units={num_units}, summary.json)"
    )
    return [
        rows,
        *_not_null(["unit", "iou", "detector"]),
        _gxe().ExpectColumnValuesToBeUnique(column="unit", description="one row per unit"),
        _unit_range(num_units),
        _between("iou", "iou lies in [0, 1]", min_value=0, max_value=1),
        _equal("detector", "_detector_expected", "detector == (iou >= iou_threshold)", ["iou"]),
        *_not_null(["concept", "concept_id", "category"], where_iou_positive=True),
        _in_set("category", list(CATEGORIES), "category is a Broden category"),
        _within_tolerance(
            "_best_iou_error", "iou is the unit's largest iou in tally.csv (0 without rows)", ["iou", "_tally_best_iou"]
        ),
        _within_tolerance(
            "_concept_iou_error",
            "the unit has this iou for this concept in tally.csv",
            ["concept", "iou", "_tally_concept_iou"],
        ),
        _equal("concept_id", "_tally_concept_id", "concept_id matches tally.csv", ["concept"]),
        _equal("category", "_tally_category", "category matches tally.csv", ["concept"]),
        *(check for c in CATEGORIES for check in _category_checks(c, tally)),
    ]


def _category_checks(category: str, tally: pd.DataFrame) -> list[Any]:
    """units.csv's ``<category>_concept`` and ``<category>_iou`` against tally.csv."""
    concepts = sorted(tally.loc[tally["category"] == category, "concept"].unique())
    concept, iou = f"{category}_concept", f"{category}_iou"
    return [
        _in_set(concept, concepts, f"{concept} is a {category} concept of tally.csv (or empty)"),
        _within_tolerance(
            f"_{iou}_error", f"{iou} is the unit's largest {category} iou in tally.csv", [concept, iou, f"_tally_{iou}"]
        ),
    ]


def _summary_content() -> list[Any]:
    return [
        _between("num_units", "a layer has units", min_value=1),
        _between("num_images", "the probe set has images", min_value=1),
        _between("quantile", "quantile lies in (0, 1)", min_value=0, max_value=1, strict_min=True, strict_max=True),
        _between("iou_threshold", "iou_threshold lies in (0, 1]", min_value=0, max_value=1, strict_min=True),
        *(_equal(key, f"{key}[units.csv]", f"{key} agrees with units.csv") for key in _RECOMPUTED_KEYS),
    ]


# --------------------------------------------------------------------------- running GX


def _gx() -> Any:
    """Import Great Expectations on first use (about 3 s)."""
    import great_expectations

    return great_expectations


def run_check(check: Check, previous: TableReport | None = None) -> TableReport:
    """Run ``check`` on a fresh ephemeral context; add its outcome to ``previous`` (the schema pass)."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas(name="dissection")
        .add_dataframe_asset(name=check.path.name)
        .add_batch_definition_whole_dataframe(name="all_rows")
        .get_batch(batch_parameters={"dataframe": check.frame})
    )
    suite = gx.ExpectationSuite(name=f"{check.path.name}:{'schema' if previous is None else 'content'}")
    for expectation in check.expectations:
        suite.add_expectation(expectation)
    result = batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES})
    failures = tuple(_failure(r, check) for r in result.results if not r.success)
    base = previous or TableReport(check.path)
    return TableReport(
        path=check.path,
        evaluated=base.evaluated + result.statistics["evaluated_expectations"],
        succeeded=base.succeeded + result.statistics["successful_expectations"],
        failures=base.failures + failures,
        content_checked=previous is not None,
    )


def _failure(result: ExpectationValidationResult, check: Check) -> Failure:
    """Turn one failed GX result into a :class:`Failure` with example rows from ``check.frame``."""
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    columns = tuple(kwargs[k] for k in _COLUMN_KWARGS if k in kwargs)
    if config.type == "expect_compound_columns_to_be_unique":
        columns = tuple(kwargs["column_list"])
        del kwargs["column_list"]
    hidden = _HIDDEN_KWARGS | set(_COLUMN_KWARGS)
    arguments = {k: v for k, v in kwargs.items() if k not in hidden and v is not None}
    exception = result.exception_info or {}
    outcome = dict(result.result or {})
    shown = [*_ROW_KEYS.get(check.path.name, ()), *(config.meta or {}).get("show", []), *columns]
    shown = [c for c in dict.fromkeys(shown) if c in check.frame.columns]
    index = outcome.get("partial_unexpected_index_list") or []
    return Failure(
        expectation=config.type,
        description=config.description or config.type,
        columns=columns,
        arguments=arguments,
        unexpected_count=outcome.get("unexpected_count"),
        element_count=outcome.get("element_count"),
        observed=outcome.get("observed_value"),
        error=exception.get("exception_message") if exception.get("raised_exception") else None,
        examples=tuple({c: check.frame.at[i, c] for c in shown} for i in index[:MAX_EXAMPLES]),
    )


# --------------------------------------------------------------------------- formatting


def _plain(value: Any) -> Any:
    """numpy scalars to Python; missing values to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars, tuples and non-finite floats made JSON-safe; lists over 20 cut."""
    value = _plain(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value[:20]]
        return items + [f"... ({len(value)} values)"] if len(value) > 20 else items
    if isinstance(value, float) and math.isinf(value):
        return str(value)
    return value


def _fmt(value: Any) -> str:
    """A value as it reads best in a message (8 significant digits, lists over 8 shortened)."""
    value = _plain(value)
    if value is None:
        return "<empty>"
    if isinstance(value, float):
        return f"{value:.8g}"
    if isinstance(value, (list, tuple)):
        shown = ", ".join(_fmt(v) for v in value[:8])
        return f"[{shown}, ... ({len(value)} values)]" if len(value) > 8 else f"[{shown}]"
    return str(value)
