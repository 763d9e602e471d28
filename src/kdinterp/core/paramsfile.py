"""Reading a parameter file: bounded before it is parsed.

The one reader of ``params.yaml`` text (:func:`kdinterp.core.params.load_params` for the study,
:func:`kdinterp.world.params.load_world_params` for the world generator). Before the document is
built, three cheap checks refuse a hostile file within a fraction of a second: its size on disk
(:data:`MAX_PARAMS_BYTES`), its top-level keys (an unknown one stops the scan where it stands, before
whatever value follows it is read) and its node count (:data:`MAX_PARAMS_NODES`). The scan runs on
libyaml's event stream when PyYAML has it; the document itself is then built by ``yaml.safe_load``,
whose error messages (:func:`yaml_problem`) are the ones users see.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from kdinterp.core.config import ParamsError

__all__ = ["MAX_PARAMS_BYTES", "MAX_PARAMS_NODES", "read_params_file", "yaml_problem"]

#: The largest parameter file read, in bytes (the default ``params.yaml`` is about 15 kB).
MAX_PARAMS_BYTES = 1 << 20
#: The most YAML nodes (scalars, sequences, mappings) a parameter file may hold (the default has ~200).
MAX_PARAMS_NODES = 20_000

_FIX = "`git checkout params.yaml` for the default"


def read_params_file(path: str | Path, known: Collection[str] | None = None) -> Any:
    """The parsed YAML document of a parameter file, after the bounds of the module docstring.

    Args:
        path: the parameter file.
        known: the top-level keys the caller reads; ``None`` accepts any (the caller reads one section).

    Returns:
        The document as ``yaml.safe_load`` returns it (a mapping for a valid file; the caller checks).

    Raises:
        FileNotFoundError: the file does not exist.
        ParamsError: the file is larger than :data:`MAX_PARAMS_BYTES`, holds more than
            :data:`MAX_PARAMS_NODES` nodes, has a top-level key not in ``known``, is not UTF-8 or is
            not valid YAML; the message names the file (and the key) and the fix.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: parameter file not found (run from the repository root)")
    size = p.stat().st_size
    if size > MAX_PARAMS_BYTES:
        raise ParamsError(f"{p}: {size:,} bytes, more than a parameter file may hold ({MAX_PARAMS_BYTES:,}); "
                          f"it is not a params.yaml: pass the right file with --params, or {_FIX}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ParamsError(f"{p}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8, or {_FIX}") \
            from None
    _scan(p, text, known)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ParamsError(f"{p}: not valid YAML ({yaml_problem(err)}); fix the syntax there, or {_FIX}") from err


def _scan(path: Path, text: str, known: Collection[str] | None) -> None:
    """Refuse an unknown top-level key or too many nodes from the event stream; syntax is left to safe_load."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    depth = nodes = 0
    top_mapping = False
    top_nodes = 0  # nodes that start at depth 1: keys and values of the top-level mapping, alternating
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.NodeEvent):
                nodes += 1
                if nodes > MAX_PARAMS_NODES:
                    raise ParamsError(f"{path}: more than {MAX_PARAMS_NODES:,} YAML values, more than a parameter "
                                      f"file holds; remove the long lists (a params.yaml holds about 200), or {_FIX}")
                if depth == 0:
                    top_mapping = isinstance(event, yaml.MappingStartEvent)
                elif depth == 1 and top_mapping:
                    if top_nodes % 2 == 0 and known is not None and isinstance(event, yaml.ScalarEvent):
                        _check_key(path, event.value, known)
                    top_nodes += 1
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return  # a syntax error: yaml.safe_load reports it with its line and column


def _check_key(path: Path, key: str, known: Collection[str]) -> None:
    if key not in known and key != "<<":  # << merges a mapping
        close = difflib.get_close_matches(key, list(known), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
        raise ParamsError(f"{path}: {key}: unknown key ({hint}); remove or rename it")


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML parse error on one line: the problem and where (``line 3, column 5: ...``)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = " ".join(str(getattr(err, "problem", None) or err).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem
