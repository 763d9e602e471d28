"""The one Great Expectations idiom of :mod:`kdinterp.validation`: run a suite on a frame, report it.

Every validation module (:mod:`~kdinterp.validation.dissection`, :mod:`~kdinterp.validation.probe`,
:mod:`~kdinterp.validation.world`) builds its checks the same way:

1. read a table into a pandas frame, add the *helper columns* its checks need (names start with
   ``_``; they appear in failure messages, never in the files);
2. build a list of expectations with the builders below (:func:`filled`, :func:`unique`,
   :func:`between`, ...; ``show`` names the columns printed for each bad row);
3. run them with :func:`run_check` (or :func:`run_table`: required columns first, content checks
   only when they exist) on a fresh ephemeral GX context (no project files, no progress bars,
   analytics off), which turns the GX result into a :class:`TableReport` of :class:`Failure` records;
4. write the reports as JSON (``TableReport.to_json``) and, on failure, raise a
   :class:`ValidationError` whose message :func:`format_failures` builds.

Great Expectations is imported lazily, so importing this module stays cheap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kdinterp.core.errors import KdinterpError

if TYPE_CHECKING:
    from great_expectations.core import ExpectationValidationResult

# Before any Great Expectations import (they all happen inside functions below).
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

__all__ = ["MAX_EXAMPLES", "Check", "Failure", "MissingTableError", "TableReport", "ValidationError", "at_least",
           "between", "empty", "equal", "exists", "filled", "format_failures", "gx_version", "gxe", "in_set", "matches",
           "require_files", "run_check", "run_table", "true", "unique"]

#: Example bad rows kept per failed expectation.
MAX_EXAMPLES = 5
_COLUMN_KWARGS = ("column", "column_A", "column_B")
_HIDDEN_KWARGS = {"batch_id", "row_condition", "condition_parser", "result_format", "catch_exceptions"}


# --------------------------------------------------------------------------- reporting records


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
    """The outcome of validating one table file (or folder).

    Attributes:
        path: the table file.
        evaluated: expectations evaluated on it (schema and content passes together).
        succeeded: those that passed.
        failures: those that failed or raised.
        content_checked: False when the content checks were skipped after a schema failure.
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
        """The report as JSON-ready values (the entries of ``tables`` in a validation report)."""
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
    """A frame to validate, the suite to run on it, and where it came from.

    Attributes:
        path: the table file the frame was read from (named in every message).
        frame: the table plus its helper columns.
        expectations: GX expectations (the builders below).
        keys: columns that identify a row; printed first in every example bad row.
    """

    path: Path
    frame: pd.DataFrame = field(repr=False)
    expectations: list[Any] = field(repr=False)
    keys: tuple[str, ...] = ()


class ValidationError(KdinterpError):
    """Tables are missing or failed validation; the message names each file.

    Attributes:
        reports: the table reports behind the message (empty when files were missing).
    """

    def __init__(self, message: str, reports: Sequence[TableReport] = ()) -> None:
        super().__init__(message)
        self.reports = tuple(reports)

    @classmethod
    def from_reports(cls, reports: Sequence[TableReport], what: str = "dissection tables",
                     report_path: Path | None = None) -> ValidationError:
        """Build the error from table reports, listing every failure (see :func:`format_failures`)."""
        return cls(format_failures(reports, what, report_path), reports)


class MissingTableError(ValidationError, FileNotFoundError):
    """A table file does not exist (also a ``FileNotFoundError``)."""


def format_failures(reports: Sequence[TableReport], what: str = "dissection tables",
                    report_path: Path | None = None) -> str:
    """Describe the failed tables for a person, one line per failed expectation.

    The first line reads ``N of M <what> failed validation[ (report: <report_path>)]:``; each
    further line ``<path>: <gx expectation>(<columns>, <args>) failed on N of M rows (<wording>),
    e.g. <bad row>; ...``. Tables that passed are left out.
    """
    failed = [report for report in reports if not report.success]
    where = "" if report_path is None else f" (report: {report_path})"
    lines = [f"{len(failed)} of {len(reports)} {what} failed validation{where}:"]
    return "\n".join(lines + [line for report in failed for line in report.describe()])


def require_files(paths: Iterable[Path], hint: str) -> None:
    """Raise one :class:`MissingTableError` naming every missing file, then ``hint`` (what to run).

    Raises:
        MissingTableError: some of ``paths`` is not a file.
    """
    missing = [path for path in paths if not Path(path).is_file()]
    if missing:
        raise MissingTableError("\n".join(f"{path}: file not found" for path in missing) + f"\n{hint}")


# --------------------------------------------------------------------------- expectation builders


def gx() -> Any:
    """``great_expectations``, imported on first use (about 3 s)."""
    import great_expectations

    return great_expectations


