"""The concept world's vocabulary, as data: materials, scenes, object types with parts and
subtypes, and texture tiles.

Names are unique across all categories (Broden convention: scene names end in ``-s``). The order
of every tuple is part of the world's definition: it fixes the global label numbers and, for
object types and subtypes, which ones ``WorldParams.object_types`` / ``subtypes_per_type`` select
(the first N).

Coverage budget: each scene is about 1/25 of the probe scene images, so a material's summed
band/patch weight over the scenes that use it, divided by its number of alternatives, must stay
near 1.0 (about 3% of the scene images' pixels, 1.4% of all probe pixels with the default 40%
close-ups); no material fills most of many scenes.
"""

from __future__ import annotations

from dataclasses import replace

from kdinterp.world.specs import (
    Material,
    ObjectType,
    PartSpec,
    Scene,
    Slot,
    Subtype,
    arc,
    ellipse,
    poly,
    rect,
    rose,
)

__all__ = ["MATERIALS", "SCENES", "OBJECT_TYPES", "TEXTURES"]


MATERIALS: tuple[Material, ...] = (
    Material("sky", (105, 155, 215), (40, 35, 20), "gradient"),
    Material("cloud", (180, 185, 195), (45, 45, 40), "clouds"),
    Material("sunset", (230, 140, 100), (25, 55, 60), "gradient"),
    Material("water", (40, 100, 150), (35, 40, 35), "waves"),
    Material("deep_water", (20, 75, 115), (25, 45, 45), "caustics"),
    Material("sand", (215, 190, 140), (22, 22, 20), "ripples"),
    Material("grass", (80, 145, 55), (30, 40, 20), "streaks"),
    Material("soil", (110, 80, 55), (30, 25, 20), "noise"),
    Material("rock", (128, 118, 104), (45, 45, 45), "cracks"),
    Material("snow", (206, 219, 238), (14, 12, 8), "noise", 0.6),
    Material("ice", (185, 215, 232), (35, 28, 18), "sheets"),
    Material("asphalt", (72, 72, 78), (22, 22, 22), "speckle"),
    Material("paving", (160, 128, 100), (40, 40, 40), "bricks", 1.6),
    Material("gravel", (150, 140, 125), (50, 48, 45), "pebbles"),
    Material("brick", (165, 75, 55), (-25, -105, -125), "bricks"),
    Material("concrete", (165, 165, 160), (22, 22, 22), "blotches"),
    Material("plaster", (222, 205, 175), (10, 10, 10), "blotches", 0.5),
    Material("tile", (200, 215, 225), (50, 75, 105), "tiles"),
    Material("wood", (160, 110, 60), (38, 32, 22), "grain"),
    Material("carpet", (150, 60, 65), (28, 18, 18), "fine"),
    Material("wallpaper", (200, 180, 140), (30, 30, 30), "stripes"),
    Material("marble", (218, 212, 202), (70, 70, 70), "veins"),
    Material("metal", (160, 165, 172), (32, 32, 32), "brushed"),
    Material("foliage", (50, 100, 40), (30, 45, 20), "blobs"),
    Material("mud", (85, 65, 45), (22, 20, 16), "blobs", 0.6),
    Material("coral", (230, 125, 110), (15, 50, -45), "blobs", 1.5),
    Material("straw", (215, 185, 90), (32, 30, 25), "streaks"),
)

_SKIES = ("sky", "cloud", "sunset")


def _s(*materials: str, w: float) -> Slot:
    return Slot(tuple(materials), w)


