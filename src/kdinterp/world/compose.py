"""Composition of whole images: classification images, probe scenes and texture tiles.

Each ``render_*`` function is a pure function of the parameters, an index and a random generator,
and returns a :class:`Rendered` image with its label maps (global Broden label numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdinterp.core.params import WorldParams
from kdinterp.world.catalog import WorldClass, build_catalog
from kdinterp.world.colors import PROTOTYPES, name_colors
from kdinterp.world.draw import Grid, Placement, downsample, grid, noise
from kdinterp.world.objects import Canvas, Instance, draw_object, resolve_parts
from kdinterp.world.patterns import MATERIAL_PATTERNS, TEXTURE_PATTERNS
from kdinterp.world.specs import ObjectType, Scene
from kdinterp.world.vocabulary import MATERIALS, OBJECT_TYPES, SCENES, TEXTURES

__all__ = ["Rendered", "render_class_image", "render_probe_closeup", "render_probe_scene", "render_texture_tile"]

_MATERIALS = {m.name: m for m in MATERIALS}
_SCENES = {s.name: s for s in SCENES}
_MATERIAL_JITTER = 12.0  # std of the per-image change of a material's colour, in 0..255 levels


@dataclass(frozen=True)
class Rendered:
    """A finished image and its ground truth.

    ``image``: uint8 (H, W, 3) RGB. ``masks``: pixel category -> int32 (H, W) global label numbers
    (0 = unlabelled). ``scalars``: image-level category (scene, texture) -> global label number.
    """

    image: np.ndarray
    masks: dict[str, np.ndarray]
    scalars: dict[str, int]


# ---------------------------------------------------------------- scenes


def _bands(scene: Scene, rng: np.random.Generator, g: Grid) -> np.ndarray:
    """Band index (0 = top band) of every pixel, int32 (H, W)."""
    weights = np.array([s.weight for s in scene.bands]) * rng.uniform(0.6, 1.4, len(scene.bands))
    cuts = np.cumsum(weights / weights.sum())[:-1]
    xf = g.x[0] / g.extent
    tilt = rng.uniform(-0.1, 0.1) if scene.wavy else 0.0
    index = np.zeros((g.size, g.size), dtype=np.int32)
    for cut in cuts:
        edge = np.full(g.size, cut, dtype=np.float32) + tilt * (xf - 0.5)
        if scene.wavy:
            amp, freq, phase = rng.uniform(0.0, 0.06), rng.uniform(0.5, 3.0), rng.uniform(0.0, 1.0)
            edge = edge + amp * np.sin(2 * np.pi * (freq * xf + phase))
        index += g.frame_y > edge[None, :]
    return index


def _layout(scene: Scene, rng: np.random.Generator, g: Grid) -> np.ndarray:
    """Slot index of every pixel, int32 (H, W): bands first, then patches (blobs) on top."""
    index = _bands(scene, rng, g)
    for k, slot in enumerate(scene.patches):
        if rng.random() < 0.7:
            field = noise(rng, g, 2.5 / g.extent)
            area = min(0.9, slot.weight * rng.uniform(0.5, 1.5))
            index[field > np.quantile(field, 1.0 - area)] = len(scene.bands) + k
    return index


def _material_rgb(name: str, rng: np.random.Generator, g: Grid) -> np.ndarray:
    """The material's colour field over the whole canvas, float32 (H, W, 3)."""
    m = _MATERIALS[name]
    base = np.asarray(m.color, np.float32) + rng.normal(0.0, _MATERIAL_JITTER, 3).astype(np.float32)
    field = MATERIAL_PATTERNS[m.pattern](rng, g, m.scale * rng.uniform(0.8, 1.25))
    return base + field[..., None].astype(np.float32) * np.asarray(m.delta, np.float32)


