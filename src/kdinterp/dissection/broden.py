"""Reader for probe sets in the Broden layout (``broden1_224``, ``broden1_227`` and the concept world's probe set).

Format (``research/dissection.md`` §2; NetDissect-Lite ``loader/data_loader.py``):

* ``category.csv``: category names; the file order is the category order.
* ``label.csv``: ``number,name,...``, global label numbers 1..L (gaps allowed; 0 = unlabelled).
* ``c_<category>.csv``: ``code,number,name,frequency,coverage``; a label's *primary* category is
  the selected category where its ``coverage`` is largest (ties: the later category, as Lite).
* ``index.csv``: one row per image with ``image,sh,sw`` and one column per category. A category
  field is empty or a ``;``-list of items: an integer is an image-level label (scene, texture), any
  other item is an RGB PNG (relative to ``images/``) whose pixels hold label ``R + 256 * G``.
  Several PNGs per category are several planes (ADE parts: ``a_part_1.png;a_part_2.png``).

Sizes: the segmentation size ``(sh, sw)`` need not be the image size (``broden1_224``: 224 px
images, 112 px segmentations; ``broden1_227``: 227 / 113); all rows must share one ``(sh, sw)``
and one image size ``(ih, iw)`` (when index.csv has those columns, each image must have it).
Images may be RGB, grayscale or palette (converted to RGB); segmentation PNGs must be RGB(A).

Label 0 policy: 0 means "unlabelled" for pixels *and* for image-level labels (NetDissect-Lite keeps
image-level 0, which gives Broden's phantom label ``''``, pitfall P-C4; we drop it). A row whose
only data is label 0 (Broden's scene-0 rows without pixels) carries no data and is dropped.

Memory: only ``index.csv`` is parsed up front (one small record per row); images and PNGs are
read when an item is requested, so a DataLoader streams them.

Every error is a :class:`BrodenError` naming the file, the ``index.csv`` row where there is one,
and the fix.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from kdinterp.core.errors import KdinterpError

__all__ = ["Broden", "BrodenDataset", "BrodenError", "collate_broden", "load_broden", "read_image", "read_segmentation",
           "unreadable_rows"]

_INT = re.compile(r"^\d+$")
_FLOATY_INT = re.compile(r"^\d+\.\d*$")


class BrodenError(KdinterpError, ValueError):
    """A Broden-layout file is missing or malformed; the message names the file, row and fix."""


@dataclass(frozen=True, slots=True)
class BrodenRow:
    """One probe image: its path, segmentation size, pixel-label PNGs and image-level labels.

    ``line`` is the row's line number in ``index.csv`` (the header is line 1), for error messages;
    ``ih, iw`` the image size the row declares (0 when index.csv has no ih/iw columns).
    """

    image: str
    sh: int
    sw: int
    pngs: tuple[str, ...]
    scalars: tuple[int, ...]
    line: int = 0
    ih: int = 0
    iw: int = 0


@dataclass(frozen=True)
class Broden:
    """A parsed probe set.

    Attributes:
        root: the data set directory.
        categories: the selected categories, in ``category.csv`` order.
        label_names: ``(L + 1,)`` names by label number; index 0 is ``''``.
        label_category: ``(L + 1,)`` int64 index into ``categories`` of each label's primary
            category; -1 for label 0 and for labels in no selected category (the reader refuses
            such labels where an image uses them, so none is dropped from the tally silently).
        rows: the images that carry data in at least one selected category.
    """

    root: Path
    categories: tuple[str, ...]
    label_names: tuple[str, ...]
    label_category: np.ndarray
    rows: tuple[BrodenRow, ...]

    @property
    def num_labels(self) -> int:
        """``L + 1``: label numbers run from 0 (unlabelled) to L."""
        return len(self.label_names)


def load_broden(root: str | Path, categories: tuple[str, ...]) -> Broden:
    """Parse ``category.csv``, ``label.csv``, ``c_<category>.csv`` and ``index.csv`` under ``root``.

    Args:
        root: the probe set directory (e.g. ``data/broden1_224``).
        categories: categories to use (any order; the file order is kept).

    Returns:
        The parsed :class:`Broden`. Image and PNG files are opened only when read.

    Raises:
        BrodenError: a file or column is missing, a file is not UTF-8, a number is malformed
            (``83.0`` for an integer, non-numeric or non-finite coverage), a label number is out of
            range, an image-level label has no selected category (it would drop out of the tally),
            or a category is unknown.
    """
    root = Path(root)
    known = [r["name"] for r in _read_csv(root / "category.csv", ("name",))]
    unknown = sorted(set(categories) - set(known))
    if unknown:
        raise BrodenError(f"{root / 'category.csv'}: no categor{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
                          f"it lists {known}; fix dissection.categories in params.yaml")
    selected = tuple(c for c in known if c in categories)
    names = _label_names(root / "label.csv")
    label_category = _primary_categories(root, selected, len(names))
    rows = _index_rows(root / "index.csv", selected, len(names))
    for row in rows:
        _check_claimed(np.asarray(row.scalars, dtype=np.int64), label_category, names, selected,
                       f"{root / 'index.csv'} row {row.line}")
    return Broden(root, selected, names, label_category, rows)


def _read_csv(path: Path, required: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """The rows of a CSV file, one at a time, after checking that the header has ``required``."""
    if not path.is_file():
        raise BrodenError(f"{path}: file not found; is dissection.broden_dir a Broden-layout directory?")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise BrodenError(f"{path}: missing column(s) {missing} (header: {reader.fieldnames}); add them "
                                  "(an empty field is allowed) or fix dissection.categories")
            yield from reader
    except UnicodeDecodeError as err:
        raise BrodenError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); re-save it as UTF-8, "
                          "the encoding of Broden's CSV files") from None


def _integer(value: str | None, where: str) -> int:
    if value is None or not _INT.match(value.strip()):
        fix = "; write integers without a decimal point (pandas: to_csv(float_format='%d'))" \
            if value and _FLOATY_INT.match(value.strip()) else ""
        raise BrodenError(f"{where}: expected a non-negative integer, got {value!r}{fix}")
    return int(value)


def _label_names(path: Path) -> tuple[str, ...]:
    rows = list(_read_csv(path, ("number", "name")))
    numbers = [_integer(r["number"], f"{path} row {i + 2} (number)") for i, r in enumerate(rows)]
    if len(set(numbers)) != len(numbers) or 0 in numbers:
        raise BrodenError(f"{path}: label numbers must be unique and >= 1 (0 is reserved for 'unlabelled'); "
                          "renumber the duplicated or zero rows")
    names = [""] * (max(numbers, default=0) + 1)
    for number, row in zip(numbers, rows, strict=True):
        names[number] = row["name"]
    return tuple(names)


def _primary_categories(root: Path, selected: tuple[str, ...], num_labels: int) -> np.ndarray:
    """Index of each label's primary category: largest coverage over ``c_<cat>.csv``; ties -> later."""
    best = np.full(num_labels, -np.inf)
    category = np.full(num_labels, -1, dtype=np.int64)
    for index, name in enumerate(selected):
        path = root / f"c_{name}.csv"
        for i, row in enumerate(_read_csv(path, ("number", "coverage"))):
            where = f"{path} row {i + 2}"
            number = _integer(row["number"], f"{where} (number)")
            if number >= num_labels:
                raise BrodenError(f"{where}: label {number} is not in label.csv (max {num_labels - 1}); "
                                  "add it to label.csv or remove the row")
            try:
                coverage = float(row["coverage"])
            except (TypeError, ValueError):
                coverage = np.nan
            if not np.isfinite(coverage):
                raise BrodenError(f"{where}: coverage {row['coverage']!r} is not a finite number; write a decimal "
                                  "such as 0.5 (it decides the label's primary category)")
            if coverage >= best[number]:
                best[number], category[number] = coverage, index
    return category


