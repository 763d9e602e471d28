"""Tests for kdinterp.validation.data: Great Expectations checks on Broden tables and the concept world.

A small concept world is generated once; each corruption test copies it, breaks one thing and
checks that validation fails with a message naming the file and a bad row.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from kdinterp.validation.probe import probe_files_report

from kdinterp.cli import app
from kdinterp.core.params import WorldParams
from kdinterp.validation.data import validate_data
from kdinterp.validation.expectations import MissingTableError, TableReport, ValidationError
from kdinterp.validation.probe import validate_broden
from kdinterp.validation.world import min_concept_images, validate_world
from kdinterp.world.generate import generate_world
from tests.conftest import write_broden

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = ["object", "part", "scene", "material", "texture", "color"]
# 250 probe images (30 texture tiles, 50 close-ups, 170 scenes): every concept appears, the rarest
# (textures) in exactly 3 images.
PARAMS = WorldParams(seed=3, object_types=2, subtypes_per_type=2, train_per_class=4, val_per_class=2,
                     probe_images=250, texture_fraction=0.12, closeup_fraction=0.2, image_size=16,
                     probe_image_size=32, supersample=1)
THRESHOLDS = {"min_concept_images": 3, "max_coverage": 0.10, "balance_tolerance": 0.05}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("validate_data") / "world"
    generate_world(PARAMS, out, workers=1, progress=False)
    return out


@pytest.fixture
def world(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the generated world, to corrupt."""
    return Path(shutil.copytree(pristine, tmp_path / "world"))


def _failures(reports: list[TableReport]) -> str:
    return "\n".join(line for report in reports for line in report.describe())


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _edit_csv(path: Path, edit: Callable[[list[dict[str, str]]], None]) -> None:
    rows = _rows(path)
    header = list(rows[0])
    edit(rows)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _scene_row(index: Path) -> int:
    """Position of the 6th probe scene in index.csv (its CSV line is this + 2)."""
    return [i for i, r in enumerate(_rows(index)) if r["scene"]][5]


# --------------------------------------------------------------------------- good data


def test_generated_world_passes_every_check(pristine: Path) -> None:
    reports = validate_world(pristine, **THRESHOLDS)
    assert _failures(reports) == ""
    names = [r.path.relative_to(pristine).as_posix() for r in reports]
    assert names[:3] == ["train", "val", "world.json"]
    assert {f"probe/{n}" for n in ("index.csv", "label.csv", "category.csv", "c_texture.csv")} <= set(names)
    assert all(r.success and r.evaluated >= 4 and r.succeeded == r.evaluated for r in reports)


def test_validate_data_writes_a_passing_report(pristine: Path, tmp_path: Path) -> None:
    report = tmp_path / "validation" / "data.json"
    assert validate_data(pristine / "probe", CATEGORIES, report, world_dir=pristine, max_coverage=0.1)
    content = json.loads(report.read_text())
    assert content["success"] is True and content["world_dir"] == str(pristine)
    assert content["thresholds"]["min_concept_images"] == 2 == min_concept_images(pristine, 0.01)  # floor(0.01 * 250)
    paths = [t["path"] for t in content["tables"]]
    assert len(paths) == len(set(paths)) == 3 + 3 + len(CATEGORIES) + 1  # the probe tables once, then its files
    assert all(t["success"] and t["failures"] == [] for t in content["tables"])


def test_plain_broden_directory_passes_with_scene_zero_and_empty_fields(tmp_path: Path) -> None:
    labels = {1: ("red-c", "color"), 2: ("car", "object"), 3: ("street-s", "scene")}
    rows = [{"color": [np.ones((8, 8), int)], "object": [np.full((8, 8), 2)], "scene": [3]},
            {"scene": [0], "object": [np.zeros((8, 8), int), np.full((8, 8), 2)]},  # label-0 policy; two planes
            {"color": [np.ones((8, 8), int)]}]
    root = write_broden(tmp_path / "broden", labels, rows)
    reports = validate_broden(root, ["color", "object", "scene"])
    assert _failures(reports) == ""
    assert [r.path.name for r in reports] == ["category.csv", "label.csv", "c_color.csv", "c_object.csv",
                                              "c_scene.csv", "index.csv"]


# --------------------------------------------------------------------------- index.csv


