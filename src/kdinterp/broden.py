"""Reader for probe sets in the Broden layout (``broden1_224`` and the concept world's probe set).

Format (``research/dissection.md`` §2; NetDissect-Lite ``loader/data_loader.py``):

* ``category.csv``: category names; the file order is the category order.
* ``label.csv``: ``number,name,...``, global label numbers 1..L (gaps allowed; 0 = unlabelled).
* ``c_<category>.csv``: ``code,number,name,frequency,coverage``; a label's *primary* category is
  the selected category where its ``coverage`` is largest (ties: the later category, as Lite).
* ``index.csv``: one row per image with ``image,sh,sw`` and one column per category. A category
  field is empty or a ``;``-list of items: an integer is an image-level label (scene, texture), any
  other item is an RGB PNG (relative to ``images/``) whose pixels hold label ``R + 256 * G``.

Label 0 policy: 0 means "unlabelled" for pixels *and* for image-level labels (NetDissect-Lite keeps
image-level 0, which gives Broden's phantom label ``''``, pitfall P-C4; we drop it).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

__all__ = ["Broden", "BrodenDataset", "BrodenError", "collate_broden", "load_broden"]

_INT = re.compile(r"^\d+$")
_FLOATY_INT = re.compile(r"^\d+\.\d*$")


class BrodenError(ValueError):
    """A Broden-layout file is missing or malformed; the message names the file, row and fix."""


@dataclass(frozen=True)
class BrodenRow:
    """One probe image: its path, segmentation size, pixel-label PNGs and image-level labels."""

    image: str
    sh: int
    sw: int
    pngs: tuple[str, ...]
    scalars: tuple[int, ...]


@dataclass(frozen=True)
class Broden:
    """A parsed probe set.

    Attributes:
        root: the data set directory.
        categories: the selected categories, in ``category.csv`` order.
        label_names: ``(L + 1,)`` names by label number; index 0 is ``''``.
        label_category: ``(L + 1,)`` int64 index into ``categories`` of each label's primary
            category; -1 for label 0 and for labels in no selected category (they are ignored).
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
        BrodenError: a file or column is missing, a number is malformed (``83.0`` for an integer,
            non-numeric coverage), a label number is out of range, or a category is unknown.
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
    return Broden(root, selected, names, label_category, rows)


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise BrodenError(f"{path}: file not found; is dissection.broden_dir a Broden-layout directory?")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise BrodenError(f"{path}: missing column(s) {missing} (header: {reader.fieldnames})")
        return list(reader)


def _integer(value: str, where: str) -> int:
    if not _INT.match(value.strip()):
        raise BrodenError(f"{where}: expected a non-negative integer, got {value!r}")
    return int(value)


def _label_names(path: Path) -> tuple[str, ...]:
    rows = _read_csv(path, ("number", "name"))
    numbers = [_integer(r["number"], f"{path} row {i + 2} (number)") for i, r in enumerate(rows)]
    if len(set(numbers)) != len(numbers) or 0 in numbers:
        raise BrodenError(f"{path}: label numbers must be unique and >= 1")
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
                raise BrodenError(f"{where}: label {number} is not in label.csv (max {num_labels - 1})")
            try:
                coverage = float(row["coverage"])
            except ValueError:
                raise BrodenError(f"{where}: coverage {row['coverage']!r} is not a number") from None
            if coverage >= best[number]:
                best[number], category[number] = coverage, index
    return category


def _index_rows(path: Path, selected: tuple[str, ...], num_labels: int) -> tuple[BrodenRow, ...]:
    rows = []
    for i, raw in enumerate(_read_csv(path, ("image", "sh", "sw", *selected))):
        where = f"{path} row {i + 2}"
        pngs: list[str] = []
        scalars: list[int] = []
        for category in selected:
            for item in filter(None, (raw[category] or "").split(";")):
                if _INT.match(item):
                    label = int(item)
                    if label >= num_labels:
                        raise BrodenError(f"{where} ({category}): label {label} >= number of labels {num_labels}")
                    if label > 0:
                        scalars.append(label)
                elif _FLOATY_INT.match(item):
                    raise BrodenError(f"{where} ({category}): {item!r} looks like a float; write label numbers "
                                      "as plain integers (pandas: to_csv(float_format='%d'))")
                else:
                    pngs.append(item)
        if pngs or scalars:
            sh, sw = (_integer(raw[k], f"{where} ({k})") for k in ("sh", "sw"))
            rows.append(BrodenRow(raw["image"], sh, sw, tuple(pngs), tuple(scalars)))
    if not rows:
        raise BrodenError(f"{path}: no image carries a label of the selected categories {list(selected)}")
    return tuple(rows)