def gx_version() -> str:
    """The Great Expectations version (written into every validation report)."""
    return gx().__version__


def gxe() -> Any:
    """``great_expectations.expectations``, imported on first use."""
    import great_expectations.expectations as expectations

    return expectations


def _meta(show: Sequence[str]) -> dict[str, Any]:
    return {"show": list(show)}


def exists(columns: Iterable[str], table: str) -> list[Any]:
    """One ``ExpectColumnToExist`` per column of ``columns`` (``table``: the file name, for the wording)."""
    return [gxe().ExpectColumnToExist(column=c, description=f"{table} has a {c} column") for c in columns]


def filled(column: str, description: str, show: Sequence[str] = ()) -> Any:
    """No empty cell in ``column``."""
    return gxe().ExpectColumnValuesToNotBeNull(column=column, description=description, meta=_meta(show))


def empty(column: str, description: str, show: Sequence[str] = ()) -> Any:
    """Every cell of ``column`` empty (a helper column that names a problem where there is one)."""
    return gxe().ExpectColumnValuesToBeNull(column=column, description=description, meta=_meta(show))


def unique(column: str, description: str, show: Sequence[str] = ()) -> Any:
    """No value of ``column`` twice (empty cells are not compared)."""
    return gxe().ExpectColumnValuesToBeUnique(column=column, description=description, meta=_meta(show))


def matches(column: str, regex: str, description: str, show: Sequence[str] = ()) -> Any:
    """Every non-empty value of ``column`` matches ``regex``."""
    return gxe().ExpectColumnValuesToMatchRegex(column=column, regex=regex, description=description, meta=_meta(show))


def in_set(column: str, values: Iterable[Any], description: str, show: Sequence[str] = ()) -> Any:
    """Every non-empty value of ``column`` in ``values``."""
    return gxe().ExpectColumnValuesToBeInSet(column=column, value_set=list(values), description=description,
                                             meta=_meta(show))


def true(column: str, description: str, show: Sequence[str] = ()) -> Any:
    """A boolean helper column that is True on every row."""
    return in_set(column, [True], description, show)


def between(column: str, description: str, show: Sequence[str] = (), **bounds: Any) -> Any:
    """``column`` within ``bounds`` (``min_value``, ``max_value``, ``strict_min``, ``strict_max``)."""
    return gxe().ExpectColumnValuesToBeBetween(column=column, description=description, meta=_meta(show), **bounds)


def equal(column_a: str, column_b: str, description: str, show: Sequence[str] = ()) -> Any:
    """``column_a == column_b`` row by row (rows where both are empty are skipped)."""
    return gxe().ExpectColumnPairValuesToBeEqual(column_A=column_a, column_B=column_b, description=description,
                                                 meta=_meta(show))


def at_least(column_a: str, column_b: str) -> Any:
    """``column_a >= column_b`` row by row."""
    return gxe().ExpectColumnPairValuesAToBeGreaterThanB(column_A=column_a, column_B=column_b, or_equal=True,
                                                         description=f"{column_b} <= {column_a}")


# --------------------------------------------------------------------------- running GX


def run_check(check: Check, previous: TableReport | None = None) -> TableReport:
    """Run ``check`` on a fresh ephemeral context; add its outcome to ``previous`` (the schema pass).

    Returns:
        A report whose counts and failures are ``previous``'s plus this run's; ``content_checked``
        is True exactly when ``previous`` is given (this run is a content pass).
    """
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx().get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas(name="kdinterp")
        .add_dataframe_asset(name=check.path.name)
        .add_batch_definition_whole_dataframe(name="all_rows")
        .get_batch(batch_parameters={"dataframe": check.frame})
    )
    suite = gx().ExpectationSuite(name=f"{check.path.name}:{'schema' if previous is None else 'content'}")
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


def run_table(path: Path, table: pd.DataFrame, required: Sequence[str],
              parts: Callable[[], Sequence[tuple[pd.DataFrame, list[Any]]]]) -> TableReport:
    """Validate one table: its required columns, then (if they all exist) the content checks.

    With every required column present, the column checks run together with the first content
    frame (one GX run per frame); otherwise only they run and the report says the content checks
    were skipped. ``parts`` builds the ``(frame, expectations)`` pairs (helper columns need the
    required columns, so it is called only when they exist).
    """
    schema = exists(required, path.name)
    if not set(required) <= set(table.columns):
        return run_check(Check(path, table, schema))
    report = TableReport(path)
    for k, (frame, expectations) in enumerate(parts()):
        report = run_check(Check(path, frame, [*schema, *expectations] if k == 0 else expectations), report)
    return report


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
    shown = [*check.keys, *(config.meta or {}).get("show", []), *columns]
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
