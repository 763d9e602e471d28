"""Parameters of the concept world (the ``world:`` section of ``params.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from kdinterp.config import ParamsError, from_mapping
from kdinterp.world.vocabulary import OBJECT_TYPES

__all__ = ["WorldParams", "load_world_params"]


@dataclass(frozen=True)
class WorldParams:
    """How the concept world is generated; recorded verbatim in ``world.json``.

    Sizes are in pixels (square images); counts are numbers of images; probabilities and
    fractions are in [0, 1].
    """

    seed: int = 0
    image_size: int = 32
    probe_image_size: int = 64
    train_per_class: int = 200
    val_per_class: int = 50
    probe_images: int = 1500
    object_types: int = 8  # object types that become classes: the first N of the vocabulary
    subtypes_per_type: int = 3  # classes per object type: its first N subtypes
    context: float = 0.8  # P(the background is one of the object type's usual scenes); else any scene
    distractor_prob: float = 0.3  # P(a smaller object of another type is drawn behind the class object)
    occlusion_prob: float = 0.2  # P(a small object of another type partly occludes the class object)
    object_scale: tuple[float, float] = (0.5, 0.85)  # object span in classification images, share of the side
    max_rotation: float = 15.0  # objects are rotated uniformly in +-max_rotation degrees
    subtype_similarity: float = 0.0  # 0: subtypes as designed; 1: a type's subtypes look identical
    color_jitter: float = 0.15  # max relative change of brightness, contrast and saturation per image
    noise: float = 0.03  # std of Gaussian pixel noise, as a share of 255
    texture_fraction: float = 0.2  # share of probe images that are texture tiles
    closeup_fraction: float = 0.4  # share of probe images that are object close-ups (the rest are scenes)
    max_probe_objects: int = 3  # probe scenes hold 1..max_probe_objects objects
    supersample: int = 2  # render at N x the size, then average N x N blocks (anti-aliasing)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ParamsError(f"seed must be >= 0, got {self.seed}")
        for name in ("image_size", "probe_image_size"):
            if getattr(self, name) < 16:
                raise ParamsError(f"{name} must be >= 16 pixels, got {getattr(self, name)}")
        for name in ("train_per_class", "val_per_class", "probe_images", "max_probe_objects", "supersample"):
            if getattr(self, name) < 1:
                raise ParamsError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("context", "distractor_prob", "occlusion_prob", "subtype_similarity", "color_jitter",
                     "noise", "texture_fraction", "closeup_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ParamsError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        self._check_classes()
        self._check_geometry()

    def _check_classes(self) -> None:
        names = ", ".join(t.name for t in OBJECT_TYPES)
        if not 1 <= self.object_types <= len(OBJECT_TYPES):
            raise ParamsError(f"object_types must be in 1..{len(OBJECT_TYPES)} (the vocabulary has "
                              f"{len(OBJECT_TYPES)} object types: {names}), got {self.object_types}")
        most = min(len(t.subtypes) for t in OBJECT_TYPES)
        if not 2 <= self.subtypes_per_type <= most:
            raise ParamsError(f"subtypes_per_type must be in 2..{most} (every object type has {most} subtypes "
                              f"in the vocabulary), got {self.subtypes_per_type}")

    def _check_geometry(self) -> None:
        low, high = self.object_scale
        if not 0.1 <= low <= high <= 1.0:
            raise ParamsError(f"object_scale must be [low, high] with 0.1 <= low <= high <= 1, got {self.object_scale}")
        if not 0.0 <= self.max_rotation <= 180.0:
            raise ParamsError(f"max_rotation must be in [0, 180] degrees, got {self.max_rotation}")
        if self.texture_fraction + self.closeup_fraction >= 1.0:
            raise ParamsError(f"texture_fraction + closeup_fraction must be < 1 (the probe set needs scene images), "
                              f"got {self.texture_fraction} + {self.closeup_fraction}")


def load_world_params(path: str | Path = "params.yaml") -> WorldParams:
    """Read only the ``world:`` section of a parameter file.

    Args:
        path: a YAML file with a top-level ``world:`` mapping.

    Returns:
        The validated :class:`WorldParams`.

    Raises:
        FileNotFoundError: the file does not exist.
        ParamsError: not valid YAML, no ``world:`` section, or a bad key or value (the message
            names the file and the dotted key).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: parameter file not found (run from the repository root)")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{p}: not valid YAML: {err}") from err
    if not isinstance(raw, dict) or "world" not in raw:
        raise ParamsError(f"{p}: no 'world:' section")
    try:
        return from_mapping(WorldParams, raw["world"], "world")
    except ParamsError as err:
        raise ParamsError(f"{p}: {err}") from None
