"""The Broden reader: the format's rules, and malformed input named with file, row and fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdinterp.dissection.broden import BrodenDataset, BrodenError, collate_broden, load_broden
from kdinterp.dissection.engine import dissect
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
    (lambda root: _replace(root / "c_color.csv", ",1.0", ",lots"), r"c_color\.csv row 2 \(coverage\): expected a finite non-negative decimal .*got 'lots'"),
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


# --------------------------------------------------------------------- the real dataset's layouts and quirks

@pytest.mark.parametrize(("image_size", "seg_size"), [(224, 112), (227, 113)])  # broden1_224, broden1_227
def test_segmentation_size_differs_from_image_size(tmp_path: Path, image_size: int, seg_size: int) -> None:
    car = np.zeros((seg_size, seg_size), np.int64)
    car[10:30, 40:90] = 2
    rows = [{"object": [car], "scene": [4]}, {"object": [car], "color": [np.ones((seg_size, seg_size), np.int64)]}]
    root = write_broden(tmp_path / "probe", LABELS, rows, image_size=image_size, seg_size=seg_size)
    broden = load_broden(root, ALL)
    assert {(r.sh, r.sw) for r in broden.rows} == {(seg_size, seg_size)}
    dataset = BrodenDataset(broden, lambda img: torch.from_numpy(np.array(img)).permute(2, 0, 1).float())
    image, planes, scalars = dataset[0]
    assert image.shape == (3, image_size, image_size) and planes.shape == (1, seg_size, seg_size)
    assert int((planes[0] == 2).sum()) == 20 * 50 and scalars.tolist() == [4]

    class Pool7(torch.nn.Module):  # a 'layer4' of 7x7 maps, as ResNets give at 224 px
        def __init__(self) -> None:
            super().__init__()
            self.layer4 = torch.nn.AdaptiveAvgPool2d(7)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer4(x)

    result = dissect(Pool7(), "layer4", dataset, quantile=0.05, batch_size=2, device=torch.device("cpu"))
    assert result.concept_area[2] == 2 * 20 * 50 and result.concept_area[4] == seg_size**2  # scene: whole image
    assert result.concept_area[1] == seg_size**2 and result.top_images.maps.shape[2:] == (7, 7)


def test_grayscale_and_palette_images_become_rgb(tmp_path: Path) -> None:
    root = _probe(tmp_path)
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(gray, "L").save(root / "images" / "img0.png")
    Image.fromarray(gray, "L").convert("P").save(root / "images" / "img1.png")
    dataset = BrodenDataset(load_broden(root, ALL), lambda img: torch.from_numpy(np.array(img)))
    for i in (0, 1):
        image = dataset[i][0]
        assert image.shape == (8, 8, 3) and (image == torch.from_numpy(gray)[..., None]).all()


def test_label_zero_policy_and_empty_fields(tmp_path: Path) -> None:
    """Label 0 is unlabelled: a scene-0 row with pixels is kept without the 0, a scene-0-only row is dropped."""
    color = np.ones((8, 8), np.int64)
    rows = [{"color": [color], "scene": [0]},      # kept for its pixels; scene 0 dropped
            {"scene": [0]},                        # only scene 0: dropped
            {"scene": [0, 4]},                     # the 0 dropped, 4 kept
            {"texture": []},                       # every field empty: dropped
            {"scene": [4, 4]}]                     # integer lists are kept as written
    labels = {**LABELS, 5: ("striped", "texture")}
    broden = load_broden(write_broden(tmp_path / "probe", labels, rows), (*ALL, "texture"))
    assert [r.image for r in broden.rows] == ["img0.png", "img2.png", "img4.png"]
    assert [r.line for r in broden.rows] == [2, 4, 6]
    assert [r.scalars for r in broden.rows] == [(), (4,), (4, 4)]
    assert [r.pngs for r in broden.rows] == [("img0_color_0.png",), (), ()]
    text = (broden.root / "index.csv").read_text().splitlines()
    assert text[2].endswith(",,,,0,")  # the scene-0 row as written: empty fields and a 0


def test_an_error_names_the_index_row_after_dropped_rows(tmp_path: Path) -> None:
    root = _probe(tmp_path)                        # its index.csv line 4 (scene 0 only) is dropped
    (root / "images" / "img3.png").unlink()
    with pytest.raises(BrodenError, match=r"img3\.png: image not found \(index\.csv row 5\); restore it"):
        load_broden(root, ALL)  # a missing image is refused when index.csv is read


@pytest.mark.parametrize(("old", "new", "message"), [
    (",8,8,8,8,", ",8,8,8.0,8,", r"row 2 \(sh\): expected a positive integer, got '8\.0'; write integers without"),
    (",8,8,8,8,", ",8,8,8,eight,", r"row 2 \(sw\): expected a positive integer, got 'eight'"),
    (",8,8,8,8,", ",8,8,,8,", r"row 2 \(sh\): expected a positive integer, got ''"),
])
def test_malformed_segmentation_size_is_named(tmp_path: Path, old: str, new: str, message: str) -> None:
    root = _probe(tmp_path)
    _replace(root / "index.csv", old, new)
    with pytest.raises(BrodenError, match=message):
        load_broden(root, ALL)


def test_palette_segmentation_png_is_refused_with_the_fix(tmp_path: Path) -> None:
    root = _probe(tmp_path)
    png = root / "images" / "img0_object_0.png"
    Image.fromarray(np.full((8, 8), 2, np.uint8), "L").convert("P").save(png)
    with pytest.raises(BrodenError, match=r"img0_object_0\.png \(index\.csv row 2\): palette-mode PNG.*re-encode"):
        BrodenDataset(load_broden(root, ALL), lambda img: img)[0]


def test_rgba_segmentation_png_is_read_ignoring_alpha(tmp_path: Path) -> None:
    root = _probe(tmp_path)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 2, 7
    Image.fromarray(rgba, "RGBA").save(root / "images" / "img0_object_0.png")
    planes = BrodenDataset(load_broden(root, ALL), lambda img: img)[0][1]
    assert (planes[0] == 2).all()


def test_missing_category_file_is_named(tmp_path: Path) -> None:
    root = _probe(tmp_path)
    (root / "c_part.csv").unlink()
    with pytest.raises(BrodenError, match=r"c_part\.csv: file not found"):
        load_broden(root, ALL)


def test_collate_keeps_the_segmentation_size_of_a_batch_without_label_planes() -> None:
    """A batch of images with image-level labels only (issue 15: batch size 1 crashed on such a row)."""
    items = [(torch.zeros(3, 4, 4), torch.zeros(0, 6, 5, dtype=torch.int64), torch.tensor([7, 8])),
             (torch.zeros(3, 4, 4), torch.zeros(0, 6, 5, dtype=torch.int64), torch.tensor([9]))]
    images, planes, scalars = collate_broden(items)
    assert planes.shape == (2, 0, 6, 5) and planes.flatten(2).shape == (2, 0, 30)
    assert scalars.tolist() == [[7, 8], [9, 0]] and images.shape == (2, 3, 4, 4)
