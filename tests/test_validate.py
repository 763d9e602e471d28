"""Tests for kdinterp.validation.dissection: Great Expectations suites over the dissection tables (issue 2, item 6).

Each test builds a small, internally consistent dissection directory (6 units, 5 concepts in 3
categories, counts from a seeded RNG, IoUs computed from the counts, one unit that overlaps
nothing), corrupts one thing, and checks that the message names the file, the expectation and a
bad row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdinterp.core.params import CATEGORIES
from kdinterp.validation.dissection import validate_dissection, validate_dissections
from kdinterp.validation.expectations import MissingTableError, TableReport, ValidationError, format_failures

NUM_UNITS = 6
DEAD_UNIT = 2  # overlaps no concept: empty concept in units.csv, no tally rows
IOU_THRESHOLD = 0.05
#: (concept, concept_id, category)
CONCEPTS = [
    ("car", 1, "object"),
    ("boat", 2, "object"),
    ("sky", 3, "material"),
    ("grass", 4, "material"),
    ("red", 5, "color"),
]


def _tally(seed: int = 0) -> pd.DataFrame:
    """Counts drawn so that intersection <= both areas and unit_area is fixed per (unit, category)."""
    rng = np.random.default_rng(seed)
    concept_area = {name: int(rng.integers(200, 2500)) for name, _, _ in CONCEPTS}
    rows = []
    for unit in range(NUM_UNITS):
        if unit == DEAD_UNIT:
            continue
        unit_area = {category: int(rng.integers(20, 300)) for category in CATEGORIES}
        for name, concept_id, category in CONCEPTS:
            if rng.random() < 0.2:
                continue
            ua, ca = unit_area[category], concept_area[name]
            intersection = int(rng.integers(1, min(ua, ca) // 2 + 1))
            iou = intersection / (ua + ca - intersection)
            rows.append((unit, name, concept_id, category, intersection, ua, ca, iou))
    columns = ["unit", "concept", "concept_id", "category", "intersection", "unit_area", "concept_area", "iou"]
    return pd.DataFrame(rows, columns=columns)


def _best(rows: pd.DataFrame) -> pd.Series | None:
    return rows.loc[rows["iou"].idxmax()] if len(rows) else None


def _units(tally: pd.DataFrame) -> pd.DataFrame:
    """Each unit's best concept overall and per category, as the dissection stage writes them."""
    records = []
    for unit in range(NUM_UNITS):
        rows = tally[tally["unit"] == unit]
        best = _best(rows)
        record = {
            "unit": unit,
            "concept": None if best is None else best["concept"],
            "concept_id": 0 if best is None else best["concept_id"],  # as units_table writes it
            "category": None if best is None else best["category"],
            "iou": 0.0 if best is None else best["iou"],
        }
        record["detector"] = record["iou"] >= IOU_THRESHOLD
        for category in CATEGORIES:
            in_category = _best(rows[rows["category"] == category])
            record[f"{category}_concept"] = None if in_category is None else in_category["concept"]
            record[f"{category}_iou"] = 0.0 if in_category is None else in_category["iou"]
        records.append(record)
    units = pd.DataFrame(records)
    return units.astype({"concept_id": "Int64", "iou": "float64"})


def _summary(units: pd.DataFrame) -> dict:
    detectors = units[units["detector"]]
    return {
        "model": "student_kd",
        "seed": 0,
        "layer": "layer4",
        "num_units": NUM_UNITS,
        "num_images": 40,
        "quantile": 0.005,
        "iou_threshold": IOU_THRESHOLD,
        "num_detectors": len(detectors),
        "num_unique_concepts": detectors["concept"].nunique(),
        "detectors": {c: int((detectors["category"] == c).sum()) for c in CATEGORIES},
        "unique_concepts": {c: detectors.loc[detectors["category"] == c, "concept"].nunique() for c in CATEGORIES},
        "probe_bootstrap": {"replicates": 1000, "blocks": 20, "mean": float(len(detectors)) + 0.5, "sd": 1.2,
                            "low": float(len(detectors)) - 2, "high": float(len(detectors)) + 3},
    }


def _write_dissection(model_dir: Path) -> Path:
    model_dir.mkdir(parents=True)
    tally = _tally()
    units = _units(tally)
    tally.to_csv(model_dir / "tally.csv", index=False)
    units.to_csv(model_dir / "units.csv", index=False)
    (model_dir / "summary.json").write_text(json.dumps(_summary(units), indent=2))
    return model_dir


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return _write_dissection(tmp_path / "outputs" / "dissection" / "student_kd")


def _edit(model_dir: Path, name: str, edit: Callable[[pd.DataFrame], None]) -> None:
    """Apply an in-place edit to one CSV table."""
    path = model_dir / name
    frame = pd.read_csv(path)
    edit(frame)
    frame.to_csv(path, index=False)


def _message(reports: tuple[TableReport, ...]) -> str:
    assert not all(report.success for report in reports), "the corruption went unnoticed"
    return format_failures(reports)