def test_index_corruptions_name_the_file_the_row_and_the_item(world: Path) -> None:
    """Corruptions on their own probe scene rows, each reported with its row and problem (issue 25: the shared rules)."""
    index, images = world / "probe" / "index.csv", world / "probe" / "images"
    rows = _rows(index)
    k = [i for i, r in enumerate(rows) if r["scene"]][3:8]
    (images / rows[k[0]]["image"]).unlink()
    scene = rows[k[3]]["scene"]

    def edit(table: list[dict[str, str]]) -> None:
        table[k[2]]["scene"] = "999"
        table[k[3]]["scene"] = f"{scene}.0"
        table[k[4]]["sh"] = "0"
        table.append(dict(table[k[1]]))  # a duplicated image row

    _edit_csv(index, edit)
    message = _failures(validate_broden(world / "probe", CATEGORIES))
    expected = {
        "each ;-item of a category field is a label of the column's category or a PNG": [
            f"_row={k[2] + 2} image={rows[k[2]]['image']}", "label 999 >= number of labels",
            f"_row={k[3] + 2} image={rows[k[3]]['image']}", f"'{scene}.0' looks like a float"],
        "sh is a positive integer": [f"_row={k[4] + 2} image={rows[k[4]]['image']}", "got '0'"],
        "every image is listed once": [f"_row={len(rows) + 2} image={rows[k[1]]['image']}", f"already on row {k[1] + 2}"],
        "one sh, sw (and ih, iw) for every image with data": ["batched dissection needs one size"],
    }
    assert len(message.splitlines()) == len(expected), message
    for wording, details in expected.items():
        line = next((line for line in message.splitlines() if wording in line), None)
        assert line is not None and line.startswith(f"{index}: "), f"no failure for {wording!r}:\n{message}"
        assert all(d in line for d in details), line
    assert not probe_files_report(world / "probe", CATEGORIES).success  # the reader refuses too


# --------------------------------------------------------------------------- label.csv, c_*.csv


def test_label_csv_corruptions_name_the_row(world: Path) -> None:
    label = world / "probe" / "label.csv"
    corruptions = {  # label.csv position (colour labels, which index.csv names only inside PNGs) -> edit
        2: ("number", "2", "label numbers are unique"),  # the number of position 1
        3: ("number", "0", "number is a plain integer >= 1"),
        4: ("name", "black-c", "label names are unique"),  # the name of position 0
        5: ("category", "color", "category is a ;-list of cat(count) items"),
        6: ("category", "colour(5)", "every category named in it is listed in category.csv"),
        7: ("coverage", "-0.5", "coverage is a finite non-negative decimal"),  # 5e-1 is a valid float (issue 25)
    }

    def edit(rows: list[dict[str, str]]) -> None:
        for position, (column, value, _) in corruptions.items():
            rows[position][column] = value

    _edit_csv(label, edit)
    message = [line for line in _failures(validate_broden(world / "probe", CATEGORIES)).splitlines()
               if line.startswith(f"{label}: ")]
    assert len(message) == len(corruptions), "\n".join(message)
    for position, (column, value, wording) in corruptions.items():
        line = next(line for line in message if wording in line)
        assert f"_row={position + 2} " in line and f"({column})" in line and value.split("(")[0] in line, line


def test_c_file_with_unknown_number_or_float_coverage(world: Path) -> None:
    path = world / "probe" / "c_texture.csv"

    def edit(rows: list[dict[str, str]]) -> None:
        rows[0]["number"] = "999"
        rows[1]["coverage"] = "abc"

    _edit_csv(path, edit)
    message = _failures(validate_broden(world / "probe", CATEGORIES))
    assert "every number is a label number of label.csv" in message and "_row=2 number=999" in message
    assert "coverage is a finite non-negative decimal" in message and "got 'abc'" in message


def test_unselected_category_missing_from_category_csv(world: Path) -> None:
    _edit_csv(world / "probe" / "category.csv", lambda rows: rows.pop())  # drops texture
    message = _failures(validate_broden(world / "probe", CATEGORIES))
    assert "every selected category (dissection.categories) is listed" in message and "no category ['texture']" in message


def test_missing_table_is_named(world: Path) -> None:
    (world / "probe" / "c_scene.csv").unlink()
    with pytest.raises(MissingTableError, match=r"c_scene\.csv: file not found"):
        validate_broden(world / "probe", CATEGORIES)


# --------------------------------------------------------------------------- the world


def _world_failures(world: Path, **overrides: float) -> str:
    return _failures(validate_world(world, **{**THRESHOLDS, **overrides}))


def test_coverage_above_the_bound_in_world_json(world: Path) -> None:
    path = world / "world.json"
    description = json.loads(path.read_text())
    description["coverage"]["sky"] = 0.2
    path.write_text(json.dumps(description))
    message = _world_failures(world)
    bound = [line for line in message.splitlines() if "every concept covers at most 0.1 of probe pixels" in line]
    assert len(bound) == 1 and bound[0].startswith(f"{path}: ") and "concept=sky category=material" in bound[0]
    assert "world.json coverage equals probe/label.csv coverage / probe images" in message  # and it disagrees


def test_coverage_bound_follows_max_coverage(pristine: Path) -> None:
    top = max(json.loads((pristine / "world.json").read_text())["coverage"].items(), key=lambda kv: kv[1])
    message = _world_failures(pristine, max_coverage=top[1] / 2)
    assert f"concept={top[0]}" in message


def test_rare_concept_fails_the_presence_check(pristine: Path) -> None:
    message = _world_failures(pristine, min_concept_images=4)  # textures appear in 3 probe images each
    line = next(line for line in message.splitlines() if "present in at least 4 probe images" in line)
    assert line.startswith(f"{pristine / 'world.json'}: ") and "category=texture" in line


