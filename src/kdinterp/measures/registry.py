"""The registry of the study's measures, and the one way to read ``params.yaml`` with all their sections.

:data:`MEASURES` lists every measure once; the CLI makes one command per measure, the results
loader reads every measure's numbers per model, ``dvc.yaml`` has one stage family per measure
(checked by ``tests/test_study.py``), and :func:`load_params` parses every measure's section.
Adding a measure: a package under ``measures/`` whose face declares a
:class:`~kdinterp.measures.base.Measure`, its entry here, its section in ``params.yaml`` and its
stages in ``dvc.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdinterp.core import study
from kdinterp.core.params import Params, Section
from kdinterp.core.params import load_params as _load_params
from kdinterp.core.params import parse_params as _parse_params
from kdinterp.measures import diffroar, dissection, evaluation, saliency, similarity
from kdinterp.measures.base import Measure
from kdinterp.training import methods

__all__ = ["MEASURES", "SECTIONS", "by_name", "load_params", "parse_params", "stage_modules"]

#: Every measure, in the order the pipeline runs them and the reports show them.
MEASURES: tuple[Measure, ...] = (evaluation.MEASURE, dissection.MEASURE, saliency.MEASURE, diffroar.MEASURE,
                                 similarity.MEASURE)

#: The params sections the measures own: name -> :class:`~kdinterp.core.params.Section`.
SECTIONS: dict[str, Section] = {m.section: Section(m.schema, m.required, m.default)
                                for m in MEASURES if m.section is not None}


def by_name(name: str) -> Measure:
    """The measure called ``name``.

    Raises:
        KeyError: no such measure (the message lists them).
    """
    for measure in MEASURES:
        if measure.name == name:
            return measure
    raise KeyError(f"no measure '{name}'; measures: {', '.join(m.name for m in MEASURES)}")


def parse_params(raw: Any) -> Params:
    """Convert a parsed ``params.yaml`` mapping (every measure's section included) into :class:`Params`.

    Raises:
        ParamsError: an unknown, missing or malformed key (not the cross-checks of :func:`load_params`).
    """
    return _parse_params(raw, SECTIONS)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read ``params.yaml`` with every measure's section, and cross-check it against the study contract.

    Raises:
        FileNotFoundError: the file does not exist.
        ParamsError: a key is unknown, missing, of the wrong type or out of range, or a cross-reference
            (teacher, method, options, role, seeds) is broken; the message names the file and the dotted key.
    """
    from kdinterp.core.config import ParamsError

    params = _load_params(path, SECTIONS)
    try:
        study.check(params)
        methods.check(params)
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None
    return params


def stage_modules() -> dict[str, str]:
    """DVC stage family -> the module its command runs, whose import closure is the stage's code
    (``dvc.yaml`` src deps, checked by ``tests/test_study.py``; the training fingerprint)."""
    return {"validate_data": "kdinterp.stages.validate", "train": "kdinterp.stages.training",
            **{measure.stage: measure.module for measure in MEASURES},
            "validate": "kdinterp.stages.validate", "figures": "kdinterp.stages.figures",
            "report": "kdinterp.stages.report"}
