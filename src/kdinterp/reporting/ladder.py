"""The control ladder: does the detector count measure what training taught, before any prediction reads it?

Each rung compares the endpoint (``params.instrument.endpoint``, a quantity of
:data:`kdinterp.reporting.quantities.QUANTITIES`: one number per model and seed) between models
whose answer is known in advance; the models are named in ``params.instrument.controls``, the
criteria in ``params.instrument.criteria``, both fixed before any result:

* **Untrained floor** (Bau et al., CVPR 2017, §3.2, dissect randomly initialised networks): the
  untrained model's mean is at most ``untrained_max_share`` of the scratch student's mean, and
  scratch minus untrained is above 0 by its paired interval. Checked for each untrained variant
  named (``untrained``, ``untrained_bn``).
* **Shuffled labels** (Adebayo et al., *Sanity Checks for Saliency Maps*, NeurIPS 2018, data
  randomisation test): a student trained on shuffled labels learns no class concepts, so scratch
  minus shuffled is above 0 by its paired interval.
* **Rotated basis** (Bau et al. 2017, §3.2): the layer output times a random orthogonal matrix keeps
  what the layer represents but mixes its units; if detectors are axis-aligned, unit basis minus
  rotated basis is above 0, for the scratch student (paired interval) and for the teacher (one
  model: on its value). Read from the endpoint's rotated-basis twin (``<endpoint>_rotated``, e.g.
  the calibrated count of ``summary.json`` ``calibrated_rotated``) when it exists, else from
  ``sensitivity.csv`` (the fixed-threshold counts at the params' quantile and IoU threshold).
* **Training**: the count rises along training (untrained, the snapshots in epoch order, scratch):
  scratch minus untrained is above 0 by its paired interval, and no adjacent step falls (no
  step's interval lies below 0); a flat step is allowed, as the count plateaus when training
  converges (docs/instrument.md §3).

Each rung gives a :class:`Criterion`: pass, fail or missing (a model the run lacks, a rung left null
in params, or an endpoint the model's outputs do not have). The ladder fails when any rung fails;
REPRODUCTION.md then reports the predictions on detector counts as not judged
(:mod:`kdinterp.reporting.reproduction`). The criterion functions are pure: they take per-seed
arrays aligned by seed (:class:`Series`); :func:`instrument_ladder` reads them from a run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kdinterp.core import statistics, study
from kdinterp.core.params import Params, ParamsError
from kdinterp.core.statistics import Comparison
from kdinterp.measures.dissection import sensitivity_key
from kdinterp.reporting.paper import signed
from kdinterp.reporting.quantities import QUANTITIES, Quantity
from kdinterp.reporting.results import Metric, RunResults
from kdinterp.reporting.robustness import markdown_table

__all__ = ["FAIL", "FAILED", "INCOMPLETE", "MISSING", "PASS", "PASSED", "Criterion", "Ladder", "Series",
           "floor_criterion", "instrument_ladder", "ladder_section", "rotation_criterion", "shuffled_criterion",
           "training_criterion"]

PASS, FAIL, MISSING = "pass", "fail", "missing"
#: The ladder's status: every rung passed; a rung failed; none failed but some are missing.
PASSED, FAILED, INCOMPLETE = "passed", "failed", "incomplete"


@dataclass(frozen=True)
class Series:
    """One model's endpoint over seeds, aligned with the other series of a criterion.

    Attributes:
        label: e.g. ``untrained (`random_init`)``.
        values: float64 ``(n,)``, or None when missing.
        why: why it is missing (empty when present).
    """

    label: str
    values: np.ndarray | None
    why: str = ""

    @property
    def mean(self) -> float:
        """The mean over seeds (NaN when missing)."""
        return math.nan if self.values is None else float(np.mean(self.values))


@dataclass(frozen=True)
class Criterion:
    """One rung of the ladder on a run.

    Attributes:
        name: e.g. ``untrained floor (`random_init`)``.
        rule: the pre-registered rule, in words.
        status: ``pass``, ``fail`` or ``missing``.
        means: ``(label, mean over seeds)`` of each model (NaN where missing).
        comparisons: ``(label, paired comparison)`` of each difference the rule reads.
        note: why it is missing or failed, or how it was judged.
    """

    name: str
    rule: str
    status: str
    means: tuple[tuple[str, float], ...]
    comparisons: tuple[tuple[str, Comparison], ...]
    note: str = ""


@dataclass(frozen=True)
class Ladder:
    """Every rung of the control ladder on a run, for one endpoint."""

    endpoint: str
    criteria: tuple[Criterion, ...]

    @property
    def status(self) -> str:
        """``failed`` if any rung failed, ``passed`` if every rung passed, else ``incomplete``."""
        statuses = [c.status for c in self.criteria]
        if FAIL in statuses:
            return FAILED
        return PASSED if statuses and all(s == PASS for s in statuses) else INCOMPLETE

    def names(self, status: str) -> list[str]:
        """The names of the rungs with ``status``."""
        return [c.name for c in self.criteria if c.status == status]


def _missing(name: str, rule: str, series: Sequence[Series]) -> Criterion | None:
    absent = [s for s in series if s.values is None]
    if not absent:
        return None
    note = "; ".join(f"{s.label}: {s.why}" for s in absent)
    return Criterion(name, rule, MISSING, tuple((s.label, s.mean) for s in series), (), note)


def _difference(a: Series, b: Series, confidence: float) -> tuple[str, Comparison]:
    return f"{a.label} \u2212 {b.label}", statistics.paired_difference(a.values, b.values, +1, confidence)


def _above_zero(comparison: Comparison) -> bool:
    return comparison.verdict == statistics.HOLDS


def floor_criterion(untrained: Series, scratch: Series, max_share: float, confidence: float = 0.95,
                    name: str = "untrained floor") -> Criterion:
    """Untrained mean <= ``max_share`` x scratch mean, and scratch - untrained > 0 by its paired interval."""
    rule = (f"mean(untrained) \u2264 {100 * max_share:g}% of mean(scratch), and scratch \u2212 untrained > 0 "
            f"({100 * confidence:g}% CI)")
    missing = _missing(name, rule, (untrained, scratch))
    if missing is not None:
        return missing
    label, comparison = _difference(scratch, untrained, confidence)
    low_floor = untrained.mean <= max_share * scratch.mean
    share = untrained.mean / scratch.mean if scratch.mean > 0 else math.inf
    passed = low_floor and scratch.mean > 0 and _above_zero(comparison)
    note = f"untrained is {100 * share:.0f}% of scratch" if math.isfinite(share) else "scratch has no detectors"
    return Criterion(name, rule, PASS if passed else FAIL, ((untrained.label, untrained.mean),
                                                           (scratch.label, scratch.mean)), ((label, comparison),), note)


def shuffled_criterion(scratch: Series, shuffled: Series, confidence: float = 0.95,
                       name: str = "shuffled labels") -> Criterion:
    """Scratch - shuffled-label student > 0 by its paired interval (Adebayo et al. 2018)."""
    rule = f"scratch \u2212 shuffled > 0 ({100 * confidence:g}% CI)"
    missing = _missing(name, rule, (scratch, shuffled))
    if missing is not None:
        return missing
    label, comparison = _difference(scratch, shuffled, confidence)
    return Criterion(name, rule, PASS if _above_zero(comparison) else FAIL,
                     ((scratch.label, scratch.mean), (shuffled.label, shuffled.mean)), ((label, comparison),))


def rotation_criterion(unit: Series, rotated: Series, confidence: float = 0.95,
                       name: str = "rotated basis") -> Criterion:
    """Unit basis - rotated basis > 0: by its paired interval, or on its value for a single model (a teacher)."""
    rule = f"unit \u2212 rotated basis > 0 ({100 * confidence:g}% CI; one model: its value)"
    missing = _missing(name, rule, (unit, rotated))
    if missing is not None:
        return missing
    label, comparison = _difference(unit, rotated, confidence)
    if comparison.n == 1:
        passed, note = comparison.mean > 0, "one model: judged on its value, no interval"
    else:
        passed, note = _above_zero(comparison), ""
    return Criterion(name, rule, PASS if passed else FAIL, ((unit.label, unit.mean), (rotated.label, rotated.mean)),
                     ((label, comparison),), note)


def training_criterion(chain: Sequence[Series], confidence: float = 0.95,
                       name: str = "rises with training") -> Criterion:
    """The count rises along ``chain`` (untrained, snapshots by epoch, end of training): end - untrained > 0
    by its paired interval, and no adjacent step falls (no step's interval lies below 0). A step may be
    flat: the count plateaus as training converges (docs/instrument.md)."""
    rule = (f"{chain[-1].label} − {chain[0].label} > 0 ({100 * confidence:g}% CI), and no step along "
            + " → ".join(s.label for s in chain) + " falls (its CI below 0)")
    missing = _missing(name, rule, chain)
    if missing is not None:
        return missing
    steps = tuple(_difference(after, before, confidence) for before, after in zip(chain, chain[1:]))
    overall = _difference(chain[-1], chain[0], confidence)
    falls = [label for label, c in steps if c.verdict == statistics.CONTRADICTED]  # its CI below 0
    passed = _above_zero(overall[1]) and not falls
    note = f"falls: {', '.join(falls)}" if falls else ""
    comparisons = (overall, *steps) if len(chain) > 2 else steps
    return Criterion(name, rule, PASS if passed else FAIL, tuple((s.label, s.mean) for s in chain), comparisons, note)


def _endpoint(params: Params) -> Quantity:
    key = params.instrument.endpoint
    if key not in QUANTITIES:
        raise ParamsError(f"unknown quantity '{key}'; set one of {', '.join(QUANTITIES)}", "instrument.endpoint")
    return QUANTITIES[key]


def _series(run: RunResults, named: Sequence[tuple[str, str | None]], metric: Metric, what: str) -> list[Series]:
    """``(role, model name or None)`` -> series aligned on the seeds every present model has."""
    present = [name for _, name in named if name is not None and name in run.names]
    values = dict(zip(present, run.aligned(present, metric))) if present else {}
    out = []
    for role, name in named:
        label = f"{role} (`{name}`)" if name else role
        if name is None:
            out.append(Series(label, None, "not named in params instrument.controls"))
        elif name not in values:
            out.append(Series(label, None, f"no model '{name}' in this run"))
        elif values[name].size == 0 or not np.isfinite(values[name]).all():
            out.append(Series(label, None, f"{what} not measured"))
        else:
            out.append(Series(label, values[name]))
    return out


def _bases(params: Params, run: RunResults) -> list[tuple[str, Metric, str]]:
    """The endpoint in the unit and the rotated basis: ``<endpoint>_rotated`` when it is a quantity
    (the calibrated count), else the fixed-threshold count of ``sensitivity.csv`` in each basis."""
    rotated = QUANTITIES.get(f"{params.instrument.endpoint}_rotated")
    if rotated is not None:
        return [("unit basis", _endpoint(params).value, "the endpoint"),
                ("rotated basis", rotated.value, f"{rotated.name} (dissection.sensitivity.rotation_seed null?)")]
    unit_key = sensitivity_key("unit", run.quantile, run.iou_threshold)
    rotated_key = sensitivity_key("rotated", run.quantile, run.iou_threshold)
    return [("unit basis", lambda m: m.dissection.sensitivity.get(unit_key, (math.nan,))[0],
             "the unit-basis count (sensitivity.csv)"),
            ("rotated basis", lambda m: m.dissection.sensitivity.get(rotated_key, (math.nan,))[0],
             "the rotated-basis count (sensitivity.csv; dissection.sensitivity.rotation_seed null?)")]


def instrument_ladder(params: Params, run: RunResults) -> Ladder | None:
    """Every rung of the ladder on ``run``, in order; None when params has no ``instrument`` section.

    Raises:
        ParamsError: ``instrument.endpoint`` is not a quantity.
    """
    if params.instrument is None:
        return None
    quantity, controls, criteria = _endpoint(params), params.instrument.controls, params.instrument.criteria
    confidence, scratch = criteria.confidence, run.roles["scratch"]
    rungs = []
    for role, name in (("untrained", controls.untrained), ("untrained (BN re-estimated)", controls.untrained_bn)):
        if role == "untrained" or name is not None:
            untrained, end = _series(run, [(role, name), ("scratch", scratch)], quantity.value, quantity.name)
            rungs.append(floor_criterion(untrained, end, criteria.untrained_max_share, confidence,
                                         f"floor: {untrained.label}"))
    end, shuffled = _series(run, [("scratch", scratch), ("shuffled", controls.shuffled)], quantity.value,
                            quantity.name)
    rungs.append(shuffled_criterion(end, shuffled, confidence, f"shuffled labels: {shuffled.label}"))
    for role in study.ROTATION_ROLES:
        name = run.roles.get(role)
        [unit], [rotated] = (_series(run, [(label, name)], metric, what) for label, metric, what in _bases(params, run))
        rungs.append(rotation_criterion(unit, rotated, confidence, f"rotated basis: {role} (`{name}`)"))
    chain = [("untrained", controls.untrained), *((f"snapshot {i + 1}", s) for i, s in enumerate(controls.snapshots)),
             ("scratch", scratch)]
    rungs.append(training_criterion(_series(run, chain, quantity.value, quantity.name), confidence,
                                    "rises with training"))
    return Ladder(quantity.name, tuple(rungs))



def _interval(comparison: Comparison, fmt: str = ".1f") -> str:
    i = comparison.interval
    ci = "no interval" if math.isnan(i.low) else f"[{signed(i.low, fmt)}, {signed(i.high, fmt)}]"
    return f"{signed(i.mean, fmt)} {ci} (n = {i.n})"


def ladder_section(ladder: Ladder | None, frozen_commit: str | None = None) -> str:
    """The ladder as a table, and in plain words whether the instrument passed, failed or is incomplete,
    and which commit froze the design (params ``instrument.frozen_commit``)."""
    title = "## Control ladder: does the detector count measure anything?"
    if ladder is None:
        return "\n".join([title, "", "No `instrument` section in params.yaml: the control ladder is not judged, and "
                                      "the predictions below rest on an instrument not checked against its controls."])
    rows = [[c.name, c.rule, "; ".join(f"{label} {mean:.1f}" for label, mean in c.means if not math.isnan(mean))
             or "\u2013", "; ".join(f"{label}: {_interval(comp)}" for label, comp in c.comparisons) or "\u2013",
             f"**{c.status}**" + (f" ({c.note})" if c.note else "")] for c in ladder.criteria]
    if ladder.status == FAILED:
        verdict = (f"**The instrument failed its controls** ({', '.join(ladder.names(FAIL))}). The predictions on "
                   "detector counts below are reported as *not judged: instrument failed its controls*; their numbers "
                   "are shown, but a count that fails these controls cannot tell the models apart.")
    elif ladder.status == PASSED:
        verdict = "**The instrument passed every control.** The predictions below are judged."
    else:
        verdict = (f"**The controls are incomplete** (missing: {', '.join(ladder.names(MISSING))}); none failed. "
                   "The predictions below are judged, on an instrument not yet shown to pass every control.")
    return "\n".join([
        title, "",
        f"Endpoint: {ladder.endpoint}, per model and seed (params `instrument.endpoint`); the rotated-basis rungs read "
        "the same count in a randomly rotated basis of the layer (or, for the fixed-threshold count, `sensitivity.csv`). "
        "Rules and model names are pre-registered in params `instrument`; every difference is paired by seed. Untrained "
        "floor and rotated basis: Bau et al. 2017; shuffled labels: Adebayo et al. 2018 (data randomisation). "
        + (f"The design, the endpoint and the margins were frozen in commit `{frozen_commit}`, before the first KD or "
           "LS run on them (docs/instrument.md); a change after it is listed there as a change."
           if frozen_commit else "**No commit froze this design** (params `instrument.frozen_commit` is null)."), "",
        verdict, "",
        markdown_table(["rung", "rule", "means over seeds", "difference [CI] (n)", "result"], rows),
    ])
