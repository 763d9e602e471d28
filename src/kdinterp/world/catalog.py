"""Global concept numbering (Broden label numbers) and the classification classes.

Concepts are numbered 1..L in Broden's category order (color, object, part, material, scene,
texture) and, inside a category, in vocabulary order. The numbering depends only on the
vocabulary, never on the parameters: the probe set always covers the whole vocabulary, while the
parameters choose which object types and subtypes become classification classes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from kdinterp.core.params import WorldParams
from kdinterp.world.colors import COLOR_NAMES
from kdinterp.world.specs import ObjectType, Subtype
from kdinterp.world.vocabulary import MATERIALS, OBJECT_TYPES, SCENES, TEXTURES

__all__ = ["BRODEN_ORDER", "Concept", "WorldClass", "Catalog", "build_catalog", "concepts"]

#: The categories of :data:`kdinterp.core.params.CATEGORIES` in Broden's file order (category.csv, label
#: numbering, index.csv columns); the paper lists them in another order.
BRODEN_ORDER: tuple[str, ...] = ("color", "object", "part", "material", "scene", "texture")


@dataclass(frozen=True)
class Concept:
    """One Broden label: global number (1..L), unique name, category."""

    number: int
    name: str
    category: str


@dataclass(frozen=True)
class WorldClass:
    """A classification class: one subtype of one object type."""

    index: int
    name: str  # "<object_type>_<subtype>"; sorted names = class indices (ImageFolder order)
    object_type: ObjectType
    subtype: Subtype


@dataclass(frozen=True)
class Catalog:
    """The concepts and classes of one world."""

    concepts: tuple[Concept, ...]
    classes: tuple[WorldClass, ...]

    @functools.cached_property
    def number(self) -> dict[str, int]:
        """Concept name -> global label number."""
        return {c.name: c.number for c in self.concepts}

    def in_category(self, category: str) -> tuple[Concept, ...]:
        """The concepts of one category, in number order."""
        return tuple(c for c in self.concepts if c.category == category)


def _part_names() -> list[str]:
    return list(dict.fromkeys(p for t in OBJECT_TYPES for p in t.part_names))


@functools.cache
def concepts() -> tuple[Concept, ...]:
    """Every concept of the vocabulary, numbered 1..L in Broden category order.

    Raises:
        ValueError: two concepts share a name (names must be unique across categories).
    """
    names = {
        "color": list(COLOR_NAMES),
        "object": [t.name for t in OBJECT_TYPES],
        "part": _part_names(),
        "material": [m.name for m in MATERIALS],
        "scene": [s.name for s in SCENES],
        "texture": list(TEXTURES),
    }
    flat = [(name, cat) for cat in BRODEN_ORDER for name in names[cat]]
    seen = [n for n, _ in flat]
    duplicates = sorted({n for n in seen if seen.count(n) > 1})
    if duplicates:
        raise ValueError(f"concept names must be unique across categories; duplicated: {duplicates}")
    return tuple(Concept(i + 1, name, cat) for i, (name, cat) in enumerate(flat))


def _classes(params: WorldParams) -> tuple[WorldClass, ...]:
    pairs = [(t, s) for t in OBJECT_TYPES[: params.object_types] for s in t.subtypes[: params.subtypes_per_type]]
    pairs.sort(key=lambda ts: f"{ts[0].name}_{ts[1].name}")
    return tuple(WorldClass(i, f"{t.name}_{s.name}", t, s) for i, (t, s) in enumerate(pairs))


@functools.cache
def build_catalog(params: WorldParams) -> Catalog:
    """The concepts and the classification classes for ``params``.

    Classes are the first ``params.subtypes_per_type`` subtypes of the first
    ``params.object_types`` object types, indexed in sorted-name order (as ImageFolder sorts).
    """
    return Catalog(concepts(), _classes(params))