SCENES: tuple[Scene, ...] = (
    Scene("beach-s", (_s(*_SKIES, w=0.25), _s("water", w=0.3), _s("sand", "gravel", w=0.45))),
    Scene("harbor-s", (_s(*_SKIES, w=0.25), _s("concrete", "brick", "wood", w=0.3), _s("water", w=0.45))),
    Scene("lake-s", (_s(*_SKIES, w=0.25), _s("foliage", "rock", w=0.35), _s("water", w=0.4))),
    Scene("underwater-s", (_s("deep_water", w=0.5), _s("sand", "gravel", w=0.5)), (_s("rock", "coral", w=0.15),)),
    Scene("coral_reef-s", (_s("deep_water", w=0.4), _s("coral", w=0.4), _s("sand", "rock", w=0.2))),
    Scene("street-s", (_s(*_SKIES, w=0.15), _s("brick", "plaster", "concrete", w=0.45),
                       _s("asphalt", "paving", w=0.4))),
    Scene("parking_lot-s", (_s("concrete", "brick", "metal", w=0.35), _s("asphalt", "paving", w=0.65))),
    Scene("highway-s", (_s(*_SKIES, w=0.3), _s("grass", "sand", "straw", w=0.25), _s("asphalt", w=0.45))),
    Scene("village-s", (_s(*_SKIES, w=0.3), _s("grass", "straw", w=0.45), _s("gravel", "soil", w=0.25))),
    Scene("forest-s", (_s("foliage", w=0.55), _s("soil", "grass", w=0.45)), (_s("mud", "rock", w=0.15),)),
    Scene("field-s", (_s(*_SKIES, w=0.35), _s("grass", "straw", "soil", w=0.65)), (_s("soil", "grass", w=0.15),)),
    Scene("garden-s", (_s("foliage", "brick", w=0.35), _s("grass", w=0.4), _s("soil", "gravel", w=0.25))),
    Scene("mountain-s", (_s(*_SKIES, w=0.3), _s("rock", w=0.45), _s("snow", "grass", w=0.25))),
    Scene("ski_slope-s", (_s(*_SKIES, w=0.25), _s("foliage", "rock", w=0.15), _s("snow", w=0.6))),
    Scene("desert-s", (_s("sky", "sunset", w=0.3), _s("sand", w=0.5), _s("rock", "gravel", w=0.2))),
    Scene("swamp-s", (_s("foliage", w=0.3), _s("water", "mud", w=0.35), _s("mud", w=0.35))),
    Scene("frozen_lake-s", (_s(*_SKIES, w=0.3), _s("snow", "rock", w=0.2), _s("ice", w=0.5))),
    Scene("farm-s", (_s(*_SKIES, w=0.3), _s("straw", "soil", w=0.7)), (_s("mud", "grass", w=0.12),)),
    Scene("kitchen-s", (_s("tile", "wallpaper", "plaster", w=0.55), _s("wood", "tile", w=0.45)), wavy=False),
    Scene("bedroom-s", (_s("wallpaper", "plaster", w=0.6), _s("carpet", "wood", w=0.4)), wavy=False),
    Scene(
        "living_room-s",
        (_s("plaster", "wallpaper", "brick", w=0.55), _s("wood", w=0.45)),
        (_s("carpet", w=0.15),),
        wavy=False,
    ),
    Scene("office-s", (_s("plaster", "wallpaper", w=0.6), _s("carpet", "tile", "wood", w=0.4)), wavy=False),
    Scene("bathroom-s", (_s("tile", "marble", w=0.6), _s("marble", "tile", w=0.4)), wavy=False),
    Scene("garage-s", (_s("concrete", "brick", w=0.5), _s("concrete", "asphalt", "paving", w=0.5)),
          (_s("metal", w=0.15),), wavy=False),
    Scene("aquarium-s", (_s("plaster", "wallpaper", w=0.2), _s("deep_water", w=0.5), _s("gravel", "sand", w=0.3)),
          (_s("coral", "rock", w=0.15),), wavy=False),
)