def _paint_scene(scene: Scene, rng: np.random.Generator, g: Grid, numbers: dict[str, int]) -> Canvas:
    """A canvas filled with the scene's materials, with its material map (other maps zero)."""
    slots = (*scene.bands, *scene.patches)
    chosen = [slot.materials[rng.integers(len(slot.materials))] for slot in slots]
    index = _layout(scene, rng, g)
    rgb = np.zeros((g.size, g.size, 3), dtype=np.float32)
    material = np.zeros((g.size, g.size), dtype=np.int32)
    present = set(np.unique(index).tolist())
    for name in dict.fromkeys(chosen[k] for k in sorted(present)):
        where = np.isin(index, [k for k in present if chosen[k] == name])
        rgb[where] = _material_rgb(name, rng, g)[where]
        material[where] = numbers[name]
    masks = {"material": material, "object": np.zeros_like(material), "part": np.zeros_like(material)}
    return Canvas(rgb, masks)


# ---------------------------------------------------------------- objects and finishing


def _illuminate(canvas: Canvas, scene: Scene) -> None:
    """Apply the scene's illuminant (per-channel gains) to the whole canvas, objects included."""
    canvas.rgb *= np.asarray(scene.light, dtype=np.float32)


def _instance(params: WorldParams, otype: ObjectType, subtype_index: int, place: Placement) -> Instance:
    subtype = otype.subtypes[subtype_index]
    parts = resolve_parts(otype, subtype, params.subtype_similarity, params.subtypes_per_type)
    return Instance(otype, parts, place)


def _placement(rng: np.random.Generator, params: WorldParams, scale: float, cx: float, cy: float) -> Placement:
    angle = rng.uniform(-params.max_rotation, params.max_rotation)
    return Placement(cx, cy, scale, angle, 1 if rng.random() < 0.5 else -1)


def _other_type(rng: np.random.Generator, otype: ObjectType) -> ObjectType:
    others = [t for t in OBJECT_TYPES if t is not otype]
    return others[rng.integers(len(others))]


def _random_instance(params: WorldParams, rng: np.random.Generator, otype: ObjectType, place: Placement) -> Instance:
    return _instance(params, otype, int(rng.integers(len(otype.subtypes))), place)


