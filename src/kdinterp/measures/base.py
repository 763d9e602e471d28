"""What a measure declares: :class:`Measure` and its :class:`Output` files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdinterp.core.records import StaleOutputError
from kdinterp.core.study import GROUPS, Layout, Model

__all__ = ["ALL_GROUPS", "Measure", "Output"]

#: Every params section of models (teachers, students, distilled, self-distilled, controls).
ALL_GROUPS: tuple[str, ...] = tuple(group.section for group in GROUPS)


@dataclass(frozen=True)
class Output:
    """One file a measure writes per model (or once, for a study-wide measure).

    Attributes:
        name: the file name inside the measure's folder (``outputs/<measure>/<key>/<name>``).
        cache: True: DVC-cached and pushed to the remote (git-ignored); False: small, committed to git.
            No measure output is a DVC ``metrics`` output: the study's metrics are the headline
            numbers per model (:mod:`kdinterp.reporting.headline`, written by stage ``figures``).
        description: what it holds, for dvc.yaml readers and the README.
    """

    name: str
    cache: bool = True
    description: str = ""


@dataclass(frozen=True)
class Measure:
    """A measurement of the study, declared once by its package (:mod:`kdinterp.measures`).

    Attributes:
        name: its key in the registry and its folder under ``outputs/``.
        stage: its DVC stage family and ``kdinterp`` command: stage ``<stage>_<group kind>@<key>``
            (``dissect_student@scratch-0``) runs ``kdinterp <stage> <key>``; a study-wide measure
            is the one stage ``<stage>``.
        help: one line for ``kdinterp --help``.
        outputs: the files it writes (per model, or once when not :attr:`per_model`).
        run: measures one model, ``run(params, model, layout) -> record`` (study-wide:
            ``run(params, layout)``), writing :attr:`outputs` atomically.
        read: the numbers one model's outputs hold, ``read(params, layout, model)`` (the record of its
            summary, or a richer result); None for a model the measure does not apply to.
        module: the module ``run`` imports; its import closure is the stage's code (``dvc.yaml`` deps).
        section: the ``params.yaml`` section it reads (None: none of its own).
        schema: that section's frozen dataclass.
        required: the section must be present; else a missing (or null) section reads as ``default``.
        default: that value (None: the measure is off, e.g. ``saliency: null``).
        groups: the params sections of the models it measures.
        per_model: one stage per model (True) or one stage for the study (False).
    """

    name: str
    stage: str
    help: str
    outputs: tuple[Output, ...]
    run: Callable[..., Any]
    read: Callable[..., Any]
    module: str
    section: str | None = None
    schema: type | None = None
    required: bool = True
    default: Any = None
    groups: tuple[str, ...] = ALL_GROUPS
    per_model: bool = True

    def applies(self, model: Model) -> bool:
        """Whether this measure has a stage for ``model`` (its group is one of :attr:`groups`)."""
        return model.group.section in self.groups

    def path(self, layout: Layout, model: Model | None, output: Output | str) -> Path:
        """Where ``output`` (an :class:`Output` or its name) of ``model`` lives (``model`` None: study-wide)."""
        name = output.name if isinstance(output, Output) else output
        return layout.measure(self.name, model if self.per_model else None, name)

    def stage_of(self, model: Model | None) -> str:
        """The DVC stage that writes ``model``'s outputs (``dissect_student@scratch-0``; ``similarity``)."""
        return model.stage(self.stage) if self.per_model and model is not None else self.stage

    def check_seed(self, layout: Layout, model: Model, output: Output, seed: int | None) -> None:
        """Refuse an output of ``model`` that records another ``seed`` (a stale file).

        Raises:
            StaleOutputError: the message names the file and the stage to rerun.
        """
        if seed != model.seed:
            raise StaleOutputError(f"{self.path(layout, model, output)}: seed {seed} differs from {model.key}'s seed "
                                   f"{model.seed} (stale output); rerun `dvc repro -s {self.stage_of(model)}`")
