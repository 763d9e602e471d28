"""Ground-truth saliency of classification images: where the class object is, and where it differs.

Every classification image ``train/<class>/<stem>.png`` (and ``val/...``) has a saliency map
``saliency/train/<class>/<stem>.png``, outside the ImageFolder trees (ImageFolder would read extra
PNGs as training images). The map is an RGB PNG of the image's size:

* **R = 255** on the *object region*: the pixels where the class object is visible (its label in
  the object map), else 0. Distractors drawn behind it are not part of it; pixels hidden by an
  occluder in front of it are not part of it either.
* **G = 255** on the *discriminative region*: the visible pixels of the object's ``differs_in``
  part (the part whose shape, proportion, colour or texture tells its subtypes apart, see
  ``world.json`` ``classes[].differs_in``), else 0. It is a subset of the object region (parts of
  other objects never count, even where they share the part's name).
* **B = 0** everywhere.

So a pixel reads (0, 0, 0) background, (255, 0, 0) object but not discriminative, (255, 255, 0)
discriminative. Like the Broden masks, the maps are sampled from the supersampled label maps at
one sub-pixel per image pixel (nearest), so at object edges a pixel that the object covers only
partly may fall either way.

Emptiness rule: the object region is never empty (an occluder is at most 0.45 of the object's
size and sits on its edge). The discriminative region is non-empty in every image without an
occluder; an occluder (``occlusion_prob``) may hide the part completely, and then G is 0
everywhere.
"""

from __future__ import annotations

import numpy as np

from kdinterp.world.catalog import WorldClass

__all__ = ["SALIENCY_DIR", "SALIENCY_ENCODING", "decode_saliency", "encode_saliency", "saliency_masks"]

#: Directory of the saliency maps inside a generated world.
SALIENCY_DIR = "saliency"

#: The encoding, as recorded in ``world.json`` under ``saliency``.
SALIENCY_ENCODING: dict[str, str] = {
    "layout": "saliency/<split>/<class>/<stem>.png for the image <split>/<class>/<stem>.png (same size)",
    "format": "RGB PNG",
    "R": "255 on the object region: the visible pixels of the class object, else 0",
    "G": "255 on the discriminative region: the visible pixels of the object's differs_in part "
         "(a subset of R), else 0",
    "B": "0",
    "sampling": "nearest: one sub-pixel per image pixel of the supersampled label maps, as the Broden masks",
    "empty": "R is never empty; G is empty only when an occluder hides the differs_in part",
}


def saliency_masks(
    masks: dict[str, np.ndarray], cls: WorldClass, numbers: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Object and discriminative regions of a rendered classification image.

    Args:
        masks: the rendered ``object`` and ``part`` maps (global label numbers, (H, W)).
        cls: the image's class.
        numbers: concept name -> global label number.

    Returns:
        Two bool arrays (H, W): the object region and the discriminative region (a subset of it).
        Clutter objects are always of another type, so the class object is the only one with its
        object label.
    """
    obj = masks["object"] == numbers[cls.object_type.name]
    discriminative = obj & (masks["part"] == numbers[cls.object_type.differs_in])
    return obj, discriminative


def encode_saliency(obj: np.ndarray, discriminative: np.ndarray) -> np.ndarray:
    """Two bool (H, W) regions -> (H, W, 3) uint8: R = 255 object, G = 255 discriminative, B = 0.

    Raises:
        ValueError: the discriminative region is not inside the object region.
    """
    if (discriminative & ~obj).any():
        raise ValueError("the discriminative region must lie inside the object region")
    out = np.zeros((*obj.shape, 3), dtype=np.uint8)
    out[..., 0] = np.where(obj, 255, 0)
    out[..., 1] = np.where(discriminative, 255, 0)
    return out


def decode_saliency(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A saliency map (H, W, 3) uint8 -> (object, discriminative) bool arrays (channel value > 127)."""
    return rgb[..., 0] > 127, rgb[..., 1] > 127
