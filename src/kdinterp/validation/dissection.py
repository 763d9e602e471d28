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

The suites live in :mod:`kdinterp.validation.dissection_suites`; running them and the reporting
records (:class:`~kdinterp.validation.expectations.TableReport`, ...) follow the one idiom of
:mod:`kdinterp.validation.expectations`. Great Expectations is imported lazily, so importing this
module stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from kdinterp.core.io import read_json, write_json
from kdinterp.measures.dissection import SUMMARY, TALLY, UNITS
from kdinterp.validation import dissection_suites as suites
from kdinterp.validation.expectations import (
    Check,
    TableReport,
    ValidationError,
    gx_version,
    require_files,
    run_check,
)

__all__ = ["validate_dissection", "validate_dissections"]

# The files are declared by the dissection measure (kdinterp.measures.dissection).
TALLY_FILE, UNITS_FILE, SUMMARY_FILE = TALLY.name, UNITS.name, SUMMARY.name
#: Columns that identify a row in example output, per table file.
_ROW_KEYS = {TALLY_FILE: ("unit", "concept"), UNITS_FILE: ("unit",), SUMMARY_FILE: ()}


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
        run_check(_check(tally_path, tally, suites.tally_schema(tally))),
        run_check(_check(units_path, units, suites.units_schema(units))),
        run_check(_check(summary_path, summary, suites.summary_schema(summary))),
    )
    if any(report.failures for report in schema):
        return schema
    num_units, iou_threshold = int(summary.at[0, "num_units"]), float(summary.at[0, "iou_threshold"])
    units_frame = suites.units_frame(units, tally, iou_threshold)
    return (
        run_check(_check(tally_path, suites.tally_frame(tally), suites.tally_content(num_units)), schema[0]),
        run_check(_check(units_path, units_frame, suites.units_content(num_units, tally)), schema[1]),
        run_check(_check(summary_path, suites.summary_frame(summary, units), suites.summary_content()), schema[2]),
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
        "great_expectations_version": gx_version(),
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
    paths = [Path(model_dir) / name for model_dir in model_dirs for name in (TALLY_FILE, UNITS_FILE, SUMMARY_FILE)]
    stages = " ".join(dict.fromkeys(f"dissect@{path.parent.name}" for path in paths if not path.is_file()))
    require_files(paths, f"The dissection stage writes these files: run `dvc repro -s {stages}` (or `dvc repro`).")


def _check(path: Path, frame: pd.DataFrame, expectations: list) -> Check:
    """A :class:`Check` of one dissection table, its examples keyed by the table's row keys."""
    return Check(path, frame, expectations, keys=_ROW_KEYS[path.name])


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