def _index_rows(path: Path, selected: tuple[str, ...], num_labels: int) -> tuple[BrodenRow, ...]:
    """The rows with data in a selected category (label 0 alone is no data, as in Lite)."""
    rows = []
    for i, raw in enumerate(_read_csv(path, ("image", "sh", "sw", *selected))):
        where = f"{path} row {i + 2}"
        pngs: list[str] = []
        scalars: list[int] = []
        for category in selected:
            for item in filter(None, (raw[category] or "").split(";")):
                if _INT.match(item):
                    scalars.append(_label(int(item), num_labels, f"{where} ({category})"))
                elif _FLOATY_INT.match(item):
                    raise BrodenError(f"{where} ({category}): {item!r} looks like a float; write label numbers "
                                      "as plain integers (pandas: to_csv(float_format='%d'))")
                else:
                    pngs.append(item)
        scalars = [s for s in scalars if s > 0]  # image-level 0 = unlabelled (Lite keeps it: pitfall P-C4)
        if pngs or scalars:
            sh, sw = (_integer(raw[k], f"{where} ({k})") for k in ("sh", "sw"))
            ih, iw = (_integer(raw[k], f"{where} ({k})") if raw.get(k) is not None else 0 for k in ("ih", "iw"))
            rows.append(BrodenRow(raw["image"], sh, sw, tuple(pngs), tuple(scalars), line=i + 2, ih=ih, iw=iw))
    if not rows:
        raise BrodenError(f"{path}: no image carries a label of the selected categories {list(selected)}; "
                          "check dissection.categories and the category columns")
    return tuple(rows)


