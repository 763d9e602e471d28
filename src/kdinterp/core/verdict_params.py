"""Typed views of the params sections that say how results are judged: ``verdicts`` and ``instrument``.

Part of :class:`kdinterp.core.params.Params` (read and checked with the rest of ``params.yaml``);
kept here so that module stays small. ``verdicts`` holds the pre-registered equivalence margins of
the predictions (TOST, Schuirmann 1987); ``instrument`` the control ladder of the detector count
(:mod:`kdinterp.reporting.ladder`): which models play each rung and when a rung passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kdinterp.core.config import check_ranges, ranged, require

__all__ = ["InstrumentControls", "InstrumentCriteria", "InstrumentParams", "VerdictParams"]


@dataclass(frozen=True)
class VerdictParams:
    """How REPRODUCTION.md judges a prediction beyond its sign (:mod:`kdinterp.core.statistics`).

    ``equivalence_margin``: prediction id (``P2`` ...) -> the margin delta of its paired differences,
    as a share of the dissected layer's units, so it is only defined for detector counts. A
    difference whose 90% t-interval lies inside ``(-delta, +delta)`` is *equivalent* (TOST,
    Schuirmann 1987) unless its 95% interval excludes 0. A prediction without a margin is never
    *equivalent*. Which ids exist and which compare detector counts is checked against the
    predictions table when they are judged (:func:`kdinterp.reporting.predictions.check_predictions`).
    ``power``: the power REPRODUCTION.md sizes the seeds for, to detect a difference of each margin
    and to show equivalence within it (:mod:`kdinterp.core.power`).
    """

    equivalence_margin: dict[str, float] = field(default_factory=dict)
    power: float = ranged(0.8, gt=0, lt=1)

    def __post_init__(self) -> None:
        check_ranges(self)
        for pid, share in self.equivalence_margin.items():
            require(0 < share <= 1, f"equivalence_margin.{pid}",
                    f"must be a share of units in (0, 1], got {share}; e.g. 0.036 for 3.6% of the units")


@dataclass(frozen=True)
class InstrumentControls:
    """The models of the control ladder, by name (params ``controls``, ``students`` ...).

    A name may be null (that rung is not run) or name a model the run lacks: its criterion then
    reads *missing*. ``untrained``: the recipe's initialisation, never trained (``controls``);
    ``untrained_bn``: the same with its batch-norm statistics re-estimated on data, a second floor;
    ``shuffled``: a student trained on shuffled labels (Adebayo et al., NeurIPS 2018, data
    randomisation); ``snapshots``: the scratch student's recipe saved part-way through training, in
    order of epoch (the chain ``untrained < snapshots... < scratch`` must rise).
    """

    untrained: str | None = None
    untrained_bn: str | None = None
    shuffled: str | None = None
    snapshots: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstrumentCriteria:
    """The ladder's pre-registered pass criteria (:mod:`kdinterp.reporting.ladder`).

    ``untrained_max_share``: the untrained floor's mean endpoint must be at most this share of the
    scratch student's mean (and scratch minus untrained above 0 by its paired 95% interval).
    ``confidence``: of every paired interval of the ladder.
    """

    untrained_max_share: float = ranged(ge=0, le=1)
    confidence: float = ranged(0.95, gt=0, lt=1)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class InstrumentParams:
    """The control ladder of the detector count: is it an instrument that measures what training taught?

    ``endpoint``: the per-model, per-seed number the ladder judges, a key of
    :data:`kdinterp.reporting.quantities.QUANTITIES` (checked when the ladder is built);
    ``controls``: which models play each rung; ``criteria``: when a rung passes. When a criterion
    fails, REPRODUCTION.md reports the detector predictions as not judged. ``frozen_commit``: the
    git commit that froze the design, the endpoint and the margins before the first KD or LS run on
    them (docs/instrument.md); REPRODUCTION.md names it (None: not frozen, and it says so).
    """

    endpoint: str
    controls: InstrumentControls
    criteria: InstrumentCriteria
    frozen_commit: str | None = None

    def __post_init__(self) -> None:
        require(bool(self.endpoint.strip()), "endpoint", "name a quantity, e.g. calibrated_primary")
