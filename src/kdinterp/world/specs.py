"""Data types of the concept-world vocabulary, and helpers that build polygons.

Object geometry lives in a local frame: ``u`` points right, ``v`` points down, and an object
fills roughly the unit box ``[-0.5, 0.5]²``. Every shape is a polygon (ellipses and arcs are
sampled), so one rasteriser draws them all and subtype shapes can be blended point by point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "RGB",
    "Polygon",
    "Material",
    "Slot",
    "Scene",
    "PartSpec",
    "Subtype",
    "ObjectType",
    "rect",
    "poly",
    "ellipse",
    "arc",
    "rose",
]

RGB = tuple[int, int, int]
Polygon = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Material:
    """A pixel-level surface: ``colour + f * delta`` where ``f`` in [-1, 1] is a procedural pattern."""

    name: str
    color: RGB
    delta: tuple[int, int, int]
    pattern: str  # a key of kdinterp.world.patterns.MATERIAL_PATTERNS
    scale: float = 1.0  # pattern frequency multiplier


@dataclass(frozen=True)
class Slot:
    """One region of a scene layout: which materials may fill it (one is drawn per image)."""

    materials: tuple[str, ...]
    weight: float  # a band's nominal share of the height, or a patch's share of the area


@dataclass(frozen=True)
class Scene:
    """An image-level scene label: horizontal bands of materials, then optional blob patches."""

    name: str
    bands: tuple[Slot, ...]  # top to bottom
    patches: tuple[Slot, ...] = ()
    wavy: bool = True  # wavy band boundaries (outdoors) or straight ones (indoors)
    light: tuple[float, float, float] = (1.0, 1.0, 1.0)  # illuminant: R, G, B gains on the whole image

    @property
    def materials(self) -> tuple[str, ...]:
        """Every material this scene can contain, in first-mention order."""
        names = [m for slot in (*self.bands, *self.patches) for m in slot.materials]
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class PartSpec:
    """How one part of an object type looks: polygons in the object frame plus colour rules."""

    name: str
    shapes: tuple[Polygon, ...]
    colors: tuple[RGB, ...] = ()  # palette; one colour is drawn per instance
    color_from: str | None = None  # instead of a palette: the colour of this (earlier) part...
    shade: float = 1.0  # ...times this factor
    pattern: str = "plain"  # surface pattern: plain, hstripes, vstripes or spots
    pattern_color: RGB | None = None  # None: a dark shade of the part colour
    pattern_freq: float = 6.0  # pattern periods per object unit
    pattern_strength: float = 1.0  # 0 hides the pattern, 1 paints it fully


@dataclass(frozen=True)
class Subtype:
    """A fine-grained class of an object type: it replaces the type's differing part."""

    name: str
    part: PartSpec


@dataclass(frozen=True)
class ObjectType:
    """An object made of parts; its subtypes differ in exactly one part (``differs_in``)."""

    name: str
    parts: tuple[PartSpec, ...]  # back to front; the differing part holds subtype 0's spec
    differs_in: str  # the part the subtypes differ in
    property: str  # how it differs: shape, proportion, colour or texture
    subtypes: tuple[Subtype, ...]
    scenes: tuple[str, ...]  # usual scenes (context)

    @property
    def part_names(self) -> tuple[str, ...]:
        """Part names in drawing order."""
        return tuple(p.name for p in self.parts)

    def parts_of(self, subtype: Subtype) -> tuple[PartSpec, ...]:
        """The parts of one subtype: the type's parts with the differing part replaced."""
        return tuple(subtype.part if p.name == self.differs_in else p for p in self.parts)


def rect(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    """Axis-aligned rectangle from corner ``(x0, y0)`` to ``(x1, y1)``."""
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def poly(*points: tuple[float, float]) -> Polygon:
    """A polygon from its vertices (in order)."""
    return tuple(points)


def ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 20) -> Polygon:
    """An ellipse sampled at ``n`` points, rotated by ``angle`` degrees about its centre."""
    a = math.radians(angle)
    pts = []
    for k in range(n):
        t = 2 * math.pi * k / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        pts.append((cx + x * math.cos(a) - y * math.sin(a), cy + x * math.sin(a) + y * math.cos(a)))
    return tuple(pts)


def arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 12) -> Polygon:
    """The region between an elliptic arc from ``a0`` to ``a1`` degrees and its chord.

    Angles follow the image frame (``v`` down): 180 to 360 is the upper half.
    """
    pts = []
    for k in range(n):
        t = math.radians(a0 + (a1 - a0) * k / (n - 1))
        pts.append((cx + rx * math.cos(t), cy + ry * math.sin(t)))
    return tuple(pts)


def rose(cx: float, cy: float, r0: float, r1: float, petals: int, n: int = 48) -> Polygon:
    """A flower outline: radius ``r0 + r1 * |cos(petals * t / 2)|`` around ``(cx, cy)``."""
    pts = []
    for k in range(n):
        t = 2 * math.pi * k / n
        r = r0 + r1 * abs(math.cos(petals * t / 2))
        pts.append((cx + r * math.cos(t), cy + r * math.sin(t)))
    return tuple(pts)