def _label(label: int, num_labels: int, where: str) -> int:
    if label >= num_labels:
        raise BrodenError(f"{where}: label {label} >= number of labels {num_labels} (label.csv goes up to "
                          f"{num_labels - 1}); add the label to label.csv or fix the row")
    return label


def read_image(path: Path, size: tuple[int, int], where: str = "index.csv") -> Image.Image:
    """Decode one probe image as RGB (grayscale and palette images become 3 channels).

    Args:
        path: the image file.
        size: ``(ih, iw)`` from index.csv; ``(0, 0)`` when index.csv has no ih/iw (not checked).
        where: the index.csv row that lists the image, for error messages.

    Returns:
        The decoded RGB image.

    Raises:
        BrodenError: missing or undecodable file, or a size other than ``size``.
    """
    if not path.is_file():
        raise BrodenError(f"{path}: image not found ({where}); restore it or remove the row")
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")  # decodes the whole file: a truncated one fails here
    except (OSError, ValueError) as err:  # PIL: unidentified, truncated or corrupt file
        raise BrodenError(f"{path} ({where}): not a decodable image ({err}); restore the file or remove the row") from None
    if size != (0, 0) and (rgb.height, rgb.width) != size:
        raise BrodenError(f"{path} ({where}): size {(rgb.height, rgb.width)} differs from ih, iw = {size} in "
                          "index.csv; resize the image or fix ih, iw")
    return rgb


def read_segmentation(path: Path, shape: tuple[int, int], num_labels: int, where: str = "index.csv") -> np.ndarray:
    """Decode one Broden segmentation PNG to labels ``R + 256 * G`` (B and alpha are ignored).

    Args:
        path: the PNG.
        shape: ``(sh, sw)`` from index.csv.
        num_labels: ``L + 1``.
        where: the index.csv row that lists the PNG, for error messages.

    Returns:
        int64 array ``(sh, sw)``.

    Raises:
        BrodenError: missing or undecodable file, a grayscale or palette image, wrong size, or a
            label >= ``num_labels``.
    """
    if not path.is_file():
        raise BrodenError(f"{path}: segmentation file not found (listed in {where}); restore it or fix the row")
    try:
        with Image.open(path) as img:
            mode = img.mode
            rgb = np.asarray(img)
    except (OSError, ValueError) as err:  # PIL: unidentified, truncated or corrupt file
        raise BrodenError(f"{path} ({where}): not a decodable PNG ({err}); restore the file or fix the row") from None
    if mode == "P":
        raise BrodenError(f"{path} ({where}): palette-mode PNG; Broden labels are RGB with label = R + 256*G, "
                          "not palette indices (as in PASCAL VOC masks); re-encode the labels as RGB")
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise BrodenError(f"{path} ({where}): expected an RGB PNG (label = R + 256*G), got an array of shape "
                          f"{rgb.shape} (mode {mode}); re-save it as RGB")
    if rgb.shape[:2] != shape:
        raise BrodenError(f"{path} ({where}): size {rgb.shape[:2]} differs from sh, sw = {shape} in index.csv; "
                          "fix sh, sw or resize the PNG (nearest neighbour)")
    labels = rgb[:, :, 0].astype(np.int64) + 256 * rgb[:, :, 1].astype(np.int64)
    if labels.max() >= num_labels:
        raise BrodenError(f"{path} ({where}): pixel label {int(labels.max())} >= number of labels {num_labels} "
                          "in label.csv; add the label to label.csv or fix the PNG")
    return labels


