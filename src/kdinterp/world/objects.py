"""Objects made of parts: subtype blending, per-instance colours, and drawing onto a canvas."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np

from kdinterp.world.draw import Placement, local_coords, rasterize
from kdinterp.world.patterns import surface_mask
from kdinterp.world.specs import RGB, ObjectType, PartSpec, Polygon, Subtype

__all__ = ["Canvas", "Instance", "resolve_parts", "draw_object"]

_BLEND_POINTS = 32  # polygons are resampled to this many vertices before blending
_COLOR_JITTER = 10.0  # std of the per-instance change of a part colour, in 0..255 levels


@dataclass
class Canvas:
    """Working buffers at render resolution, mutated by drawing.

    ``rgb``: float32 (N, N, 3) in 0..255; ``masks``: category -> int32 (N, N) global label numbers.
    """

    rgb: np.ndarray
    masks: dict[str, np.ndarray]

    @property
    def size(self) -> int:
        """Side in pixels."""
        return self.rgb.shape[0]


@dataclass(frozen=True)
class Instance:
    """One object to draw: its type, resolved parts (back to front) and placement."""

    object_type: ObjectType
    parts: tuple[PartSpec, ...]
    place: Placement


def _resample(shape: Polygon, n: int) -> np.ndarray:
    """``n`` points spread evenly along the closed outline of ``shape``; float64 (n, 2)."""
    pts = np.asarray(shape, dtype=np.float64)
    closed = np.vstack([pts, pts[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    arclen = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, arclen[-1], n, endpoint=False)
    return np.stack([np.interp(t, arclen, closed[:, 0]), np.interp(t, arclen, closed[:, 1])], axis=1)


def _palette_mean(part: PartSpec) -> np.ndarray:
    return np.mean(np.asarray(part.colors, dtype=np.float64), axis=0)


def _blend_shapes(part: PartSpec, variants: list[PartSpec], s: float) -> tuple[Polygon, ...]:
    if all(v.shapes == part.shapes for v in variants):
        return part.shapes
    if any(len(v.shapes) != len(part.shapes) for v in variants):
        raise ValueError(f"part {part.name!r}: subtypes need the same number of shapes to be blended")
    shapes = []
    for j, shape in enumerate(part.shapes):
        mean = np.mean([_resample(v.shapes[j], _BLEND_POINTS) for v in variants], axis=0)
        mixed = (1 - s) * _resample(shape, _BLEND_POINTS) + s * mean
        shapes.append(tuple((float(x), float(y)) for x, y in mixed))
    return tuple(shapes)


def _blend_colors(part: PartSpec, variants: list[PartSpec], s: float) -> tuple[RGB, ...]:
    if all(v.colors == part.colors for v in variants) or not all(v.colors for v in variants):
        return part.colors
    target = np.mean([_palette_mean(v) for v in variants], axis=0)
    return tuple(tuple(int(round((1 - s) * c + s * t)) for c, t in zip(col, target, strict=True))
                 for col in part.colors)


def _blend(part: PartSpec, variants: list[PartSpec], s: float) -> PartSpec:
    """Move ``part`` a share ``s`` of the way to the mean of ``variants``.

    Only what differs among the variants moves: shapes (resampled outlines), palettes, and the
    surface pattern, which fades out (strength ``1 - s``).

    Raises:
        ValueError: the variants' shapes differ but not in number (they cannot be paired up).
    """
    strength = part.pattern_strength
    if any((v.pattern, v.pattern_color, v.pattern_freq) != (part.pattern, part.pattern_color, part.pattern_freq)
           for v in variants):
        strength *= 1 - s
    return replace(part, shapes=_blend_shapes(part, variants, s), colors=_blend_colors(part, variants, s),
                   pattern_strength=strength)


@functools.cache
def resolve_parts(
    otype: ObjectType, subtype: Subtype, similarity: float, n_class_subtypes: int
) -> tuple[PartSpec, ...]:
    """The parts of ``subtype``, its differing part blended toward the class subtypes' mean.

    Args:
        otype: the object type.
        subtype: one of ``otype.subtypes``.
        similarity: 0 keeps the subtype as designed; 1 makes it the mean of the first
            ``n_class_subtypes`` subtypes (all classes of the type then look alike).
        n_class_subtypes: how many subtypes of the type are classification classes.

    Returns:
        PartSpecs in drawing order (back to front).
    """
    parts = otype.parts_of(subtype)
    if similarity == 0.0:
        return parts
    variants = [s.part for s in otype.subtypes[:n_class_subtypes]]
    return tuple(_blend(p, variants, similarity) if p.name == otype.differs_in else p for p in parts)


def _part_colors(parts: tuple[PartSpec, ...], rng: np.random.Generator) -> np.ndarray:
    """Instance colours, float32 (len(parts), 3): palette picks with jitter, then derived colours."""
    colors: dict[str, np.ndarray] = {}
    for p in parts:
        if p.colors:
            base = np.asarray(p.colors[rng.integers(len(p.colors))], dtype=np.float32)
            colors[p.name] = base + rng.normal(0.0, _COLOR_JITTER, 3).astype(np.float32)
    for p in parts:
        if p.color_from is not None:
            colors[p.name] = colors[p.color_from] * np.float32(p.shade)
    return np.clip(np.stack([colors[p.name] for p in parts]), 0, 255)


def _paint_patterns(canvas: Canvas, inst: Instance, index: np.ndarray, colors: np.ndarray) -> None:
    for k, part in enumerate(inst.parts):
        if part.pattern == "plain" or part.pattern_strength <= 0.0:
            continue
        rows, cols = np.nonzero(index == k + 1)
        u, v = local_coords(inst.place, rows, cols, canvas.size)
        hit = surface_mask(part.pattern, u, v, part.pattern_freq)
        target = colors[k] * 0.4 if part.pattern_color is None else np.asarray(part.pattern_color, np.float32)
        canvas.rgb[rows[hit], cols[hit]] = colors[k] + part.pattern_strength * (target - colors[k])


def draw_object(canvas: Canvas, inst: Instance, numbers: dict[str, int], rng: np.random.Generator) -> None:
    """Draw ``inst`` over the canvas: colours, surface patterns, object and part label maps.

    Args:
        canvas: mutated in place; its ``masks`` must hold ``object``, ``part`` and ``material`` maps
            (the material map is cleared under the object).
        inst: the object.
        numbers: concept name -> global label number.
        rng: the image's random generator (draws the instance colours).
    """
    size = canvas.size
    shapes = [(k + 1, inst.place.to_pixels(shape, size)) for k, p in enumerate(inst.parts) for shape in p.shapes]
    index = rasterize(shapes, size)
    colors = _part_colors(inst.parts, rng)
    hit = index > 0
    part_numbers = np.array([0] + [numbers[p.name] for p in inst.parts], dtype=np.int32)
    canvas.rgb[hit] = np.concatenate([np.zeros((1, 3), np.float32), colors])[index[hit]]
    _paint_patterns(canvas, inst, index, colors)
    canvas.rgb[hit] *= _lighting(inst.place, size)[hit][:, None]
    canvas.masks["object"][hit] = numbers[inst.object_type.name]
    canvas.masks["part"][hit] = part_numbers[index[hit]]
    canvas.masks["material"][hit] = 0  # the object hides the scene's surface


def _lighting(place: Placement, size: int) -> np.ndarray:
    """Soft top-left lighting across the object, float32 (size, size), about 0.85..1.1."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    ramp = ((axis[None, :] - place.cx) + (axis[:, None] - place.cy)) / (2 * place.scale)
    return np.clip(1.0 - 0.25 * ramp, 0.85, 1.1).astype(np.float32)
