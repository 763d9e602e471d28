"""Profiles: named overlays of ``params.yaml`` that hold only the keys they change.

``profiles/<name>.yaml`` is a partial parameter file. :func:`apply_profile` merges it into
``params.yaml`` key by key (mappings recursively; any other value, lists included, replaces the
old one; a key the default lacks is added), keeps the file's comments and order (ruamel.yaml round
trip, the YAML library DVC itself uses), validates the result, and only then replaces the file.
``git checkout params.yaml`` goes back to the default.

A profile may start with ``include: [other, ...]``: those profiles (same folder) are merged first,
in order, so a shared piece (``ls_teacher``: the label-smoothed teacher) has one owner.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from kdinterp.core.config import ParamsError
from kdinterp.core.io import atomic_path

__all__ = ["apply_profile", "merge"]


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: comments, key order and flow style survive
    yaml.preserve_quotes = True
    yaml.width = 120
    return yaml


def merge(base: dict, overlay: dict, where: str = "") -> list[str]:
    """Merge ``overlay`` into ``base`` in place; return the dotted keys whose value changed or appeared.

    Raises:
        ParamsError: ``overlay`` replaces a mapping with a non-mapping or the reverse (a typo in a
            section name would otherwise silently drop the section).
    """
    changed = []
    for key, value in overlay.items():
        dotted = f"{where}.{key}" if where else str(key)
        old = base.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            changed += merge(old, value, dotted)
        elif isinstance(old, dict) != isinstance(value, dict) and key in base:
            raise ParamsError(f"{dotted}: the profile gives a {'mapping' if isinstance(value, dict) else 'value'} "
                              f"where params.yaml has a {'mapping' if isinstance(old, dict) else 'value'}")
        elif old != value or key not in base:
            base[key] = value
            changed.append(dotted)
    return changed


def apply_profile(profile: Path, params: Path) -> list[str]:
    """Merge ``profile`` into the parameter file ``params``, validate, and write it atomically.

    Args:
        profile: a partial parameter file (``profiles/<name>.yaml``).
        params: the parameter file to change (``params.yaml``).

    Returns:
        The dotted keys that changed.

    Raises:
        FileNotFoundError: either file is missing (the message lists the profiles).
        ParamsError: the merged file fails validation (nothing is written).
    """
    if not profile.is_file():
        known = ", ".join(sorted(p.stem for p in profile.parent.glob("*.yaml"))) or "none"
        raise FileNotFoundError(f"{profile}: no such profile (profiles: {known})")
    if not params.is_file():
        raise FileNotFoundError(f"{params}: parameter file not found (run from the repository root)")
    yaml = _yaml()
    base: Any = yaml.load(params.read_text(encoding="utf-8"))
    changed = []
    for overlay in _overlays(profile, yaml, ()):
        changed += merge(base, overlay)
    buffer = io.StringIO()
    yaml.dump(base, buffer)
    text = buffer.getvalue()
    _validate(text, profile)
    with atomic_path(params) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return changed


def _overlays(profile: Path, yaml: YAML, seen: tuple[Path, ...]) -> list[dict]:
    """``profile``'s included overlays (recursively, in order), then its own keys without ``include``.

    Raises:
        FileNotFoundError: an included profile is missing.
        ParamsError: the file is not a mapping, ``include`` is not a list of names, or includes loop.
    """
    if profile in seen:
        raise ParamsError(f"{profile}: profiles include each other in a loop ({' -> '.join(p.stem for p in seen)})")
    if not profile.is_file():
        raise FileNotFoundError(f"{profile}: no such profile (included by {seen[-1]})")
    overlay: Any = yaml.load(profile.read_text(encoding="utf-8")) or CommentedMap()
    if not isinstance(overlay, dict):
        raise ParamsError(f"{profile}: expected a mapping of params.yaml keys")
    includes = overlay.pop("include", [])
    if not isinstance(includes, list) or not all(isinstance(name, str) for name in includes):
        raise ParamsError(f"{profile}: include must be a list of profile names, e.g. include: [ls_teacher]")
    out = []
    for name in includes:
        out += _overlays(profile.parent / f"{name}.yaml", yaml, (*seen, profile))
    return [*out, overlay]


def _validate(text: str, profile: Path) -> None:
    """Load the merged text as params.yaml would be loaded; raise ParamsError naming the profile."""
    import tempfile

    from kdinterp.measures.registry import load_params

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_params(path)
        except ParamsError as err:
            raise ParamsError(f"{profile}: the merged parameters are invalid: "
                              f"{str(err).removeprefix(str(path) + ': ')}") from None