# Each scene's illuminant: per-channel gains applied to the whole image, objects included (warm
# lamplight indoors, blue-green under water, dim green under foliage, glare on snow and sand). It
# gives a scene an appearance that covers the whole image, as real scenes have, rather than only
# the materials it shares with other scenes.
_LIGHTS: dict[str, tuple[float, float, float]] = {
    "beach-s": (1.08, 1.04, 0.94), "harbor-s": (0.94, 0.98, 1.04), "lake-s": (0.92, 1.0, 0.98),
    "underwater-s": (0.62, 0.92, 1.1), "coral_reef-s": (0.78, 0.98, 1.06), "street-s": (1.0, 1.0, 1.0),
    "parking_lot-s": (0.88, 0.88, 0.9), "highway-s": (1.06, 1.0, 0.88), "village-s": (1.02, 1.0, 0.9),
    "forest-s": (0.78, 0.9, 0.74), "field-s": (1.06, 1.06, 0.88), "garden-s": (0.94, 1.02, 0.9),
    "mountain-s": (0.94, 0.98, 1.06), "ski_slope-s": (1.06, 1.08, 1.12), "desert-s": (1.12, 0.98, 0.78),
    "swamp-s": (0.78, 0.84, 0.68), "frozen_lake-s": (0.94, 1.02, 1.12), "farm-s": (1.06, 1.0, 0.86),
    "kitchen-s": (1.05, 1.0, 0.9), "bedroom-s": (1.0, 0.86, 0.72), "living_room-s": (1.06, 0.94, 0.8),
    "office-s": (0.94, 1.0, 1.02), "bathroom-s": (1.0, 1.02, 1.06), "garage-s": (0.78, 0.78, 0.76),
    "aquarium-s": (0.84, 0.98, 1.08),
}
SCENES = tuple(replace(scene, light=_LIGHTS[scene.name]) for scene in SCENES)

# Palettes shared by several object types.
_WOODS = ((140, 90, 50), (100, 60, 30), (170, 120, 70))
_VIVID = ((200, 35, 35), (40, 70, 185), (230, 200, 40), (235, 235, 235), (30, 30, 35), (40, 130, 60))
_GREENS = ((40, 110, 40), (75, 140, 50), (30, 85, 45))
_DARKS = ((40, 40, 45), (70, 70, 75), (25, 25, 25))


def _house() -> ObjectType:
    roof = dict(colors=((150, 45, 35), (70, 70, 75), (110, 70, 40), (60, 75, 110)))
    gable = PartSpec("roof", (poly((-0.46, -0.06), (0.0, -0.46), (0.46, -0.06)),), **roof)
    return ObjectType(
        "house",
        parts=(
            PartSpec("wall", (rect(-0.36, -0.08, 0.36, 0.46),),
                     ((205, 185, 150), (225, 222, 210), (140, 155, 175), (200, 160, 80), (200, 140, 130))),
            gable,
            PartSpec("door", (rect(-0.08, 0.16, 0.08, 0.46),), ((100, 60, 30), (40, 80, 50), (150, 30, 30))),
            PartSpec("window", (rect(-0.28, 0.02, -0.14, 0.14), rect(0.14, 0.02, 0.28, 0.14)),
                     ((170, 210, 235), (240, 220, 120), (40, 50, 70))),
        ),
        differs_in="roof",
        property="shape",
        subtypes=(
            Subtype("gable", gable),
            Subtype("flat", PartSpec("roof", (rect(-0.42, -0.2, 0.42, -0.06),), **roof)),
            Subtype("dome", PartSpec("roof", (arc(0.0, -0.06, 0.4, 0.4, 180, 360),), **roof)),
            Subtype("hip", PartSpec("roof", (poly((-0.46, -0.06), (-0.2, -0.34), (0.2, -0.34), (0.46, -0.06)),),
                                    **roof)),
        ),
        scenes=("street-s", "village-s", "mountain-s", "ski_slope-s", "farm-s"),
    )


