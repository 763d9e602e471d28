"""Strict conversion of plain YAML/JSON mappings into frozen dataclasses.

``params.yaml`` is plain YAML (DVC diffs and templates it), and every stage reads it through
typed, frozen dataclasses. This module does the conversion and refuses anything it does not
understand: an unknown key (a typo such as ``temprature``) or a renamed one fails loudly with the
dotted path and a suggestion, instead of silently falling back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from kdinterp.core.errors import KdinterpError

__all__ = ["ParamsError", "Range", "check_ranges", "from_mapping", "ranged", "require"]

T = TypeVar("T")


class ParamsError(KdinterpError, ValueError):
    """A parameter file does not match the schema; the message names the key and the fix.

    Args:
        message: what is wrong and the fix.
        key: the dotted key it concerns, relative to the dataclass that raised it (``"temperature"``);
            :func:`from_mapping` prefixes the path of that dataclass in the file (``"distilled.kd"``).
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key, self.detail = key, message

    def under(self, where: str) -> ParamsError:
        """The same error with ``where`` (a dotted path) in front of its key."""
        if self.key is None:
            return ParamsError(f"{where}: {self.detail}" if where else self.detail)
        return ParamsError(self.detail, _join(where, self.key))


def require(condition: bool, key: str, message: str) -> None:
    """Raise :class:`ParamsError` for ``key`` (a field name; the loader prefixes its path) unless ``condition``."""
    if not condition:
        raise ParamsError(message, key)


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric params field (of each element, for a list field); ``None``: unbounded.

    ``low_open``/``high_open``: the bound itself is excluded (``temperature > 0`` is ``Range(0, low_open=True)``).
    Every value must also be finite.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or self.low_open and value == self.low):
            return False
        return self.high is None or not (value > self.high or self.high_open and value == self.high)

    def __str__(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        return f"{'<' if self.high_open else '<='} {high}" if self.high is not None else "finite"


def _number(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def ranged(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field whose value (each element, for a tuple) must lie in a :class:`Range`; see :func:`check_ranges`.

    ``ge``/``gt``: the lower bound, inclusive/exclusive; ``le``/``lt``: the upper bound.
    """
    span = Range(gt if gt is not None else ge, lt if lt is not None else le, gt is not None, lt is not None)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"range": span})


def check_ranges(obj: Any) -> None:
    """Check every :func:`ranged` field of the dataclass instance ``obj`` (``None`` is allowed where typed so).

    Raises:
        ParamsError: the first value outside its range, keyed by the field name (``name[i]`` for an element).
    """
    for f in dataclasses.fields(obj):
        span = f.metadata.get("range")
        value = getattr(obj, f.name)
        if span is None or value is None:
            continue
        items = enumerate(value) if isinstance(value, tuple) else [(None, value)]
        for i, item in items:
            if item not in span:
                key = f.name if i is None else f"{f.name}[{i}]"
                kind = "an integer" if isinstance(item, int) else "a number"
                raise ParamsError(f"must be {span}, got {item!r}; set {kind} {span}", key)


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
        ParamsError: unknown or missing keys, a value of the wrong type, a non-finite number, or a
            value outside its :func:`ranged` range (or failing another ``__post_init__`` check). The
            message names the dotted key and, for an unknown key, the closest known one.
    """
    if not isinstance(data, dict):
        raise ParamsError(f"expected a mapping of keys to values, got {_show(data)}", where or None)
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
    except ParamsError as err:
        raise err.under(where) from None
    except (ValueError, TypeError) as err:
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
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float's range
            number = math.inf
        if not math.isfinite(number):
            raise ParamsError(f"{where}: expected a finite number, got {value!r}; write a number such as 0.5")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{where}: expected a string, got {_show(value)}")
        return value
    raise TypeError(f"{where}: unsupported annotation {tp!r} in the params schema")


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"
