"""Strict conversion of plain YAML/JSON mappings into frozen dataclasses.

``params.yaml`` is plain YAML (DVC diffs and templates it), and every stage reads it through
typed, frozen dataclasses. This module does the conversion and refuses anything it does not
understand: an unknown key (a typo such as ``temprature``) or a renamed one fails loudly with the
dotted path and a suggestion, instead of silently falling back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, TypeVar

__all__ = ["ParamsError", "from_mapping"]

T = TypeVar("T")


class ParamsError(ValueError):
    """A parameter file does not match the schema; the message names the key and the fix."""


def from_mapping(cls: type[T], data: Any, where: str) -> T:
    """Build the frozen dataclass ``cls`` from the mapping ``data``.

    Args:
        cls: a dataclass whose fields are annotated with ``int``, ``float``, ``str``, ``bool``,
            ``Literal[...]``, ``X | None``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``dict[str, X]``,
            ``Any`` (passed through unchecked, for settings a consumer validates) or another such
            dataclass.
        data: the parsed YAML mapping.
        where: the dotted path of ``data`` in its file, used in error messages (``"students.kd"``).

    Returns:
        An instance of ``cls``; the dataclass's own ``__post_init__`` checks run as usual.

    Raises:
        ParamsError: unknown or missing keys, or a value of the wrong type. The message names the
            dotted key and, for an unknown key, the closest known one.
    """
    if not isinstance(data, dict):
        raise ParamsError(f"{where}: expected a mapping of keys to values, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(fields)})"
        raise ParamsError(f"{_join(where, key)}: unknown key{hint}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _convert(hints[name], data[name], _join(where, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{_join(where, name)}: required key is missing")
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        if isinstance(err, ParamsError):
            raise
        raise ParamsError(f"{where}: {err}") from err


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:  # free-form settings, validated by their consumer (e.g. a method's options)
        return value
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where) if len(inner) == 1 else value
    if origin is Literal:
        if value not in args:
            raise ParamsError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{where}: expected a list, got {_show(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ParamsError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping, got {_show(value)}")
        return {str(k): _convert(args[1], v, _join(where, k)) for k, v in value.items()}
    return _scalar(tp, value, where)


def _scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{where}: expected true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{where}: expected an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamsError(f"{where}: expected a number, got {_show(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{where}: expected a string, got {_show(value)}")
        return value
    raise TypeError(f"{where}: unsupported annotation {tp!r} in the params schema")


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"