def _car() -> ObjectType:
    body = dict(colors=_VIVID + ((160, 165, 170),))
    sedan = PartSpec("chassis", (poly((-0.48, 0.22), (-0.48, 0.02), (-0.26, 0.0), (-0.18, -0.2), (0.18, -0.2),
                                      (0.28, 0.0), (0.48, 0.04), (0.48, 0.22)),), **body)
    return ObjectType(
        "car",
        parts=(
            sedan,
            PartSpec("window", (rect(-0.15, -0.16, -0.02, -0.02), rect(0.02, -0.16, 0.15, -0.02)),
                     ((150, 190, 220), (90, 110, 130))),
            PartSpec("wheel", (ellipse(-0.28, 0.22, 0.11, 0.11), ellipse(0.28, 0.22, 0.11, 0.11)), _DARKS),
        ),
        differs_in="chassis",
        property="proportion",
        subtypes=(
            Subtype("sedan", sedan),
            Subtype("van", PartSpec("chassis", (poly((-0.48, 0.22), (-0.48, -0.32), (0.28, -0.32), (0.48, -0.04),
                                                     (0.48, 0.22)),), **body)),
            Subtype("pickup", PartSpec("chassis", (poly((-0.5, 0.22), (-0.5, -0.04), (-0.2, -0.04), (-0.2, -0.24),
                                                        (0.2, -0.24), (0.3, -0.02), (0.5, 0.02), (0.5, 0.22)),),
                                       **body)),
            Subtype("coupe", PartSpec("chassis", (poly((-0.5, 0.2), (-0.5, 0.06), (-0.2, -0.04), (-0.06, -0.19),
                                                       (0.1, -0.19), (0.3, 0.02), (0.5, 0.1), (0.5, 0.2)),), **body)),
        ),
        scenes=("street-s", "parking_lot-s", "highway-s", "garage-s", "desert-s"),
    )


def _boat() -> ObjectType:
    sail = dict(colors=((240, 240, 235), (230, 220, 190)))
    sloop = PartSpec("sail", (poly((0.04, -0.44), (0.04, 0.14), (0.4, 0.14)),), **sail)
    return ObjectType(
        "boat",
        parts=(
            PartSpec("mast", (rect(-0.025, -0.48, 0.025, 0.18),), ((70, 50, 30), (120, 120, 120))),
            sloop,
            PartSpec("hull", (poly((-0.48, 0.16), (0.48, 0.16), (0.34, 0.42), (-0.36, 0.42)),),
                     ((230, 230, 225), (30, 50, 110), (170, 40, 30), (130, 85, 45))),
        ),
        differs_in="sail",
        property="shape",
        subtypes=(
            Subtype("sloop", sloop),
            Subtype("square_rigger", PartSpec("sail", (rect(-0.3, -0.38, 0.3, 0.06),), **sail)),
            Subtype("lateen", PartSpec("sail", (poly((-0.36, 0.1), (0.34, -0.46), (0.3, 0.1)),), **sail)),
            Subtype("junk", PartSpec("sail", (poly((-0.32, -0.34), (0.24, -0.44), (0.32, 0.1), (-0.32, 0.1)),),
                                     ((190, 70, 40),), pattern="hstripes", pattern_freq=7.0)),
        ),
        scenes=("beach-s", "harbor-s", "lake-s", "swamp-s"),
    )


def _fish() -> ObjectType:
    body = dict(shapes=(ellipse(-0.04, 0.0, 0.36, 0.2),),
                colors=((235, 130, 30), (230, 200, 50), (60, 100, 190), (170, 175, 180), (200, 60, 50)))
    plain = PartSpec("body", **body)
    return ObjectType(
        "fish",
        parts=(
            PartSpec("tail", (poly((0.26, 0.0), (0.5, -0.22), (0.5, 0.22)),), color_from="body", shade=0.75),
            PartSpec("fin", (poly((-0.12, -0.14), (0.04, -0.34), (0.12, -0.14)),), color_from="body", shade=0.75),
            plain,
        ),
        differs_in="body",
        property="texture",
        subtypes=(
            Subtype("plain", plain),
            Subtype("striped", PartSpec("body", **body, pattern="hstripes", pattern_freq=7.0)),
            Subtype("spotted", PartSpec("body", **body, pattern="spots", pattern_freq=7.0)),
            Subtype("banded", PartSpec("body", **body, pattern="vstripes", pattern_freq=3.0,
                                       pattern_color=(245, 245, 245))),
        ),
        scenes=("underwater-s", "coral_reef-s", "aquarium-s", "swamp-s"),
    )


def _bird() -> ObjectType:
    # The subtypes differ in the colour of the body, the largest part (wing and tail take a shade
    # of it), so colour is a class cue on a region about as large as a layer4 cell of the probe set.
    def body(color: tuple[int, int, int]) -> PartSpec:
        return PartSpec("body", (ellipse(-0.02, 0.08, 0.3, 0.17),), (color,))

    bluejay = body((40, 75, 200))
    return ObjectType(
        "bird",
        parts=(
            PartSpec("tail", (poly((-0.5, -0.02), (-0.22, 0.04), (-0.22, 0.16), (-0.5, 0.24)),),
                     color_from="body", shade=0.8),
            bluejay,
            PartSpec("head", (ellipse(0.28, -0.12, 0.13, 0.13),),
                     ((120, 85, 55), (140, 140, 135), (200, 190, 170), (60, 55, 50))),
            PartSpec("wing", (poly((-0.2, 0.06), (0.12, 0.04), (0.0, -0.42), (-0.28, -0.34)),),
                     color_from="body", shade=0.7),
        ),
        differs_in="body",
        property="colour",
        subtypes=(
            Subtype("bluejay", bluejay),
            Subtype("cardinal", body((205, 30, 35))),
            Subtype("goldfinch", body((235, 212, 40))),
            Subtype("blackbird", body((30, 30, 35))),
        ),
        scenes=("beach-s", "field-s", "forest-s", "mountain-s", "swamp-s", "frozen_lake-s"),
    )


def _tree() -> ObjectType:
    crown = dict(colors=_GREENS + ((185, 120, 35),))
    oak = PartSpec("crown", (ellipse(0.0, -0.14, 0.42, 0.34),), **crown)
    return ObjectType(
        "tree",
        parts=(PartSpec("trunk", (rect(-0.06, 0.0, 0.06, 0.5),), ((100, 65, 35), (80, 55, 35), (110, 100, 90))), oak),
        differs_in="crown",
        property="shape",
        subtypes=(
            Subtype("oak", oak),
            Subtype("pine", PartSpec("crown", (poly((-0.34, 0.22), (0.0, -0.5), (0.34, 0.22)),), **crown)),
            Subtype("cypress", PartSpec("crown", (ellipse(0.0, -0.1, 0.15, 0.38),), **crown)),
            Subtype("acacia", PartSpec("crown", (ellipse(0.0, -0.22, 0.5, 0.14),), **crown)),
        ),
        scenes=("forest-s", "field-s", "village-s", "lake-s", "mountain-s", "ski_slope-s"),
    )


def _flower() -> ObjectType:
    def petal(*colors: tuple[int, int, int]) -> PartSpec:
        return PartSpec("petal", (rose(0.0, -0.22, 0.12, 0.14, 6),), colors)

    rose_ = petal((205, 30, 45), (215, 65, 60))
    return ObjectType(
        "flower",
        parts=(
            PartSpec("stem", (rect(-0.03, -0.2, 0.03, 0.5),), _GREENS),
            PartSpec("leaf", (ellipse(0.15, 0.24, 0.14, 0.05, angle=-30), ellipse(-0.14, 0.1, 0.13, 0.05, angle=30)),
                     color_from="stem", shade=1.15),
            rose_,
            PartSpec("pistil", (ellipse(0.0, -0.22, 0.075, 0.075),), ((240, 200, 40), (110, 70, 30))),
        ),
        differs_in="petal",
        property="colour",
        subtypes=(
            Subtype("rose", rose_),
            Subtype("marigold", petal((235, 120, 30), (225, 90, 45))),
            Subtype("peony", petal((235, 140, 180), (220, 95, 125))),
            Subtype("violet", petal((125, 50, 170), (150, 70, 190))),
        ),
        scenes=("garden-s", "field-s", "farm-s", "living_room-s", "kitchen-s"),
    )


