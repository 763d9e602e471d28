"""A labelled PNG contact sheet of a generated concept world, read back from its files.

Three sections, each with a title:

* **Classes**: one row per object type (labelled with the part and property its subtypes differ
  in); for each class its first training image and its saliency map (red: object region, yellow:
  discriminative region), captioned with the subtype.
* **Probe scenes**: column headers ``image, color, object, part, material``; one row per scene
  (labelled with its scene concept), the masks in false colours (colour names in their prototype
  colour, other labels in distinct hues), each mask captioned with the concepts it holds; then
  two close-ups (objects on a backdrop, no scene or material labels) the same way.
* **Texture tiles**: the first tiles of the probe set, captioned with their texture.
"""

from __future__ import annotations

import colorsys
import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from kdinterp.core.io import atomic_path, read_json
from kdinterp.world.broden_writer import decode_labels
from kdinterp.world.colors import PROTOTYPES

__all__ = ["write_preview"]

_MASKS = ("color", "object", "part", "material")
_WHITE = (255, 255, 255)
_INK = (30, 30, 30)
_GAP = 4  # pixels between tiles
_CLOSEUPS = 2  # close-ups shown after the probe scenes
_LABEL_WIDTH = 120  # the row-label column


class _Sheet:
    """Text rendering at one font size, and tile loading at one tile size."""

    def __init__(self, tile: int) -> None:
        self.tile = tile
        self.font = ImageFont.load_default(size=max(10, tile // 8))
        self.line = int(self.font.size * 1.35)

    def text(self, lines: list[str], width: int, height: int | None = None, *, center: bool = False,
             bold: bool = False) -> np.ndarray:
        """White block of ``width`` (and ``height``, default: the lines) with the lines drawn in it."""
        lines = [self._fit(line, width) for line in lines]
        block = Image.new("RGB", (width, height or self.line * len(lines) + 2), _WHITE)
        pen = ImageDraw.Draw(block)
        for k, line in enumerate(lines):
            x = (width - pen.textlength(line, font=self.font)) / 2 if center else 2
            pen.text((x, 1 + k * self.line), line, fill=_INK, font=self.font,
                     stroke_width=1 if bold else 0, stroke_fill=_INK)
        return np.asarray(block)

    def caption(self, tile: np.ndarray, text: str, lines: int = 1) -> np.ndarray:
        """``tile`` with ``text`` (wrapped to at most ``lines`` lines) centred under it."""
        return _vstack([tile, self.text(self._wrap(text, tile.shape[1], lines), tile.shape[1], center=True)], gap=0)

    def load(self, path: Path, *, missing_ok: bool = False) -> np.ndarray:
        """An image file as a (tile, tile, 3) uint8 thumbnail (nearest); grey if missing and ``missing_ok``."""
        if missing_ok and not path.is_file():
            return np.full((self.tile, self.tile, 3), 200, dtype=np.uint8)
        image = Image.open(path).convert("RGB").resize((self.tile, self.tile), Image.Resampling.NEAREST)
        return np.asarray(image)

    def _fit(self, line: str, width: int) -> str:
        while line and self.font.getlength(line) > width - 4:
            line = line[:-2] + "…"
        return line

    def _wrap(self, text: str, width: int, lines: int) -> list[str]:
        out: list[str] = []
        for word in text.split(" "):
            if out and self.font.getlength(f"{out[-1]} {word}") <= width - 4:
                out[-1] = f"{out[-1]} {word}"
            else:
                out.append(word)
        if len(out) > lines:
            out = out[: lines - 1] + [" ".join(out[lines - 1 :])]
        return out + [""] * (lines - len(out))


def _hstack(parts: list[np.ndarray], gap: int = _GAP) -> np.ndarray:
    height = max(p.shape[0] for p in parts)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, gap), (0, 0)), constant_values=255) for p in parts]
    return np.concatenate(padded, axis=1)[:, : -gap or None]


