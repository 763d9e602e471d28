"""The one reader of a Broden-layout probe set's tables, shared by ``dissect`` and ``validate-data``.

:func:`kdinterp.dissection.broden.load_broden` (``dissect``, ``report``) raises the first problem
these rules find; :func:`kdinterp.validation.probe.validate_broden` (``validate-data``) reports all of
them with Great Expectations, one helper column per :class:`Rule`. Both read the files with
:func:`read_table` and judge them with the same rules, so whatever one accepts, the other accepts.

The format (``research/dissection.md`` §2, NetDissect-Lite ``loader/data_loader.py``):

* Text: UTF-8 without a byte-order mark. Lite's ``csv.DictReader`` would read a BOM as part of the
  first column's name, so a BOM (UTF-8, UTF-16 or UTF-32) is refused as such, as is any other
  encoding; every row has as many fields as the header.
* Integers: plain decimal digits (:data:`INTEGER`; ``83.0`` is a float, ``-1`` is no label).
* Floats (``coverage``): a finite non-negative decimal in any form Python's ``csv`` writes one,
  exponent included (:data:`DECIMAL`: ``0.5``, ``.5``, ``5e-1``, ``1e-05``); ``nan``, ``inf`` and
  signs are refused. (Lite's decoder keeps an exponent form as a string and crashes in ``max``; the
  Broden writer writes ``str(float)``, which uses exponents below 1e-4.)
* ``category.csv``: ``name`` filled and unique; every selected category listed.
* ``label.csv``: ``number`` (>= 1, unique), ``name`` (unique), ``category`` (a ``;``-list of
  ``cat(count)`` items naming categories of ``category.csv``), ``frequency`` (integer) and
  ``coverage`` (decimal), all filled.
* ``c_<category>.csv``: ``number`` (a label of ``label.csv``, listed once) and ``coverage``.
* ``index.csv``: ``image`` filled and unique (a duplicated row would be counted twice), ``sh, sw``
  (and ``ih, iw`` when present) positive integers, ``split`` (when present) ``train`` or ``val``.
  A category field is empty or a ``;``-list of items: an integer is an image-level label, several
  of them are ``4;7`` (Broden's scene and texture fields hold several); any other item is a PNG
  file name (``*.png``). An image-level label must be 0 (unlabelled) or a label that the column's
  own ``c_<category>.csv`` lists (a texture label in the scene column is refused). Some row carries
  data, and at least :func:`minimum_probe_images` rows do (the threshold quantile needs them).

Every problem is one line naming the file, the row (its line in the file; the header is line 1)
and the column where there is one, and the fix; the reader raises it as a :class:`BrodenError`.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kdinterp.core.errors import KdinterpError

__all__ = ["DECIMAL", "INTEGER", "PNG", "POSITIVE", "BrodenError", "Rule", "Table", "category_rules", "c_rules",
           "first_problem", "index_rules", "item_kind", "label_problem", "label_rules", "minimum_probe_images", "read_table",
           "split_items"]

#: A plain non-negative integer, as Lite decodes one (``^\d+$``).
INTEGER = r"^\d+$"
#: A plain integer >= 1.
POSITIVE = r"^[1-9]\d*$"
#: A finite non-negative decimal: ``0.5``, ``.5``, ``5.``, ``5e-1``, ``1E+2`` (no sign, nan or inf).
DECIMAL = r"^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
#: A segmentation file name.
PNG = r"^.+\.[Pp][Nn][Gg]$"
_CATEGORY_FIELD = re.compile(r"^[^();]+\(\d+\)(?:;[^();]+\(\d+\))*$")
_FLOATY_INT = re.compile(r"^\d+\.\d*$")
_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF8, "UTF-8"),
         (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


class BrodenError(KdinterpError, ValueError):
    """A Broden-layout file is missing or malformed; the message names the file, row and fix."""


@dataclass(frozen=True)
class Table:
    """A CSV table as text: ``rows[i]`` maps each header column to its cell ('' when empty).

    ``lines[i]`` is row i's line in the file (the header is line 1), for messages.
    """

    path: Path
    header: tuple[str, ...]
    rows: tuple[dict[str, str], ...]
    lines: tuple[int, ...]

    def column(self, name: str) -> list[str]:
        """The cells of column ``name`` ('' where the header lacks it)."""
        return [row.get(name, "") for row in self.rows]


@dataclass(frozen=True)
class Rule:
    """One check of a table: its wording and, per row, the one-line problem (None where the row passes).

    A table-level rule (``rows=False``) has one entry. ``name`` is the helper column that
    ``validate-data`` reports it under.
    """

    name: str
    description: str
    problems: tuple[str | None, ...]
    rows: bool = True


def first_problem(rules: Sequence[Rule]) -> None:
    """Raise the first problem of ``rules`` (in order) as a :class:`BrodenError`; return when there is none."""
    for rule in rules:
        problem = next((p for p in rule.problems if p is not None), None)
        if problem is not None:
            raise BrodenError(problem)


def read_table(path: Path, required: Sequence[str] = ()) -> Table:
    """Read a probe-set CSV file as text, after checking its encoding, shape and ``required`` columns.

    Raises:
        BrodenError: the file is missing, has a byte-order mark, is not UTF-8, is not a CSV table
            (a row with more or fewer fields than the header), or lacks a required column.
    """
    path = Path(path)
    if not path.is_file():
        raise BrodenError(f"{path}: file not found; is dissection.broden_dir a Broden-layout directory?")
    data = path.read_bytes()
    for bom, codec in _BOMS:
        if data.startswith(bom):
            fix = "re-save it as UTF-8 without a BOM (Excel: 'CSV', not 'CSV UTF-8')" if codec == "UTF-8" \
                else "re-save it as UTF-8"
            raise BrodenError(f"{path}: starts with a {codec} byte-order mark (BOM); Broden's CSV files are UTF-8 "
                              f"without one; {fix}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BrodenError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}; latin-1 or UTF-16 without a "
                          "BOM?); re-save it as UTF-8, the encoding of Broden's CSV files") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = tuple(next(reader, ()))
        records = [(reader.line_num, record) for record in reader if record]
    except csv.Error as err:
        raise BrodenError(f"{path} line {reader.line_num}: not a CSV table ({err}); re-save it as a CSV file") from None
    if not header:
        raise BrodenError(f"{path}: empty file, no header; write the header and rows of a Broden table")
    missing = [c for c in required if c not in header]
    if missing:
        raise BrodenError(f"{path}: missing column(s) {missing} (header: {list(header)}); add them (an empty field "
                          "is allowed) or fix dissection.categories")
    if len(set(header)) != len(header):
        raise BrodenError(f"{path}: the header names a column twice ({list(header)}); rename or drop the copy")
    for line, record in records:
        if len(record) != len(header):
            raise BrodenError(f"{path} row {line}: {len(record)} fields, the header has {len(header)}; quote fields "
                              "that hold a comma, or fix the row")
    return Table(path, header, tuple(dict(zip(header, r, strict=True)) for _, r in records),
                 tuple(line for line, _ in records))


def _where(table: Table, i: int, column: str) -> str:
    return f"{table.path} row {table.lines[i]} ({column})"


def _format(table: Table, column: str, pattern: str, what: str, fix: str = "", optional: bool = False) -> Rule:
    """Every cell of ``column`` matches ``pattern`` (empty cells too, unless ``optional``)."""
    regex = re.compile(pattern)
    problems = []
    for i, value in enumerate(table.column(column)):
        bad = not (optional and value == "") and not regex.match(value)
        floaty = fix or ("; write integers without a decimal point (pandas: to_csv(float_format='%d'))"
                         if _FLOATY_INT.match(value) else "")
        problems.append(f"{_where(table, i, column)}: expected {what}, got {value!r}{floaty}" if bad else None)
    return Rule(f"_{column}_format", f"{column} is {what}", tuple(problems))


def _unique(table: Table, column: str, what: str, fix: str) -> Rule:
    """No non-empty value of ``column`` twice; the later row names the earlier one."""
    seen: dict[str, int] = {}
    problems = []
    for i, value in enumerate(table.column(column)):
        first = seen.setdefault(value, table.lines[i]) if value else table.lines[i]
        problems.append(None if first == table.lines[i] else
                        f"{_where(table, i, column)}: {value!r} is already on row {first}; {fix}")
    return Rule(f"_{column}_unique", what, tuple(problems))


def _table_rule(name: str, description: str, problem: str | None) -> Rule:
    return Rule(name, description, (problem,), rows=False)


def category_rules(table: Table, selected: Sequence[str]) -> tuple[tuple[str, ...], list[Rule]]:
    """``category.csv``: the selected categories in file order, and its rules."""
    known = [n for n in table.column("name") if n]
    unknown = [c for c in selected if c not in known]
    problem = None if not unknown else (
        f"{table.path}: no categor{'y' if len(unknown) == 1 else 'ies'} {unknown}; it lists {known}; fix "
        "dissection.categories in params.yaml")
    rules = [_format(table, "name", r"^.+$", "a category name"),
             _unique(table, "name", "category names are unique", "drop the duplicated row"),
             _table_rule("_listed", "every selected category (dissection.categories) is listed", problem)]
    return tuple(dict.fromkeys(c for c in known if c in selected)), rules


def label_rules(table: Table, categories: Sequence[str]) -> tuple[tuple[str, ...], list[Rule]]:
    """``label.csv``: names by label number (``''`` for 0 and gaps), and its rules."""
    numbers = [int(n) if re.match(POSITIVE, n) else 0 for n in table.column("number")]
    names = [""] * (max(numbers, default=0) + 1)
    for number, name in zip(numbers, table.column("name"), strict=True):
        names[number] = name if number else names[number]
    known = set(categories)
    unknown = []
    for i, field in enumerate(table.column("category")):
        items = [m.group(1) for m in re.finditer(r"(?:^|;)([^();]+)\(", field)] if _CATEGORY_FIELD.match(field) else []
        bad = [c for c in items if c not in known]
        unknown.append(f"{_where(table, i, 'category')}: category {bad[0]!r} is not in category.csv; fix the field or "
                       "add the category" if bad else None)
    rules = [
        _format(table, "number", POSITIVE, "a plain integer >= 1 (0 is reserved for 'unlabelled')"),
        _unique(table, "number", "label numbers are unique", "renumber the duplicated row"),
        _format(table, "name", r"^.+$", "a label name"),
        _unique(table, "name", "label names are unique", "rename the duplicated label"),
        _format(table, "category", _CATEGORY_FIELD.pattern, "a ;-list of cat(count) items, e.g. object(3)"),
        Rule("_category_known", "every category named in it is listed in category.csv", tuple(unknown)),
        _format(table, "frequency", INTEGER, "a plain integer"),
        _format(table, "coverage", DECIMAL, "a finite non-negative decimal (0.5 or 5e-1)"),
    ]
    return tuple(names), rules


def c_rules(table: Table, num_labels: int) -> tuple[dict[int, float], list[Rule]]:
    """``c_<category>.csv``: coverage by label number, and its rules (numbers must be < ``num_labels``)."""
    coverage = {}
    missing = []
    for i, (number, value) in enumerate(zip(table.column("number"), table.column("coverage"), strict=True)):
        label = int(number) if re.match(INTEGER, number) else None
        if label is not None and re.match(DECIMAL, value):
            coverage.setdefault(label, float(value))
        missing.append(None if label is None or 0 < label < num_labels else
                       f"{_where(table, i, 'number')}: label {label} is not in label.csv (1..{num_labels - 1}); add it "
                       "to label.csv or remove the row")
    rules = [_format(table, "number", INTEGER, "a label number"),
             Rule("_number_known", "every number is a label number of label.csv", tuple(missing)),
             _unique(table, "number", "each label is listed once", "drop the duplicated row"),
             _format(table, "coverage", DECIMAL, "a finite non-negative decimal (0.5 or 5e-1)",
                     fix="; it decides the label's primary category")]
    return coverage, rules


def split_items(field: str) -> list[str]:
    """The ``;``-items of a category field (empty items dropped, as in Lite)."""
    return [item for item in field.split(";") if item]


def item_kind(item: str) -> str:
    """``label`` (an image-level label number), ``png`` (a segmentation file) or ``bad``."""
    return "label" if re.match(INTEGER, item) else "png" if re.match(PNG, item) else "bad"


def _item_problem(item: str, column: str, members: set[int], num_labels: int, where: str) -> str | None:
    kind = item_kind(item)
    if kind == "png":
        return None
    if kind == "bad":
        if _FLOATY_INT.match(item):
            return (f"{where}: {item!r} looks like a float; write label numbers as plain integers (pandas: "
                    "to_csv(float_format='%d'))")
        if re.match(r"^-\d+$", item):
            hint = "label numbers are non-negative (0: unlabelled)"
        elif re.match(r"^\d+(?:[\s,|]+\d+)+$", item):
            hint = "separate several labels with ';' (e.g. 4;7)"
        else:
            hint = "write a label number or a .png file name"
        return f"{where}: {item!r} is neither a label number nor a PNG file name; {hint}"
    return label_problem(int(item), column, members, num_labels, where)


def label_problem(label: int, column: str, members: set[int] | frozenset[int], num_labels: int,
                  where: str) -> str | None:
    """The problem of label ``label`` found in category column ``column`` (an image-level label or a
    pixel of one of its PNGs), or None: it must be 0 (unlabelled) or listed in ``c_<column>.csv``
    (``members``), and below ``num_labels``."""
    if label >= num_labels:
        return (f"{where}: label {label} >= number of labels {num_labels} (label.csv goes up to {num_labels - 1}); add "
                "the label to label.csv or fix the row")
    if label and label not in members:
        return (f"{where}: label {label} is not a {column} label (c_{column}.csv does not list it); move it to its "
                f"category's column or add it to c_{column}.csv")
    return None


def minimum_probe_images(quantile: float, batch_size: int | None = None) -> int:
    """The fewest probe images (rows with data) that ``dissect`` can work on: 2, or ``batch_size + 1``.

    Each unit's threshold interpolates between two of its activations at level ``1 - quantile``
    (:mod:`~kdinterp.dissection.thresholds`), so every unit needs two; a layer gives at least one
    per image (a 1x1 map), so two images are always enough, at any quantile in [0, 1). With
    ``batch_size`` (``dissection.batch_size``), the probe bootstrap of the detector count, which
    ``dissect`` always runs, resamples blocks of whole batches
    (:func:`kdinterp.dissection.sensitivity.probe_bootstrap`) and needs two: one image more than a batch.
    """
    del quantile  # the same for every level; kept so that the rule reads with the key it serves
    return 2 if batch_size is None else max(2, batch_size + 1)


def index_rules(table: Table, selected: Sequence[str], num_labels: int, members: dict[str, set[int]],
                quantile: float | None = None, one_size: bool = True,
                batch_size: int | None = None) -> tuple[list[int], list[Rule]]:
    """``index.csv``: the positions of rows that carry data (label 0 alone is none), and its rules.

    ``members[c]`` are the labels of ``c_<c>.csv``; ``quantile`` (``dissection.quantile``, None to
    skip) and ``batch_size`` (``dissection.batch_size``, None for a reader that does not bootstrap) set
    :func:`minimum_probe_images`. ``one_size``: ask one image size of the rows with data (the
    dissection batches them; ``dissect`` and ``validate-data`` both ask it); False for a reader that only
    shows images (the HTML report).
    """
    items: list[str | None] = []
    data = []
    for i, row in enumerate(table.rows):
        problem, carries = None, False
        for column in selected:
            for item in split_items(row[column]):
                problem = problem or _item_problem(item, column, members.get(column, set()), num_labels,
                                                   _where(table, i, column))
                carries = carries or item_kind(item) == "png" or (item_kind(item) == "label" and int(item) > 0)
        items.append(problem)
        if carries:
            data.append(i)
    sizes = [_format(table, c, POSITIVE, "a positive integer") for c in ("sh", "sw") + tuple(
        c for c in ("ih", "iw") if c in table.header)]
    splits = [_format(table, "split", "^(?:train|val)$", "train or val")] if "split" in table.header else []
    empty = None if data else (f"{table.path}: no image carries a label of the selected categories {list(selected)}; "
                               "check dissection.categories and the category columns")
    shapes = {k: sorted({(table.rows[i][k[0]], table.rows[i][k[1]]) for i in data}) for k in (("sh", "sw"), ("ih", "iw"))
              if k[0] in table.header}
    mixed = next((f"{table.path}: {k[0]}, {k[1]} differ across rows with data {v[:3]}; batched dissection needs one "
                  "size; resize the images and segmentations, or dissect each size as its own probe set"
                  for k, v in shapes.items() if len(v) > 1 and one_size), None)
    small = None
    if data and quantile is not None and len(data) < minimum_probe_images(quantile):
        small = (f"{table.path}: {len(data)} probe image carries labels; dissection.quantile {quantile:g} sets each "
                 f"unit's threshold between two of its activations, which needs at least "
                 f"{minimum_probe_images(quantile)} images; add probe images (data.probe_images for the concept world)")
    elif data and quantile is not None and len(data) < minimum_probe_images(quantile, batch_size):
        small = (f"{table.path}: {len(data)} probe images carry labels; the probe bootstrap resamples batches of "
                 f"dissection.batch_size {batch_size} images and needs two, so at least "
                 f"{minimum_probe_images(quantile, batch_size)} images; add probe images or lower dissection.batch_size")
    rules = [
        _format(table, "image", r"^.+$", "an image file name"),
        _unique(table, "image", "every image is listed once", "drop the duplicated row (it would be counted twice)"),
        *sizes, *splits,
        Rule("_items", "each ;-item of a category field is a label of the column's category or a PNG file name",
             tuple(items)),
        _table_rule("_one_size", "one sh, sw (and ih, iw) for every image with data (the reader batches them)", mixed),
        _table_rule("_data", "some row carries a label of a selected category", empty),
        _table_rule("_probe_size", "enough probe images for the threshold quantile", small),
    ]
    return data, rules

