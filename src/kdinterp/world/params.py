"""Parameters of the concept world (the ``world:`` section of ``params.yaml``)."""

from __future__ import annotations

from pathlib import Path

from kdinterp.core.config import ParamsError, from_mapping
from kdinterp.core.paramsfile import read_params_file
from kdinterp.core.params import WorldParams
from kdinterp.world.vocabulary import OBJECT_TYPES

__all__ = ["check_vocabulary", "load_world_params"]


def check_vocabulary(self: WorldParams) -> WorldParams:
    """``object_types`` and ``subtypes_per_type`` against the vocabulary; returns ``self``.

    Raises:
        ParamsError: a count exceeds what the vocabulary has.
    """
    names = ", ".join(t.name for t in OBJECT_TYPES)
    if not 1 <= self.object_types <= len(OBJECT_TYPES):
        raise ParamsError(f"object_types must be in 1..{len(OBJECT_TYPES)} (the vocabulary has "
                          f"{len(OBJECT_TYPES)} object types: {names}), got {self.object_types}")
    most = min(len(t.subtypes) for t in OBJECT_TYPES)
    if not 2 <= self.subtypes_per_type <= most:
        raise ParamsError(f"subtypes_per_type must be in 2..{most} (every object type has {most} subtypes "
                          f"in the vocabulary), got {self.subtypes_per_type}")
    return self


def load_world_params(path: str | Path = "params.yaml") -> WorldParams:
    """Read only the ``world:`` section of a parameter file.

    Args:
        path: a YAML file with a top-level ``world:`` mapping.

    Returns:
        The validated :class:`WorldParams`.

    Raises:
        FileNotFoundError: the file does not exist.
        ParamsError: too large or not valid YAML (:func:`kdinterp.core.paramsfile.read_params_file`), no
            ``world:`` section, or a bad key or value (the message names the file and the dotted key).
    """
    p = Path(path)
    raw = read_params_file(p)
    if not isinstance(raw, dict) or "world" not in raw:
        raise ParamsError(f"{p}: no 'world:' section; add one (the repository's params.yaml has the default)")
    try:
        return check_vocabulary(from_mapping(WorldParams, raw["world"], "world"))
    except ParamsError as err:
        raise ParamsError(f"{p}: {err}") from None