def _finish(canvas: Canvas, params: WorldParams, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Downsample, jitter colours, add noise and quantise; subsample the label maps.

    Returns:
        uint8 image (H, W, 3) and category -> int32 (H, W) maps.
    """
    f = params.supersample
    img = downsample(canvas.rgb, f)
    j = params.color_jitter
    contrast, brightness, saturation = 1 + rng.uniform(-j, j, 3).astype(np.float32)
    mean = img.mean(dtype=np.float32)
    img = ((img - mean) * contrast + mean) * brightness
    grey = img.mean(axis=2, keepdims=True, dtype=np.float32)
    img = grey + (img - grey) * saturation
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(params.noise * 255.0)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    masks = {cat: m[f // 2 :: f, f // 2 :: f] for cat, m in canvas.masks.items()}
    return image, masks


def _pick_scene(params: WorldParams, rng: np.random.Generator, otype: ObjectType) -> Scene:
    if rng.random() < params.context:
        return _SCENES[otype.scenes[rng.integers(len(otype.scenes))]]
    return SCENES[rng.integers(len(SCENES))]


def _draw_clutter(canvas: Canvas, params: WorldParams, rng: np.random.Generator, main: Instance,
                  numbers: dict[str, int], *, front: bool) -> None:
    """A smaller object of another type: anywhere behind ``main``, or in front overlapping its edge."""
    m = main.place
    if front:
        angle = rng.uniform(0.0, 2 * np.pi)
        scale = m.scale * rng.uniform(0.3, 0.45)
        cx, cy = m.cx + 0.45 * m.scale * np.cos(angle), m.cy + 0.45 * m.scale * np.sin(angle)
    else:
        scale, (cx, cy) = m.scale * rng.uniform(0.5, 0.8), rng.uniform(0.0, 1.0, 2)
    otype = _other_type(rng, main.object_type)
    draw_object(canvas, _random_instance(params, rng, otype, _placement(rng, params, scale, cx, cy)), numbers, rng)


def render_class_image(params: WorldParams, cls: WorldClass, rng: np.random.Generator) -> Rendered:
    """A classification image: one object of class ``cls`` on a scene background.

    The scene is one of the object type's usual scenes with probability ``params.context``.
    The object spans ``params.object_scale`` of the side; with ``params.distractor_prob`` another
    object is drawn behind it, with ``params.occlusion_prob`` one partly occludes it.

    Args:
        params: the world parameters.
        cls: the class to draw.
        rng: the image's generator; the image is a pure function of it.

    Returns:
        A :class:`Rendered` of ``params.image_size`` pixels with material, object and part maps.
    """
    numbers = build_catalog(params).number
    g = grid(params.image_size * params.supersample, 1.0)
    scene = _pick_scene(params, rng, cls.object_type)
    canvas = _paint_scene(scene, rng, g, numbers)
    scale = rng.uniform(*params.object_scale)
    cx, cy = 0.5 + rng.uniform(-1.0, 1.0, 2) * (1.0 - scale) / 2
    subtype = cls.object_type.subtypes.index(cls.subtype)
    main = _instance(params, cls.object_type, subtype, _placement(rng, params, scale, cx, cy))
    if rng.random() < params.distractor_prob:
        _draw_clutter(canvas, params, rng, main, numbers, front=False)
    draw_object(canvas, main, numbers, rng)
    if rng.random() < params.occlusion_prob:
        _draw_clutter(canvas, params, rng, main, numbers, front=True)
    _illuminate(canvas, scene)
    image, masks = _finish(canvas, params, rng)
    return Rendered(image, masks, {})


# ---------------------------------------------------------------- probe images


def _probe_types(scene: Scene, params: WorldParams, rng: np.random.Generator, n: int) -> list[ObjectType]:
    usual = [t for t in OBJECT_TYPES if scene.name in t.scenes]
    pools = [usual if rng.random() < params.context else OBJECT_TYPES for _ in range(n)]
    return [pool[rng.integers(len(pool))] for pool in pools]


def _probe_object_scale(params: WorldParams) -> tuple[float, float]:
    """Object span range in probe images (share of the side).

    Objects keep their classification pixel size (so they are smaller relative to the larger
    probe frame), scaled down further if they would span more than half the frame.
    """
    low, high = params.object_scale
    factor = min(params.image_size / params.probe_image_size, 0.5 / high)
    return low * factor, high * factor


def _place_probe_objects(canvas: Canvas, params: WorldParams, rng: np.random.Generator, types: list[ObjectType],
                         numbers: dict[str, int]) -> None:
    """Draw one object of each type at classification pixel size; lower objects are nearer (drawn last)."""
    low, high = _probe_object_scale(params)
    places = []
    for otype in types:
        scale = rng.uniform(low, high)
        cx, cy = rng.uniform(scale / 2, 1.0 - scale / 2, 2)
        places.append((cy, _random_instance(params, rng, otype, _placement(rng, params, scale, cx, cy))))
    for _, inst in sorted(places, key=lambda p: p[0]):
        draw_object(canvas, inst, numbers, rng)


def render_probe_scene(params: WorldParams, scene_index: int, rng: np.random.Generator) -> Rendered:
    """A probe scene: scene ``scene_index % len(SCENES)`` with 1..``params.max_probe_objects`` objects.

    Object types follow the scene's usual types with probability ``params.context``; objects have
    the same pixel size as in classification images, so they are smaller relative to the frame.

    Returns:
        A :class:`Rendered` of ``params.probe_image_size`` pixels with color, object, part and
        material maps and the scene label.
    """
    numbers = build_catalog(params).number
    scene = SCENES[scene_index % len(SCENES)]
    g = grid(params.probe_image_size * params.supersample, params.probe_image_size / params.image_size)
    canvas = _paint_scene(scene, rng, g, numbers)
    types = _probe_types(scene, params, rng, int(rng.integers(1, params.max_probe_objects + 1)))
    _place_probe_objects(canvas, params, rng, types, numbers)
    _illuminate(canvas, scene)
    image, masks = _finish(canvas, params, rng)
    masks["color"] = name_colors(image)
    return Rendered(image, masks, {"scene": numbers[scene.name]})


def _backdrop(rng: np.random.Generator, g: Grid) -> np.ndarray:
    """A plain studio backdrop, float32 (H, W, 3): a light, nearly grey colour darkening downward.

    Its levels (about 146..211 before the image's colour jitter) lie outside the naming radius of
    the grey (128) and white (240) prototypes, so colour naming leaves it mostly unnamed (96% of
    backdrop pixels in the default world; the jitter darkens a few backdrops into ``grey-c``).
    """
    level = rng.uniform(165.0, 205.0)
    color = level + rng.normal(0.0, 6.0, 3).astype(np.float32)
    ramp = 1.0 - rng.uniform(0.0, 0.08) * g.frame_y[..., None]
    return (color[None, None, :] * ramp).astype(np.float32)


def render_probe_closeup(params: WorldParams, rng: np.random.Generator) -> Rendered:
    """A probe close-up: 1..``params.max_probe_objects`` objects of any types on a plain backdrop.

    Like Pascal-Part's images in Broden, close-ups carry object, part and colour labels but no scene
    and no material: they hold objects and parts without adding to the share of probe pixels that
    any scene or material covers (``docs/concept_world.md``, the coverage bound). Objects have their
    classification pixel size, as in probe scenes.

    Returns:
        A :class:`Rendered` of ``params.probe_image_size`` pixels with color, object and part maps
        and no image-level label.
    """
    numbers = build_catalog(params).number
    g = grid(params.probe_image_size * params.supersample, params.probe_image_size / params.image_size)
    zeros = np.zeros((g.size, g.size), dtype=np.int32)
    canvas = Canvas(_backdrop(rng, g), {"object": zeros, "part": zeros.copy(), "material": zeros.copy()})
    n = int(rng.integers(1, params.max_probe_objects + 1))
    _place_probe_objects(canvas, params, rng, [OBJECT_TYPES[k] for k in rng.integers(len(OBJECT_TYPES), size=n)],
                         numbers)
    image, masks = _finish(canvas, params, rng)
    del masks["material"]
    masks["color"] = name_colors(image)
    return Rendered(image, masks, {})


def _tile_color(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.6:
        proto = np.asarray(PROTOTYPES[rng.integers(len(PROTOTYPES))], np.float32)
        return np.clip(proto + rng.normal(0.0, 12.0, 3), 0, 255).astype(np.float32)
    return rng.uniform(0.0, 255.0, 3).astype(np.float32)


def render_texture_tile(params: WorldParams, texture_index: int, rng: np.random.Generator) -> Rendered:
    """A whole-image texture tile: texture ``texture_index % len(TEXTURES)`` in two random colours.

    Returns:
        A :class:`Rendered` of ``params.probe_image_size`` pixels with only a color map and the
        texture label.
    """
    name = TEXTURES[texture_index % len(TEXTURES)]
    g = grid(params.probe_image_size * params.supersample, 1.0)
    periods, angle = rng.uniform(4.0, 9.0), rng.uniform(0.0, np.pi)
    u = (np.cos(angle) * g.x + np.sin(angle) * g.y) * periods
    v = (-np.sin(angle) * g.x + np.cos(angle) * g.y) * periods
    fg = TEXTURE_PATTERNS[name](rng, u.astype(np.float32), v.astype(np.float32))
    front, back = _tile_color(rng), _tile_color(rng)
    while np.abs(front - back).sum() < 120:
        back = _tile_color(rng)
    canvas = Canvas(np.where(fg[..., None], front, back).astype(np.float32), {})
    image, _ = _finish(canvas, params, rng)
    return Rendered(image, {"color": name_colors(image)}, {"texture": build_catalog(params).number[name]})
