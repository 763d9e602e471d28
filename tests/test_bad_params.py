"""Malformed params files, generated from the tiny study's valid one (issue 16, Hypothesis).

Every generated file is given to the real ``kdinterp`` CLI (in-process, Typer's runner) as
``kdinterp evaluate teacher --params FILE``, and the CLI's rule must hold: exit status 1, exactly one
line ``error: ...`` naming the file and (except for broken YAML) the dotted key, no traceback, and
nothing written. The classes of bad input (one test each, a fixed number of derandomised examples):
wrong types, out-of-range numbers (read from the schema's :func:`kdinterp.core.config.ranged` fields,
the one owner of the ranges), non-finite numbers, missing required keys, unknown keys, truncated YAML.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from kdinterp.cli import app
from kdinterp.core.config import Range
from kdinterp.core.params import Params
from kdinterp.measures.registry import parse_params
from tests.tiny_study import tiny_params

VALID = json.loads(json.dumps(tiny_params()))  # no shared sub-mappings (YAML aliases): a mutation changes one key
SETTINGS = dict(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@dataclasses.dataclass(frozen=True)
class Slot:
    """A field of a params dataclass at a place in the file: its dotted path, annotation and dataclass field."""

    path: tuple[str | int, ...]
    tp: Any
    field: dataclasses.Field

    @property
    def key(self) -> str:
        return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(self.path))

    @property
    def span(self) -> Range | None:
        return self.field.metadata.get("range")


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return inner[0] if len(inner) == 1 else tp
    return tp


def _walk(cls: type, raw: dict, path: tuple = ()) -> tuple[list[Slot], list[tuple]]:
    """Every field of every dataclass in ``raw`` (present or not) and the paths of the dataclass mappings."""
    slots, mappings = [], [path]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        slots.append(Slot((*path, f.name), tp, f))
        inner, value = _unwrap(tp), raw.get(f.name)
        if dataclasses.is_dataclass(inner) and isinstance(value, dict):
            more = _walk(inner, value, (*path, f.name))
        elif typing.get_origin(inner) is dict and dataclasses.is_dataclass(typing.get_args(inner)[1]):
            parts = [_walk(typing.get_args(inner)[1], v, (*path, f.name, k)) for k, v in (value or {}).items()]
            more = ([s for p in parts for s in p[0]], [m for p in parts for m in p[1]])
        else:
            continue
        slots += more[0]
        mappings += more[1]
    return slots, mappings


SLOTS, MAPPINGS = _walk(Params, VALID)


def _get(raw: dict, path: tuple) -> Any:
    for p in path:
        raw = raw[p]
    return raw


def _present(slot: Slot) -> bool:
    try:
        _get(VALID, slot.path)
    except (KeyError, IndexError):
        return False
    return True


def _kind(tp: Any) -> str:
    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    if tp in (int, float):
        return "number"
    if origin is tuple:
        return "list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "mapping"
    if tp is bool:
        return "bool"
    return "any" if tp is Any else "text"  # str and Literal


def _element_type(tp: Any) -> Any:
    tp = _unwrap(tp)
    return typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else tp


def _number_slots(kind: type) -> list[Slot]:
    """Present slots whose value (or list element) is a ``kind`` (int or float)."""
    return [s for s in SLOTS if _present(s) and _element_type(s.tp) is kind and _get(VALID, s.path) is not None]


# --------------------------------------------------------------------------- the rule


def _refused(raw: Any, tmp_path: Path, key: str | None, *, text: str | None = None) -> None:
    """Run the CLI on ``raw`` (or the YAML ``text``) and assert the rule; ``key``: the dotted key to be named."""
    case = tmp_path / "case"
    case.mkdir(exist_ok=True)
    params, outputs = case / "params.yaml", case / "outputs"
    params.write_text(text if text is not None else yaml.safe_dump(raw, sort_keys=False))
    result = CliRunner().invoke(app, ["evaluate", "teacher", "--params", str(params), "--outputs", str(outputs)])
    assert isinstance(result.exception, SystemExit), result.exc_info  # no traceback
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert str(params) in lines[0], lines[0]  # names the file
    if key is not None:
        assert f"{key}:" in lines[0] or f"{key}[" in lines[0], (key, lines[0])  # ... and the key
    assert not outputs.exists()  # nothing written


def _with(path: tuple, value: Any) -> dict:
    raw = copy.deepcopy(VALID)
    _get(raw, path[:-1])[path[-1]] = value
    return raw


def test_the_valid_file_is_valid() -> None:
    from kdinterp.core.study import check

    check(parse_params(VALID))


def test_every_number_in_the_schema_has_a_range() -> None:
    """Item 2 of issue 16: every int/float field (and list of them) declares its valid range."""
    schema = []
    todo = [Params]
    while todo:
        cls = todo.pop()
        for f in dataclasses.fields(cls):
            tp = _unwrap(typing.get_type_hints(cls)[f.name])
            args = [_unwrap(a) for a in typing.get_args(tp)]
            todo += [a for a in [tp, *args] if dataclasses.is_dataclass(a)]
            if _element_type(tp) in (int, float):
                schema.append((cls.__name__, f.name, f.metadata.get("range")))
    unranged = [(c, n) for c, n, r in schema if r is None]
    assert len(schema) > 40 and not unranged, unranged


@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_wrong_types(data: st.DataObject, tmp_path: Path) -> None:
    slot = data.draw(st.sampled_from([s for s in SLOTS if _present(s) and _kind(s.tp) != "any"]), "slot")
    kind = _kind(slot.tp)
    event(f"wrong type for a {kind}")
    wrong = {"number": ["abc", [1], {"a": 1}, True, "1e400"], "list": ["x", 3, {"a": 1}], "bool": ["yes", 1, [True]],
             "mapping": [3, "x", [1, 2]], "text": [7, [1], {"a": 1}, True]}[kind]
    if kind == "number" and _unwrap(slot.tp) is int:
        wrong = [*wrong, 2.5]
    _refused(_with(slot.path, data.draw(st.sampled_from(wrong), "value")), tmp_path, slot.key)


def _outside(span: Range, integer: bool) -> st.SearchStrategy:
    """Finite numbers outside ``span`` (integers for an int field)."""
    sides = []
    if span.low is not None:  # below: the bound itself if excluded, else the next integer or a hair below
        step = 1 if integer else max(1e-6, abs(span.low) * 1e-6)
        top = span.low if span.low_open else span.low - step
        sides.append(st.integers(int(top) - 10**6, int(top)) if integer else st.floats(top - 1e6, top))
    if span.high is not None:  # above, likewise
        step = 1 if integer else max(1e-6, abs(span.high) * 1e-6)
        low = span.high if span.high_open else span.high + step
        sides.append(st.integers(int(low), int(low) + 10**6) if integer else st.floats(low, low + 1e6))
    return st.one_of(sides)


@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_out_of_range_numbers(data: st.DataObject, tmp_path: Path) -> None:
    slots = [s for s in SLOTS if s.span is not None and s.span != Range()]
    slot = data.draw(st.sampled_from(slots), "slot")
    integer = _element_type(slot.tp) is int
    event(f"out of range: {'integer' if integer else 'number'} {slot.span}")
    value = data.draw(_outside(slot.span, integer), "value")
    present = _get(VALID, slot.path[:-1]).get(slot.path[-1]) if _present(slot) else None
    if typing.get_origin(_unwrap(slot.tp)) is tuple:  # one element of the list (a list of one if absent or empty)
        items = list(present or [value])
        index = data.draw(st.integers(0, len(items) - 1), "index")
        items[index] = value
        _refused(_with(slot.path, items), tmp_path, f"{slot.key}[{index}]")
    else:
        _refused(_with(slot.path, value), tmp_path, slot.key)


@settings(max_examples=30, **SETTINGS)
@given(data=st.data())
def test_non_finite_numbers(data: st.DataObject, tmp_path: Path) -> None:
    slot = data.draw(st.sampled_from(_number_slots(float) + _number_slots(int)), "slot")
    value = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]), "value")
    event(f"{value} for a {_element_type(slot.tp).__name__}")
    present = _get(VALID, slot.path)
    if isinstance(present, list):
        index = data.draw(st.integers(0, len(present) - 1), "index")
        _refused(_with((*slot.path, index), value), tmp_path, f"{slot.key}[{index}]")
    else:
        _refused(_with(slot.path, value), tmp_path, slot.key)


@settings(max_examples=20, **SETTINGS)
@given(data=st.data())
def test_missing_required_keys(data: st.DataObject, tmp_path: Path) -> None:
    required = [s for s in SLOTS if _present(s) and s.field.default is dataclasses.MISSING
                and s.field.default_factory is dataclasses.MISSING]
    slot = data.draw(st.sampled_from(required), "slot")
    event("missing required key")
    raw = copy.deepcopy(VALID)
    del _get(raw, slot.path[:-1])[slot.path[-1]]
    _refused(raw, tmp_path, slot.key)


@settings(max_examples=20, **SETTINGS)
@given(data=st.data())
def test_unknown_keys(data: st.DataObject, tmp_path: Path) -> None:
    where = data.draw(st.sampled_from(MAPPINGS), "where")
    known = set(_get(VALID, where)) | {s.path[-1] for s in SLOTS if s.path[:-1] == where}
    name = data.draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(lambda k: k not in known))
    event("unknown key")
    raw = copy.deepcopy(VALID)
    _get(raw, where)[name] = data.draw(st.sampled_from([0, 1.5, "x", None, [1], {}]), "value")
    _refused(raw, tmp_path, Slot((*where, name), Any, dataclasses.field()).key)


@settings(max_examples=25, **SETTINGS)
@given(data=st.data())
def test_truncated_yaml(data: st.DataObject, tmp_path: Path) -> None:
    text = yaml.safe_dump(VALID, sort_keys=False)
    cut = data.draw(st.integers(0, text.index("\ndissection:")), "cut")  # dissection (required) is cut off at least
    event("truncated YAML")
    _refused(None, tmp_path, None, text=text[:cut])


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    text = yaml.safe_dump(VALID, sort_keys=False).replace("seeds:\n", "seeds: [0, 1\n", 1)
    _refused(None, tmp_path, None, text=text)