def _failure_lines(message: str, path: Path, expectation: str) -> list[str]:
    lines = [line for line in message.splitlines() if line.startswith(f"{path}: {expectation}(")]
    assert lines, f"no {expectation} failure for {path} in:\n{message}"
    return lines


def test_fixture_is_consistent_and_nontrivial(model_dir: Path) -> None:
    tally = pd.read_csv(model_dir / "tally.csv")
    units = pd.read_csv(model_dir / "units.csv")
    assert 10 < len(tally) < NUM_UNITS * len(CONCEPTS)
    assert 0 < units["detector"].sum() < NUM_UNITS - 1, "want detectors and non-detectors"
    assert units["concept"].isna().tolist() == [u == DEAD_UNIT for u in range(NUM_UNITS)]


def test_good_directory_passes(model_dir: Path) -> None:
    reports = validate_dissection(model_dir)
    assert [report.path.name for report in reports] == ["tally.csv", "units.csv", "summary.json"]
    for report in reports:
        assert report.success, format_failures(reports)
        assert report.content_checked
        assert report.evaluated == report.succeeded >= 10


def test_iou_above_one_fails_with_bad_row(model_dir: Path) -> None:
    def corrupt(tally: pd.DataFrame) -> None:
        tally.loc[3, "iou"] = 1.4

    _edit(model_dir, "tally.csv", corrupt)
    tally = pd.read_csv(model_dir / "tally.csv")
    unit, concept = tally.loc[3, ["unit", "concept"]]
    message = _message(validate_dissection(model_dir))
    (line,) = [
        line
        for line in _failure_lines(message, model_dir / "tally.csv", "expect_column_values_to_be_between")
        if "(iou, " in line
    ]
    assert f"failed on 1 of {len(tally)} rows" in line
    assert "iou lies in [0, 1]" in line
    assert f"unit={unit} concept={concept} iou=1.4" in line


def test_duplicate_unit_concept_fails(model_dir: Path) -> None:
    tally = pd.read_csv(model_dir / "tally.csv")
    pd.concat([tally, tally.iloc[[2]]]).to_csv(model_dir / "tally.csv", index=False)
    unit, concept = tally.loc[2, ["unit", "concept"]]
    message = _message(validate_dissection(model_dir))
    (line,) = _failure_lines(message, model_dir / "tally.csv", "expect_compound_columns_to_be_unique")
    assert "(unit, concept)" in line and "failed on 2 of" in line
    assert line.count(f"unit={unit} concept={concept}") == 2


def test_one_based_units_fail_the_range_check(model_dir: Path) -> None:
    def corrupt(tally: pd.DataFrame) -> None:
        tally["unit"] += 1

    _edit(model_dir, "tally.csv", corrupt)
    message = _message(validate_dissection(model_dir))
    lines = _failure_lines(message, model_dir / "tally.csv", "expect_column_values_to_be_between")
    (line,) = [line for line in lines if "(unit, " in line]
    assert f"max_value={NUM_UNITS}, strict_max=True" in line
    assert f"unit={NUM_UNITS} concept=" in line
    assert "0-based" in line


def test_unknown_category_fails(model_dir: Path) -> None:
    def corrupt(tally: pd.DataFrame) -> None:
        tally.loc[0, "category"] = "weather"

    _edit(model_dir, "tally.csv", corrupt)
    message = _message(validate_dissection(model_dir))
    lines = _failure_lines(message, model_dir / "tally.csv", "expect_column_values_to_be_in_set")
    (line,) = [line for line in lines if "(category, " in line]
    assert "(category, value_set=[object, part, scene, material, texture, color])" in line
    assert "category=weather" in line


def test_intersection_above_unit_area_fails(model_dir: Path) -> None:
    def corrupt(tally: pd.DataFrame) -> None:
        tally.loc[1, "intersection"] = tally.loc[1, "unit_area"] + 1

    _edit(model_dir, "tally.csv", corrupt)
    row = pd.read_csv(model_dir / "tally.csv").loc[1]
    message = _message(validate_dissection(model_dir))
    lines = _failure_lines(message, model_dir / "tally.csv", "expect_column_pair_values_a_to_be_greater_than_b")
    (line,) = [line for line in lines if "(unit_area, intersection, or_equal=True)" in line]
    unit, concept, unit_area, intersection = row[["unit", "concept", "unit_area", "intersection"]]
    assert f"unit={unit} concept={concept} unit_area={unit_area} intersection={intersection}" in line


def test_iou_inconsistent_with_counts_fails(model_dir: Path) -> None:
    def corrupt(tally: pd.DataFrame) -> None:
        tally.loc[4, "iou"] *= 0.9

    _edit(model_dir, "tally.csv", corrupt)
    row = pd.read_csv(model_dir / "tally.csv").loc[4]
    message = _message(validate_dissection(model_dir))
    lines = _failure_lines(message, model_dir / "tally.csv", "expect_column_values_to_be_between")
    (line,) = [line for line in lines if "(_iou_error, " in line]
    assert "iou = intersection / (unit_area + concept_area - intersection)" in line
    assert f"unit={row['unit']} concept={row['concept']} " in line
    assert f"intersection={row['intersection']} unit_area={row['unit_area']}" in line


