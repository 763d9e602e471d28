"""The Great Expectations suites of the dissection tables (:mod:`kdinterp.validation.dissection`).

Three kinds of builders, all in the idiom of :mod:`kdinterp.validation.expectations`:

* *schema* suites (``*_schema``): each table's columns and dtypes;
* *helper columns* (``*_frame``): the arithmetic behind the content checks (IoU from the counts,
  one value per concept, units against tally maxima, summary against units), added to the frame
  just before validation; their names start with ``_`` or end in ``[units.csv]``;
* *content* suites (``*_content``): value checks and the checks across tables.

Each returns a list of GX expectations (or a frame); :func:`kdinterp.validation.dissection.validate_dissection`
runs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from kdinterp.core.params import CATEGORIES
from kdinterp.dissection.tables import SUMMARY_COUNTS, TALLY_COLUMNS, UNITS_COLUMNS
from kdinterp.measures.dissection import CALIBRATED_RECORDS, SUMMARY, SUMMARY_KEYS, TALLY, UNITS
from kdinterp.validation.expectations import at_least, between, equal, gxe, in_set

__all__ = [
    "IOU_TOLERANCE",
    "summary_content",
    "summary_frame",
    "summary_schema",
    "tally_content",
    "tally_frame",
    "tally_schema",
    "units_content",
    "units_frame",
    "units_schema",
]

#: Largest accepted absolute difference between a stored IoU and the IoU recomputed from counts.
IOU_TOLERANCE = 1e-6

TALLY_FILE, UNITS_FILE, SUMMARY_FILE = TALLY.name, UNITS.name, SUMMARY.name
_INT_TYPES = ["int64", "int32"]
_FLOAT_TYPES = ["float64", "float32"]


# --------------------------------------------------------------------------- dissection-only builders


def _not_null(columns: Iterable[str], where_iou_positive: bool = False) -> list[Any]:
    """No empty cells in ``columns`` (only on rows with ``iou > 0`` if ``where_iou_positive``)."""
    from great_expectations.expectations.row_conditions import Column

    condition = Column("iou") > 0 if where_iou_positive else None
    scope = " wherever iou > 0" if where_iou_positive else ""
    return [
        gxe().ExpectColumnValuesToNotBeNull(column=c, row_condition=condition, description=f"{c} is filled in{scope}")
        for c in columns
    ]


def _within_tolerance(column: str, description: str, show: Sequence[str]) -> Any:
    """A helper column of absolute differences at most ``IOU_TOLERANCE`` (infinite when missing)."""
    return between(column, description, show, min_value=0.0, max_value=IOU_TOLERANCE)


def _one_per_row(column: str, description: str, show: Sequence[str]) -> Any:
    """A helper column of per-group distinct counts equal to 1 on every row."""
    return in_set(column, [1], description, show)


def _unit_range(num_units: int) -> Any:
    description = f"unit is a 0-based index below num_units={num_units} (summary.json)"
    return between("unit", description, min_value=0, max_value=num_units, strict_max=True)


# --------------------------------------------------------------------------- schema suites


def _columns_in_order(name: str, columns: Sequence[str]) -> Any:
    description = f"{name} has exactly the dissection stage's columns, in order"
    return gxe().ExpectTableColumnsToMatchOrderedList(column_list=list(columns), description=description)


def _type_checks(frame: pd.DataFrame, ints: Iterable[str], floats: Iterable[str], texts: Iterable[str]) -> list[Any]:
    """Dtype expectations for the listed columns that exist (missing ones fail the column check)."""
    expect = gxe()
    checks = []
    for type_list, kind, columns in ((_INT_TYPES, "an integer", ints), (_FLOAT_TYPES, "a float", floats)):
        checks += [
            expect.ExpectColumnValuesToBeInTypeList(column=c, type_list=type_list, description=f"{c} is {kind} column")
            for c in columns
            if c in frame.columns
        ]
    # pandas 3 reads text as dtype `str`, which ExpectColumnValuesToBeInTypeList(["str"]) rejects.
    checks += [
        expect.ExpectColumnValuesToBeOfType(column=c, type_="str", description=f"{c} is a text column")
        for c in texts
        if c in frame.columns
    ]
    return checks


def tally_schema(tally: pd.DataFrame) -> list[Any]:
    """tally.csv's columns in order; integer ids and counts, float ``iou``, text names."""
    counts = ("unit", "concept_id", "intersection", "unit_area", "concept_area")
    types = _type_checks(tally, ints=counts, floats=["iou"], texts=["concept", "category"])
    return [_columns_in_order(TALLY_FILE, TALLY_COLUMNS), *types]


def units_schema(units: pd.DataFrame) -> list[Any]:
    """units.csv's columns in order; integer ``unit``, numeric ``concept_id``, bool ``detector``, float IoUs."""
    expect = gxe()
    checks = [_columns_in_order(UNITS_FILE, UNITS_COLUMNS)]
    # Empty cells (units that overlap nothing) make pandas read concept_id as float; its values are
    # checked against tally.csv in the content pass. <c>_concept may be empty throughout, so it is
    # checked by value (a tally concept of category c), not by dtype.
    if "concept_id" in units.columns:
        description = "concept_id is numeric (float only with empty cells)"
        type_list = [*_INT_TYPES, "float64"]
        checks.append(
            expect.ExpectColumnValuesToBeInTypeList(column="concept_id", type_list=type_list, description=description)
        )
    if "detector" in units.columns:
        checks.append(
            expect.ExpectColumnValuesToBeOfType(column="detector", type_="bool", description="detector is True/False")
        )
    ious = ["iou", *(f"{c}_iou" for c in CATEGORIES)]
    return checks + _type_checks(units, ints=["unit"], floats=ious, texts=["concept", "category"])