def _vstack(parts: list[np.ndarray], gap: int = _GAP) -> np.ndarray:
    width = max(p.shape[1] for p in parts)
    padded = [np.pad(p, ((0, gap), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in parts]
    return np.concatenate(padded, axis=0)[: -gap or None]


def _false_colors(labels: np.ndarray, category: str) -> np.ndarray:
    """Label map (H, W) -> (H, W, 3) uint8: colour names in their prototype, other labels spread over hues."""
    if category == "color":
        table = np.array([(0, 0, 0), *PROTOTYPES], dtype=np.uint8)
        return table[labels]
    hues = [(n * 0.618034) % 1.0 for n in range(int(labels.max()) + 1)]
    rgb = [tuple(round(255 * c) for c in colorsys.hsv_to_rgb(h, 0.75, 0.95)) for h in hues[1:]]
    table = np.array([(0, 0, 0), *rgb], dtype=np.uint8)
    return table[labels]


def _class_section(root: Path, world: dict, sheet: _Sheet) -> np.ndarray:
    saliency = root / world.get("saliency", {}).get("dir", "saliency")
    rows: dict[str, list[np.ndarray]] = {}
    for cls in world["classes"]:
        name = f"{cls['name']}_00000.png"
        pair = _hstack([sheet.load(root / "train" / cls["name"] / name),
                        sheet.load(saliency / "train" / cls["name"] / name, missing_ok=True)], gap=1)
        rows.setdefault(cls["object_type"], []).append(sheet.caption(pair, cls["subtype"]))
    lines = []
    for otype, pairs in rows.items():
        differs = world["object_types"][otype]["differs_in"]
        label = sheet.text([otype, f"differs in: {differs['part']}", f"({differs['property']})"], _LABEL_WIDTH)
        lines.append(_hstack([label, *pairs]))
    width = max(line.shape[1] for line in lines)
    title = sheet.text(["Classes: first training image | its saliency map (red: object, yellow: discriminative "
                        "part)"], width, bold=True)
    return _vstack([title, *lines])


def _names(labels: np.ndarray, concepts: dict[int, str]) -> str:
    present = [concepts.get(n, str(n)) for n in np.unique(labels).tolist() if n]
    return ", ".join(name.removesuffix("-c") for name in present)


def _probe_section(root: Path, world: dict, n_scenes: int, sheet: _Sheet) -> list[np.ndarray]:
    images = root / "probe" / "images"
    concepts = {c["number"]: c["name"] for c in world["concepts"]}
    with (root / "probe" / "index.csv").open(newline="", encoding="utf-8") as f:
        index = list(csv.DictReader(f))
    header = _hstack([sheet.text([""], _LABEL_WIDTH)]
                     + [sheet.text([name], sheet.tile, center=True, bold=True) for name in ("image", *_MASKS)])
    rows = []
    closeups = [r for r in index if r["object"] and not r["scene"]][:_CLOSEUPS]
    for row in [r for r in index if r["material"]][:n_scenes] + closeups:
        tiles = [sheet.caption(sheet.load(images / row["image"]), "", lines=2)]
        for cat in _MASKS:
            if not row[cat]:  # close-ups have no material labels
                tiles.append(sheet.caption(np.full((sheet.tile, sheet.tile, 3), 235, np.uint8), "(no labels)", lines=2))
                continue
            labels = decode_labels(np.asarray(Image.open(images / row[cat]).convert("RGB")))
            shown = Image.fromarray(_false_colors(labels, cat)).resize((sheet.tile,) * 2, Image.Resampling.NEAREST)
            tiles.append(sheet.caption(np.asarray(shown), _names(labels, concepts), lines=2))
        scene = concepts.get(int(row["scene"]), row["scene"]) if row["scene"] else "close-up"
        rows.append(_hstack([sheet.text([scene, row["image"]], _LABEL_WIDTH), *tiles]))
    title = sheet.text(["Probe scenes and close-ups (Broden layout): image and its label masks, with the "
                        "concepts they hold"], header.shape[1], bold=True)
    sections = [_vstack([title, header, *rows])]
    tiles = [sheet.caption(sheet.load(images / r["image"]), concepts.get(int(r["texture"]), r["texture"]))
             for r in index if r["texture"]][: len(_MASKS) + 1]
    if tiles:
        label = sheet.text(["texture tiles", "(image-level labels)"], _LABEL_WIDTH)
        sections.append(_hstack([label, *tiles]))
    return sections


def write_preview(world_dir: str | Path, out_png: str | Path, *, probe_scenes: int = 6, tile: int = 96) -> Path:
    """Write a labelled contact sheet of a generated world.

    Args:
        world_dir: the output directory of :func:`kdinterp.world.generate.generate_world`.
        out_png: the PNG to write (atomically).
        probe_scenes: how many probe scenes to show with their masks.
        tile: side of each thumbnail in pixels.

    Returns:
        ``out_png`` as a Path.

    Raises:
        FileNotFoundError: ``world_dir`` has no ``world.json`` or misses an image it lists (a
            missing saliency map, as in worlds made before saliency maps existed, shows grey).
    """
    root = Path(world_dir)
    world = read_json(root / "world.json")
    sheet = _Sheet(tile)
    body = _vstack([_class_section(root, world, sheet), *_probe_section(root, world, probe_scenes, sheet)],
                   gap=3 * _GAP)
    framed = np.pad(body, ((8, 8), (8, 8), (0, 0)), constant_values=255)
    out = Path(out_png)
    with atomic_path(out) as tmp:
        Image.fromarray(framed).save(tmp, format="PNG", optimize=True)
    return out