def test_wrong_detector_flag_fails(model_dir: Path) -> None:
    def corrupt(units: pd.DataFrame) -> None:
        units.loc[0, "detector"] = not units.loc[0, "detector"]

    _edit(model_dir, "units.csv", corrupt)
    message = _message(validate_dissection(model_dir))
    (line,) = _failure_lines(message, model_dir / "units.csv", "expect_column_pair_values_to_be_equal")
    assert "(detector, _detector_expected)" in line and "detector == (iou >= iou_threshold)" in line
    units = pd.read_csv(model_dir / "units.csv")
    iou, flag = units.loc[0, ["iou", "detector"]]
    assert f"e.g. unit=0 iou={iou:.8g} detector={flag} _detector_expected={not flag}" in line


def test_wrong_num_detectors_in_summary_fails(model_dir: Path) -> None:
    path = model_dir / "summary.json"
    summary = json.loads(path.read_text())
    summary["num_detectors"] += 1
    path.write_text(json.dumps(summary))
    reports = validate_dissection(model_dir)
    assert [report.success for report in reports] == [True, True, False]
    (line,) = _failure_lines(_message(reports), path, "expect_column_pair_values_to_be_equal")
    expected = summary["num_detectors"] - 1
    assert f"num_detectors={expected + 1} num_detectors[units.csv]={expected}" in line


@pytest.mark.parametrize("calibrated", ["record", "null", "broken"])
def test_summary_with_a_calibrated_record_or_null_passes(model_dir: Path, calibrated: str) -> None:
    """summary.json's ``calibrated``: a full record or null passes (its keys only are checked); a key missing fails."""
    path = model_dir / "summary.json"
    summary = json.loads(path.read_text())
    record = {"fdr": 0.05, "permutations": 9999, "null": "permutation", "split_seed": 0, "min_iou": 0.0,
              "primary_categories": ["object", "part", "scene"], "detectors": 3, "primary": 2, "low_level": 1,
              "per_category": {c: int(c in ("object", "part", "color")) for c in CATEGORIES}, "unique_concepts": 3,
              "splits": 5}
    if calibrated == "broken":
        del record["per_category"]["color"]
    summary["calibrated"] = None if calibrated == "null" else record
    path.write_text(json.dumps(summary))
    reports = validate_dissection(model_dir)
    if calibrated == "broken":
        _failure_lines(_message(reports), path, "expect_table_columns_to_match_set")
    else:
        assert all(report.success for report in reports), format_failures(reports)


def test_missing_column_fails_schema_and_skips_content(model_dir: Path) -> None:
    _edit(model_dir, "tally.csv", lambda tally: tally.pop("concept_area"))
    reports = validate_dissection(model_dir)
    assert not any(report.content_checked for report in reports)
    message = _message(reports)
    (line,) = _failure_lines(message, model_dir / "tally.csv", "expect_table_columns_to_match_ordered_list")
    assert "observed [unit, concept, concept_id, category, intersection, unit_area, iou]" in line
    assert f"{model_dir / 'units.csv'}: content checks skipped" in message


def test_missing_tally_raises_clear_error(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "tally.csv").unlink()
    with pytest.raises(MissingTableError) as raised:
        validate_dissections([model_dir], tmp_path / "report.json")
    message = str(raised.value)
    assert f"{model_dir / 'tally.csv'}: file not found" in message
    assert "dvc repro -s dissect@student_kd" in message
    assert isinstance(raised.value, FileNotFoundError)
    assert not (tmp_path / "report.json").exists()


def test_report_lists_failure_and_error_message(tmp_path: Path) -> None:
    good = _write_dissection(tmp_path / "dissection" / "teacher")
    bad = _write_dissection(tmp_path / "dissection" / "student_kd")

    def corrupt(tally: pd.DataFrame) -> None:
        tally.loc[0, "category"] = "weather"

    _edit(bad, "tally.csv", corrupt)
    report_path = tmp_path / "validation" / "dissection.json"
    assert validate_dissections([good, bad], report_path) is False
    report = json.loads(report_path.read_text())
    assert report["success"] is False
    by_path = {table["path"]: table for table in report["tables"]}
    assert all(by_path[str(good / name)]["success"] for name in ("tally.csv", "units.csv", "summary.json"))
    tally = by_path[str(bad / "tally.csv")]
    assert tally["success"] is False and tally["evaluated_expectations"] > tally["successful_expectations"]
    in_set = [f for f in tally["failures"] if f["expectation"] == "expect_column_values_to_be_in_set"]
    (failure,) = [f for f in in_set if f["columns"] == ["category"]]
    assert failure["unexpected_count"] == 1 and failure["examples"][0]["category"] == "weather"

    with pytest.raises(ValidationError) as raised:
        validate_dissections([bad], tmp_path / "again.json", raise_on_failure=True)
    message = str(raised.value)
    assert message.startswith("2 of 3 dissection tables failed validation:\n")  # tally.csv and units.csv
    assert f"{bad / 'tally.csv'}: expect_column_values_to_be_in_set(category" in message
    assert len(raised.value.reports) == 3