def _check_claimed(labels: np.ndarray, label_category: np.ndarray, names: tuple[str, ...],
                   selected: tuple[str, ...], where: str) -> None:
    """Refuse labels (> 0) that no selected ``c_<category>.csv`` lists: the tally would drop them silently.

    Raises:
        BrodenError: naming ``where``, the first such label and the fix.
    """
    used = np.unique(labels[labels > 0])
    unclaimed = used[label_category[used] < 0]
    if unclaimed.size:
        number = int(unclaimed[0])
        raise BrodenError(f"{where}: label {number} ({names[number]!r}) is in no c_<category>.csv of the selected "
                          f"categories {list(selected)}, so the tally would drop it; add it to the c_ file of its "
                          "category, or select that category in dissection.categories")


class BrodenDataset(Dataset):
    """Probe images with their label planes, as tensors.

    Item ``i`` is ``(image, planes, scalars)``: the transformed image (e.g. float ``(3, ih, iw)``),
    int64 ``planes (P_i, sh, sw)`` (one per PNG, all categories stacked) and int64
    ``scalars (S_i,)`` (image-level labels). With ``segmentation=False`` only the image is read
    and ``planes``/``scalars`` are empty; with ``images=False`` only the labels are read and the
    image is an empty tensor.
    """

    def __init__(self, broden: Broden, transform, segmentation: bool = True, images: bool = True) -> None:
        self.broden = broden
        self.transform = transform
        self.segmentation = segmentation
        self.images = images
        sizes = {(r.sh, r.sw) for r in broden.rows}
        if len(sizes) != 1:
            raise BrodenError(f"{broden.root / 'index.csv'}: segmentation sizes differ across rows {sorted(sizes)[:3]}; "
                              "batched dissection needs one size; dissect each size as its own probe set")
        image_sizes = {(r.ih, r.iw) for r in broden.rows}
        if len(image_sizes) != 1:
            raise BrodenError(f"{broden.root / 'index.csv'}: image sizes ih, iw differ across rows "
                              f"{sorted(image_sizes)[:3]}; batched dissection needs one size; resize the images")

    def __len__(self) -> int:
        return len(self.broden.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        row = self.broden.rows[i]
        images = self.broden.root / "images"
        path = images / row.image
        where = f"index.csv row {row.line}"
        image = torch.zeros(0)
        if self.images:
            image = self.transform(read_image(path, (row.ih, row.iw), where))
        if not self.segmentation:
            return image, torch.zeros(0, 0, 0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
        planes = [read_segmentation(images / p, (row.sh, row.sw), self.broden.num_labels, where) for p in row.pngs]
        stacked = np.stack(planes) if planes else np.zeros((0, row.sh, row.sw), dtype=np.int64)
        for name, plane in zip(row.pngs, planes, strict=True):
            _check_claimed(plane, self.broden.label_category, self.broden.label_names, self.broden.categories,
                           f"{images / name} ({where})")
        return image, torch.from_numpy(stacked), torch.tensor(row.scalars, dtype=torch.int64)


def unreadable_rows(broden: Broden) -> Iterator[tuple[BrodenRow, str]]:
    """Read every row as dissection does (image, segmentations, labels); yield each row that fails, with why.

    Decodes every image and PNG (the default probe set: measured in the closing note of issue 16),
    so a probe set without such rows is one that :class:`BrodenDataset` reads completely. The
    check is the reader itself, not a second description of the format.

    Yields:
        ``(row, message)`` per failing row; ``message`` is the :class:`BrodenError` text.
    """
    dataset = BrodenDataset(broden, transform=_decoded_only)
    for i, row in enumerate(broden.rows):
        try:
            dataset[i]
        except BrodenError as err:
            yield row, str(err)


def _decoded_only(image: Image.Image) -> torch.Tensor:
    """A transform that keeps nothing (the image was decoded to be checked)."""
    return torch.zeros(0)


def collate_broden(batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack a batch, padding planes and scalars with label 0 (unlabelled).

    Returns:
        ``images (B, 3, H, W)``, ``planes (B, P_max, sh, sw)`` int64, ``scalars (B, S_max)`` int64.
    """
    images = torch.stack([b[0] for b in batch])
    p_max = max(b[1].shape[0] for b in batch)
    s_max = max(b[2].shape[0] for b in batch)
    size = batch[0][1].shape[1:]  # (sh, sw), even when no image of the batch has a label plane
    planes = torch.zeros((len(batch), p_max, *size), dtype=torch.int64)
    scalars = torch.zeros((len(batch), s_max), dtype=torch.int64)
    for i, (_, p, s) in enumerate(batch):
        planes[i, : p.shape[0]] = p
        scalars[i, : s.shape[0]] = s
    return images, planes, scalars