def _mushroom() -> ObjectType:
    cap = dict(colors=((205, 35, 30), (130, 80, 40), (180, 140, 90), (232, 145, 40)))
    agaric = PartSpec("cap", (arc(0.0, 0.02, 0.42, 0.4, 180, 360),), **cap,
                      pattern="spots", pattern_color=(245, 245, 240), pattern_freq=5.0)
    return ObjectType(
        "mushroom",
        parts=(PartSpec("stem", (rect(-0.1, -0.05, 0.1, 0.46),), ((232, 222, 200), (210, 198, 170))), agaric),
        differs_in="cap",
        property="shape",
        subtypes=(
            Subtype("fly_agaric", agaric),
            Subtype("porcini", PartSpec("cap", (arc(0.0, 0.02, 0.48, 0.24, 180, 360),), **cap)),
            Subtype("liberty_cap", PartSpec("cap", (poly((-0.28, 0.02), (0.0, -0.5), (0.28, 0.02)),), **cap)),
            Subtype("chanterelle", PartSpec("cap", (poly((-0.44, -0.34), (0.44, -0.34), (0.1, 0.04), (-0.1, 0.04)),),
                                            **cap)),
        ),
        scenes=("forest-s", "garden-s", "swamp-s"),
    )


def _chair() -> ObjectType:
    wood = dict(colors=_WOODS + ((225, 225, 225), (170, 40, 40)))
    tall = PartSpec("backrest", (rect(-0.3, -0.5, 0.3, -0.04),), color_from="seat")
    return ObjectType(
        "chair",
        parts=(
            PartSpec("leg", (rect(-0.38, 0.08, -0.3, 0.5), rect(0.3, 0.08, 0.38, 0.5)), color_from="seat", shade=0.8),
            tall,
            PartSpec("seat", (poly((-0.34, -0.06), (0.34, -0.06), (0.42, 0.1), (-0.42, 0.1)),), **wood),
        ),
        differs_in="backrest",
        property="shape",
        subtypes=(
            Subtype("tall_back", tall),
            Subtype("low_back", PartSpec("backrest", (rect(-0.3, -0.24, 0.3, -0.04),), color_from="seat")),
            Subtype("round_back", PartSpec("backrest", (ellipse(0.0, -0.27, 0.3, 0.23),), color_from="seat")),
            Subtype("ladder_back", PartSpec("backrest", (rect(-0.3, -0.5, 0.3, -0.04),), color_from="seat",
                                            pattern="hstripes", pattern_freq=8.0)),
        ),
        scenes=("kitchen-s", "bedroom-s", "living_room-s", "office-s", "garage-s"),
    )


def _lamp() -> ObjectType:
    shade = dict(colors=((240, 230, 200), (220, 200, 140), (200, 60, 50), (60, 90, 150)))
    cone = PartSpec("shade", (poly((-0.14, -0.46), (0.14, -0.46), (0.32, -0.14), (-0.32, -0.14)),), **shade)
    return ObjectType(
        "lamp",
        parts=(
            PartSpec("pole", (rect(-0.03, -0.2, 0.03, 0.42),), ((60, 60, 60), (170, 150, 80), (30, 30, 30))),
            PartSpec("base", (poly((-0.1, 0.38), (0.1, 0.38), (0.2, 0.5), (-0.2, 0.5)),), color_from="pole"),
            cone,
        ),
        differs_in="shade",
        property="shape",
        subtypes=(
            Subtype("empire", cone),
            Subtype("drum", PartSpec("shade", (rect(-0.24, -0.46, 0.24, -0.14),), **shade)),
            Subtype("globe", PartSpec("shade", (ellipse(0.0, -0.3, 0.2, 0.2),), **shade)),
            Subtype("bell", PartSpec("shade", (arc(0.0, -0.12, 0.32, 0.34, 180, 360),), **shade)),
        ),
        scenes=("bedroom-s", "living_room-s", "office-s", "street-s", "bathroom-s"),
    )


OBJECT_TYPES: tuple[ObjectType, ...] = (
    _house(), _car(), _boat(), _fish(), _bird(), _tree(), _flower(), _mushroom(), _chair(), _lamp(),
)

#: Image-level texture tiles (DTD-like); each name is a key of kdinterp.world.patterns.TEXTURE_PATTERNS.
TEXTURES: tuple[str, ...] = (
    "striped", "dotted", "chequered", "zigzagged", "grid", "wavy", "crosshatched", "honeycombed", "spiralled", "bubbly",
)
