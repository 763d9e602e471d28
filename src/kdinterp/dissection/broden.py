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

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from kdinterp.dissection import probe_format as fmt
from kdinterp.dissection.probe_format import BrodenError

__all__ = ["Broden", "BrodenDataset", "BrodenError", "collate_broden", "load_broden", "read_image", "read_segmentation",
           "unreadable_rows"]



@dataclass(frozen=True, slots=True)
class BrodenRow:
    """One probe image: its path, segmentation size, pixel-label PNGs and image-level labels.

    ``line`` is the row's line number in ``index.csv`` (the header is line 1), for error messages;
    ``ih, iw`` the image size the row declares (0 when index.csv has no ih/iw columns);
    ``png_categories`` the category column of each PNG.
    """

    image: str
    sh: int
    sw: int
    pngs: tuple[str, ...]
    scalars: tuple[int, ...]
    line: int = 0
    ih: int = 0
    iw: int = 0
    png_categories: tuple[str, ...] = ()


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
        members: per category, the labels its ``c_<category>.csv`` lists (a label in a category
            column, image-level or a pixel of its PNG, must be one of them).
    """

    root: Path
    categories: tuple[str, ...]
    label_names: tuple[str, ...]
    label_category: np.ndarray
    rows: tuple[BrodenRow, ...]
    members: tuple[frozenset[int], ...] = ()

    @property
    def num_labels(self) -> int:
        """``L + 1``: label numbers run from 0 (unlabelled) to L."""
        return len(self.label_names)


def load_broden(root: str | Path, categories: tuple[str, ...], quantile: float | None = None,
                one_size: bool = True, batch_size: int | None = None) -> Broden:
    """Parse ``category.csv``, ``label.csv``, ``c_<category>.csv`` and ``index.csv`` under ``root``.

    The tables are read and judged by :mod:`kdinterp.dissection.probe_format`, the rules that
    ``validate-data`` reports too; the first problem is raised.

    Args:
        root: the probe set directory (e.g. ``data/broden1_224``).
        categories: categories to use (any order; the file order is kept).
        quantile: ``dissection.quantile``; when given, the probe set must hold
            :func:`~kdinterp.dissection.probe_format.minimum_probe_images` images with data.
        one_size: refuse images with data of different sizes (the dissection batches them); False for
            a reader that only shows the images (the HTML report).
        batch_size: ``dissection.batch_size`` for the dissection's readers: with ``quantile``, the probe
            bootstrap's minimum (:func:`~kdinterp.dissection.probe_format.minimum_probe_images`) applies too.

    Returns:
        The parsed :class:`Broden`. Image and PNG files are opened only when read.

    Raises:
        BrodenError: a file, column or image is missing, a file has a BOM or is not UTF-8, a cell
            is malformed, an image is listed twice, a label is out of range or not of its column's
            category, a category is unknown, or too few images carry data for the quantile.
    """
    root = Path(root)
    selected, rules = fmt.category_rules(fmt.read_table(root / "category.csv", ("name",)), categories)
    fmt.first_problem(rules)
    names, rules = fmt.label_rules(fmt.read_table(root / "label.csv", _LABEL_COLUMNS), _category_names(root))
    fmt.first_problem(rules)
    coverage = {}
    for name in selected:
        coverage[name], rules = fmt.c_rules(fmt.read_table(root / f"c_{name}.csv", ("number", "coverage")), len(names))
        fmt.first_problem(rules)
    index = fmt.read_table(root / "index.csv", ("image", "sh", "sw", *selected))
    data, rules = fmt.index_rules(index, selected, len(names), {c: set(v) for c, v in coverage.items()}, quantile,
                                   one_size, batch_size)
    fmt.first_problem(rules)
    rows = tuple(_row(index, i, selected, root / "images") for i in data)
    return Broden(root, selected, names, _primary_categories(coverage, selected, len(names)), rows,
                  tuple(frozenset(coverage[c]) for c in selected))


_LABEL_COLUMNS = ("number", "name", "category", "frequency", "coverage")


def _category_names(root: Path) -> list[str]:
    return [n for n in fmt.read_table(root / "category.csv", ("name",)).column("name") if n]


def _primary_categories(coverage: dict[str, dict[int, float]], selected: tuple[str, ...], num_labels: int) -> np.ndarray:
    """Index of each label's primary category: largest coverage over ``c_<cat>.csv``; ties -> later."""
    best = np.full(num_labels, -np.inf)
    category = np.full(num_labels, -1, dtype=np.int64)
    for index, name in enumerate(selected):
        for number, value in coverage[name].items():
            if value >= best[number]:
                best[number], category[number] = value, index
    return category


def _row(index: fmt.Table, i: int, selected: tuple[str, ...], images: Path) -> BrodenRow:
    """Row ``i`` of a checked ``index.csv`` (label 0 dropped: pitfall P-C4); its image must exist."""
    raw, line = index.rows[i], index.lines[i]
    if not (images / raw["image"]).is_file():
        raise BrodenError(f"{images / raw['image']}: image not found (index.csv row {line}); restore it or remove the row")
    pngs, png_categories, scalars = [], [], []
    for category in selected:
        for item in fmt.split_items(raw[category]):
            if fmt.item_kind(item) == "png":
                pngs.append(item)
                png_categories.append(category)
            elif int(item) > 0:
                scalars.append(int(item))
    ih, iw = (int(raw[k]) if k in raw else 0 for k in ("ih", "iw"))
    return BrodenRow(raw["image"], int(raw["sh"]), int(raw["sw"]), tuple(pngs), tuple(scalars), line=line, ih=ih,
                     iw=iw, png_categories=tuple(png_categories))


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


def _check_column(plane: np.ndarray, broden: Broden, category: str, where: str) -> None:
    """Refuse a pixel label that is not of the PNG's column category (:func:`~kdinterp.dissection.probe_format.label_problem`)."""
    members = broden.members[broden.categories.index(category)]
    for label in np.unique(plane[plane > 0]).tolist():
        problem = fmt.label_problem(label, category, members, broden.num_labels, where)
        if problem is not None:
            raise BrodenError(problem)


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
        for name, category, plane in zip(row.pngs, row.png_categories, planes, strict=True):
            _check_column(plane, self.broden, category, f"{images / name} ({where}, {category})")
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