def test_class_missing_from_val(world: Path) -> None:
    name = json.loads((world / "world.json").read_text())["classes"][1]["name"]
    shutil.rmtree(world / "val" / name)
    message = _world_failures(world)
    line = next(line for line in message.splitlines() if "every class of world.json has a folder in val/" in line)
    assert line.startswith(f"{world / 'val'}: ") and f"class={name}" in line
    assert str(world / "train") not in message


def test_unbalanced_classes(world: Path) -> None:
    name = json.loads((world / "world.json").read_text())["classes"][0]["name"]
    for png in sorted((world / "train" / name).iterdir())[:2]:
        png.unlink()
    message = _world_failures(world)
    line = next(line for line in message.splitlines() if "class sizes within 5% of the mean" in line)
    assert line.startswith(f"{world / 'train'}: ") and f"class={name} images=2" in line
    assert "as many images as world.json says (params.train_per_class = 4)" in message


def test_balance_tolerance_is_a_relative_bound(world: Path) -> None:
    name = json.loads((world / "world.json").read_text())["classes"][0]["name"]
    sorted((world / "train" / name).iterdir())[0].unlink()  # 3 vs 4: 20% below the mean of 3.75
    assert "class sizes within" in _world_failures(world, balance_tolerance=0.15)
    assert "class sizes within" not in _world_failures(world, balance_tolerance=0.25)


def test_stray_folder_unreadable_file_and_missing_saliency(world: Path) -> None:
    (world / "train" / "not_a_class").mkdir()
    name = json.loads((world / "world.json").read_text())["classes"][0]["name"]
    images = sorted((world / "val" / name).iterdir())
    images[0].write_bytes(b"not a png")
    (world / "saliency" / "val" / name / images[1].name).unlink()
    message = _world_failures(world)
    assert "every folder is a class of world.json" in message and "class=not_a_class" in message
    assert "every file in a class folder is a PNG/JPEG image" in message
    assert f"_first_unreadable={images[0].name}" in message
    assert f"_first_without_saliency={images[1].name}" in message


def test_validate_data_raises_after_writing_the_report(world: Path, tmp_path: Path) -> None:
    index = world / "probe" / "index.csv"
    (world / "probe" / "images" / _rows(index)[_scene_row(index)]["image"]).unlink()
    report = tmp_path / "data.json"
    with pytest.raises(ValidationError, match=r"1 of 13 data tables failed validation") as err:
        validate_data(world / "probe", CATEGORIES, report, world_dir=world, max_coverage=0.1)
    assert "image not found (index.csv row" in str(err.value)  # the reader's own check of the files
    content = json.loads(report.read_text())
    assert content["success"] is False
    assert [t["path"] for t in content["tables"] if not t["success"]] == [str(world / "probe" / "images")]


# --------------------------------------------------------------------------- the command


def _params_file(tmp_path: Path, world_file: str | None) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["world_file"] = world_file
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_cli_validates_and_exits_1_on_bad_data(world: Path, tmp_path: Path) -> None:
    params = _params_file(tmp_path, str(world / "world.json"))
    report = tmp_path / "out" / "data.json"
    args = ["validate-data", "--world", str(world), "--broden", str(world / "probe"), "--report", str(report),
            "--params", str(params)]
    ok = CliRunner().invoke(app, args)
    assert ok.exit_code == 0, ok.output
    content = json.loads(report.read_text())
    assert content["success"] and content["thresholds"]["max_coverage"] == 0.1  # quantile / iou_threshold
    (world / "val" / json.loads((world / "world.json").read_text())["classes"][0]["name"]).rename(world / "val" / "x")
    bad = CliRunner().invoke(app, args)
    assert bad.exit_code == 1 and "every class of world.json has a folder in val/" in bad.output


def test_cli_skips_the_world_when_data_is_not_a_concept_world(world: Path, tmp_path: Path) -> None:
    shutil.rmtree(world / "val")  # would fail the world checks
    report = tmp_path / "data.json"
    result = CliRunner().invoke(app, ["validate-data", "--world", str(world), "--broden", str(world / "probe"),
                                      "--report", str(report), "--params", str(_params_file(tmp_path, None))])
    assert result.exit_code == 0, result.output
    assert "concept world checks skipped" in result.output
    content = json.loads(report.read_text())
    assert content["world_dir"] is None and len(content["tables"]) == 3 + len(CATEGORIES) + 1


def test_cli_refuses_a_world_that_is_not_data_world_file(world: Path, tmp_path: Path) -> None:
    params = _params_file(tmp_path, "data/concept_world/world.json")
    result = CliRunner().invoke(app, ["validate-data", "--world", str(world), "--broden", str(world / "probe"),
                                      "--report", str(tmp_path / "data.json"), "--params", str(params)])
    assert result.exit_code == 1 and "is not the directory of data.world_file" in result.output
    assert not (tmp_path / "data.json").exists()