def _summary_keys(summary: pd.DataFrame) -> list[str]:
    """The keys summary.json must have: :data:`SUMMARY_KEYS`, where for each record of
    :data:`CALIBRATED_RECORDS` (``calibrated``, ``calibrated_rotated``) that is null (not measured) the
    one key instead of its ``<record>.*`` keys, and none of them in a summary written before it existed."""
    keys = list(SUMMARY_KEYS)
    for record in CALIBRATED_RECORDS:
        if not any(str(c).startswith(f"{record}.") for c in summary.columns):
            keys = [key for key in keys if not key.startswith(f"{record}.")] + (
                [record] if record in summary.columns else [])
    return keys


def summary_schema(summary: pd.DataFrame) -> list[Any]:
    """summary.json's flattened key set (:data:`~kdinterp.measures.dissection.SUMMARY_KEYS`, see
    :func:`_summary_keys` for the ``calibrated`` record, whose keys only are checked) and value types."""
    keys = gxe().ExpectTableColumnsToMatchSet(
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


def tally_frame(tally: pd.DataFrame) -> pd.DataFrame:
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


def units_frame(units: pd.DataFrame, tally: pd.DataFrame, iou_threshold: float) -> pd.DataFrame:
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


def summary_frame(summary: pd.DataFrame, units: pd.DataFrame) -> pd.DataFrame:
    """summary.json's row plus ``<key>[units.csv]``: the same count recomputed from units.csv."""
    detectors = units[units["detector"]]
    expected = {"num_detectors": len(detectors), "num_unique_concepts": detectors["concept"].nunique()}
    for c in CATEGORIES:
        in_category = detectors[detectors["category"] == c]
        expected[f"detectors.{c}"] = len(in_category)
        expected[f"unique_concepts.{c}"] = in_category["concept"].nunique()
    return summary.assign(**{f"{key}[units.csv]": [value] for key, value in expected.items()})


# --------------------------------------------------------------------------- content suites


def tally_content(num_units: int) -> list[Any]:
    """tally.csv's values (``num_units`` from summary.json); needs the helper columns of :func:`tally_frame`."""
    iou_formula = "iou = intersection / (unit_area + concept_area - intersection)"
    unique_pairs = gxe().ExpectCompoundColumnsToBeUnique(
        column_list=["unit", "concept"], description="one row per (unit, concept)"
    )
    return [
        *_not_null(TALLY_COLUMNS),
        _unit_range(num_units),
        between("concept_id", "concept_id is a Broden label number (>= 1)", min_value=1),
        in_set("category", list(CATEGORIES), "category is a Broden category"),
        unique_pairs,
        between("intersection", "only pairs that overlap are listed", min_value=1),
        between("concept_area", "a listed concept covers some pixels", min_value=1),
        between("iou", "iou lies in [0, 1]", min_value=0, max_value=1),
        at_least("unit_area", "intersection"),
        at_least("concept_area", "intersection"),
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


def units_content(num_units: int, tally: pd.DataFrame) -> list[Any]:
    """units.csv against itself and tally.csv; needs the helper columns of :func:`units_frame`."""
    rows = gxe().ExpectTableRowCountToEqual(
        value=num_units, description=f"one row per unit (num_units={num_units}, summary.json)"
    )
    return [
        rows,
        *_not_null(["unit", "iou", "detector"]),
        gxe().ExpectColumnValuesToBeUnique(column="unit", description="one row per unit"),
        _unit_range(num_units),
        between("iou", "iou lies in [0, 1]", min_value=0, max_value=1),
        equal("detector", "_detector_expected", "detector == (iou >= iou_threshold)", ["iou"]),
        *_not_null(["concept", "concept_id", "category"], where_iou_positive=True),
        in_set("category", list(CATEGORIES), "category is a Broden category"),
        _within_tolerance(
            "_best_iou_error", "iou is the unit's largest iou in tally.csv (0 without rows)", ["iou", "_tally_best_iou"]
        ),
        _within_tolerance(
            "_concept_iou_error",
            "the unit has this iou for this concept in tally.csv",
            ["concept", "iou", "_tally_concept_iou"],
        ),
        equal("concept_id", "_tally_concept_id", "concept_id matches tally.csv", ["concept"]),
        equal("category", "_tally_category", "category matches tally.csv", ["concept"]),
        *(check for c in CATEGORIES for check in _category_checks(c, tally)),
    ]


def _category_checks(category: str, tally: pd.DataFrame) -> list[Any]:
    """units.csv's ``<category>_concept`` and ``<category>_iou`` against tally.csv."""
    concepts = sorted(tally.loc[tally["category"] == category, "concept"].unique())
    concept, iou = f"{category}_concept", f"{category}_iou"
    return [
        in_set(concept, concepts, f"{concept} is a {category} concept of tally.csv (or empty)"),
        _within_tolerance(
            f"_{iou}_error", f"{iou} is the unit's largest {category} iou in tally.csv", [concept, iou, f"_tally_{iou}"]
        ),
    ]


def summary_content() -> list[Any]:
    """summary.json's ranges and its counts against units.csv; needs :func:`summary_frame`'s columns."""
    return [
        between("num_units", "a layer has units", min_value=1),
        between("num_images", "the probe set has images", min_value=1),
        between("quantile", "quantile lies in (0, 1)", min_value=0, max_value=1, strict_min=True, strict_max=True),
        between("iou_threshold", "iou_threshold lies in (0, 1]", min_value=0, max_value=1, strict_min=True),
        *(equal(key, f"{key}[units.csv]", f"{key} agrees with units.csv") for key in SUMMARY_COUNTS),
    ]