def read_segmentation(path: Path, shape: tuple[int, int], num_labels: int) -> np.ndarray:
    """Decode one Broden segmentation PNG to labels ``R + 256 * G``.

    Returns:
        int64 array ``(sh, sw)``.

    Raises:
        BrodenError: missing file, not a 3-channel image, wrong size, or a label >= ``num_labels``.
    """
    if not path.is_file():
        raise BrodenError(f"{path}: segmentation file not found (listed in index.csv)")
    with Image.open(path) as img:
        rgb = np.asarray(img)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise BrodenError(f"{path}: expected an RGB PNG (label = R + 256*G), got an array of shape {rgb.shape} "
                          f"(mode {img.mode}); re-save it as RGB")
    if rgb.shape[:2] != shape:
        raise BrodenError(f"{path}: size {rgb.shape[:2]} differs from sh, sw = {shape} in index.csv")
    labels = rgb[:, :, 0].astype(np.int64) + 256 * rgb[:, :, 1].astype(np.int64)
    if labels.max() >= num_labels:
        raise BrodenError(f"{path}: pixel label {int(labels.max())} >= number of labels {num_labels} in label.csv")
    return labels


class BrodenDataset(Dataset):
    """Probe images with their label planes, as tensors.

    Item ``i`` is ``(image, planes, scalars)``: the transformed image (e.g. float ``(3, ih, iw)``),
    int64 ``planes (P_i, sh, sw)`` (one per PNG, all categories stacked) and int64
    ``scalars (S_i,)`` (image-level labels). With ``segmentation=False`` only the image is read
    and ``planes``/``scalars`` are empty.
    """

    def __init__(self, broden: Broden, transform, segmentation: bool = True) -> None:
        self.broden = broden
        self.transform = transform
        self.segmentation = segmentation
        sizes = {(r.sh, r.sw) for r in broden.rows}
        if len(sizes) != 1:
            raise BrodenError(f"{broden.root / 'index.csv'}: segmentation sizes differ across rows {sorted(sizes)[:3]}; "
                              "batched dissection needs one size")

    def __len__(self) -> int:
        return len(self.broden.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        row = self.broden.rows[i]
        images = self.broden.root / "images"
        path = images / row.image
        if not path.is_file():
            raise BrodenError(f"{path}: image not found (index.csv row {i + 2})")
        with Image.open(path) as img:
            image = self.transform(img.convert("RGB"))
        if not self.segmentation:
            return image, torch.zeros(0, 0, 0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
        planes = [read_segmentation(images / p, (row.sh, row.sw), self.broden.num_labels) for p in row.pngs]
        stacked = np.stack(planes) if planes else np.zeros((0, row.sh, row.sw), dtype=np.int64)
        return image, torch.from_numpy(stacked), torch.tensor(row.scalars, dtype=torch.int64)


def collate_broden(batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack a batch, padding planes and scalars with label 0 (unlabelled).

    Returns:
        ``images (B, 3, H, W)``, ``planes (B, P_max, sh, sw)`` int64, ``scalars (B, S_max)`` int64.
    """
    images = torch.stack([b[0] for b in batch])
    p_max = max(b[1].shape[0] for b in batch)
    s_max = max(b[2].shape[0] for b in batch)
    size = next((b[1].shape[1:] for b in batch if b[1].shape[0]), (0, 0))
    planes = torch.zeros((len(batch), p_max, *size), dtype=torch.int64)
    scalars = torch.zeros((len(batch), s_max), dtype=torch.int64)
    for i, (_, p, s) in enumerate(batch):
        planes[i, : p.shape[0]] = p
        scalars[i, : s.shape[0]] = s
    return images, planes, scalars
