"""The Broden reader: the format's rules, and malformed input named with file, row and fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdinterp.broden import BrodenDataset, BrodenError, collate_broden, load_broden
from tests.conftest import write_broden

LABELS = {1: ("red-c", "color"), 2: ("car", "object"), 3: ("wheel", "part"), 4: ("beach-s", "scene")}
ALL = ("color", "object", "part", "scene")


def _probe(tmp_path: Path) -> Path:
    car = np.zeros((8, 8), np.int64)
    car[2:4, 2:6] = 2
    rows = [{"object": [car], "part": [np.where(car == 2, 3, 0), np.full((8, 8), 0)], "scene": [4]},
            {"scene": [4]},            # only an image-level label
            {"scene": [0]},            # only the label-0 scene: no data, dropped like in Lite
            {"color": [np.ones((8, 8), np.int64)]}]
    return write_broden(tmp_path / "probe", LABELS, rows)


def test_reads_planes_scalars_and_drops_rows_without_data(tmp_path: Path) -> None:
    broden = load_broden(_probe(tmp_path), ALL)
    assert broden.categories == ("color", "object", "part", "scene")
    assert broden.label_names == ("", "red-c", "car", "wheel", "beach-s")
    assert broden.label_category.tolist() == [-1, 0, 1, 2, 3]
    assert [len(r.pngs) for r in broden.rows] == [3, 0, 1] and [r.scalars for r in broden.rows] == [(4,), (4,), ()]
    dataset = BrodenDataset(broden, lambda img: torch.from_numpy(np.array(img)).permute(2, 0, 1))
    images, planes, scalars = collate_broden([dataset[i] for i in range(3)])
    assert images.shape == (3, 3, 8, 8) and planes.shape == (3, 3, 8, 8) and scalars.tolist() == [[4], [4], [0]]
    assert int((planes[0, 0] == 2).sum()) == 8 and int((planes[0, 1] == 3).sum()) == 8


def test_primary_category_is_the_largest_coverage_and_ties_go_to_the_later_category(tmp_path: Path) -> None:
    root = _probe(tmp_path)
    with open(root / "c_object.csv", "a") as f:
        f.write("9,1,red-c,1,1.0\n")     # red-c also listed under object with equal coverage
    assert load_broden(root, ALL).label_category[1] == 1  # object comes after color in category.csv


@pytest.mark.parametrize(("corrupt", "message"), [
    (lambda root: (root / "label.csv").unlink(), r"label\.csv: file not found"),
    (lambda root: _replace(root / "index.csv", ",4,", ",4.0,"), r"index\.csv row 2 \(scene\): '4\.0' looks like a float"),
    (lambda root: _replace(root / "index.csv", ",4,", ",99,"), r"label 99 >= number of labels 5"),
    (lambda root: _replace(root / "c_color.csv", ",1.0", ",lots"), r"c_color\.csv row 2: coverage 'lots' is not a number"),
    (lambda root: _replace(root / "index.csv", "scene,", "scenery,"), r"missing column\(s\) \['scene'\]"),
])
def test_malformed_files_are_named(tmp_path: Path, corrupt, message: str) -> None:
    root = _probe(tmp_path)
    corrupt(root)
    with pytest.raises(BrodenError, match=message):
        load_broden(root, ALL)


def test_unknown_category_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BrodenError, match=r"no category \['material'\]"):
        load_broden(_probe(tmp_path), ("object", "material"))


@pytest.mark.parametrize(("corrupt", "message"), [
    (lambda png: Image.fromarray(np.zeros((8, 8), np.uint8), "L").save(png), r"expected an RGB PNG"),
    (lambda png: Image.fromarray(np.full((8, 8, 3), 9, np.uint8), "RGB").save(png), r"pixel label 2313 >= number of labels 5"),
    (lambda png: Image.fromarray(np.zeros((4, 4, 3), np.uint8), "RGB").save(png), r"size \(4, 4\) differs"),
    (lambda png: png.unlink(), r"segmentation file not found"),
])
def test_bad_segmentation_png_is_named(tmp_path: Path, corrupt, message: str) -> None:
    root = _probe(tmp_path)
    corrupt(root / "images" / "img0_object_0.png")
    dataset = BrodenDataset(load_broden(root, ALL), lambda img: img)
    with pytest.raises(BrodenError, match=message):
        dataset[0]


def test_missing_image_is_named(tmp_path: Path) -> None:
    root = _probe(tmp_path)
    (root / "images" / "img1.png").unlink()
    with pytest.raises(BrodenError, match=r"img1\.png: image not found \(index\.csv row 3\)"):
        BrodenDataset(load_broden(root, ALL), lambda img: img)[1]


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, 1))
