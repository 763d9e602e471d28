"""Frozen dataclasses stored as JSON files: one record type per summary file, for its writer and every reader.

A measure's summary (``dissection/<key>/summary.json``, ``evaluation/<key>/metrics.json`` ...) is
declared once, as a frozen dataclass deriving from :class:`Record`. The stage that measures writes
it with :meth:`Record.write`; stage ``figures``, the report, the validators and the tests read it
with :meth:`Record.read`, which checks every key and type with the same strict conversion as
``params.yaml`` (:func:`kdinterp.core.config.from_mapping`). A file written by older code (a key
missing or unknown) is refused with the file, the problem and the stage that rewrites it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Self

from kdinterp.core.config import ParamsError, from_mapping
from kdinterp.core.errors import KdinterpError
from kdinterp.core.io import read_json, write_json

__all__ = ["Record", "StaleOutputError", "require_input"]


class StaleOutputError(KdinterpError, ValueError):
    """An output file of a stage does not hold what this code expects (written by other code or params)."""


def require_input(path: Path, stage: str, consumer: str) -> Path:
    """``path`` if it is a file.

    Raises:
        FileNotFoundError: it is missing; the message names ``stage``, which writes it, and how to
            run it (``consumer`` is the stage that needs it).
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing input of stage {consumer}; it is written by stage {stage} "
                                f"(run `dvc repro -s {stage}`, or `dvc repro` for everything)")
    return path


def _plain(value: Any) -> Any:
    """``value`` with every tuple turned into a list, recursively (what ``json.loads`` gives back)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class Record:
    """Mixin for a frozen dataclass that is written as one JSON file (key-sorted, 2-space indent).

    Field types are those :func:`kdinterp.core.config.from_mapping` converts (numbers, strings,
    booleans, ``X | None``, tuples, ``dict[str, X]``, nested records).
    """

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON values (nested records and tuples become objects and lists)."""
        return _plain(dataclasses.asdict(self))  # type: ignore[call-overload]

    def write(self, path: Path) -> None:
        """Write the record to ``path`` atomically (:func:`kdinterp.core.io.write_json`)."""
        write_json(path, self.to_json())

    @classmethod
    def from_json(cls, data: Any, where: str, stage: str) -> Self:
        """Convert parsed JSON into the record.

        Args:
            data: the parsed JSON object.
            where: the file it came from, for messages.
            stage: the DVC stage that writes it, for the fix.

        Raises:
            StaleOutputError: a key is missing or unknown, or a value has the wrong type.
        """
        try:
            return from_mapping(cls, data, "")
        except ParamsError as err:
            raise StaleOutputError(f"{where}: {err.detail if err.key is None else err}; the file was written by "
                                   f"other code or params: rerun `dvc repro -f -s {stage}`") from None

    @classmethod
    def read(cls, path: Path, stage: str, consumer: str = "figures") -> Self:
        """Read the record from ``path``.

        Raises:
            FileNotFoundError: the file is missing (the message names ``stage``).
            StaleOutputError: it is not valid JSON, or does not hold this record.
        """
        require_input(path, stage, consumer)
        try:
            data = read_json(path)
        except ValueError as err:
            raise StaleOutputError(f"{err}; or rerun `dvc repro -f -s {stage}`") from None
        return cls.from_json(data, str(path), stage)
