"""The paper's predictions (``research/paper.md`` §7) as one declarative table, and their check on a run.

:data:`PREDICTIONS` holds every prediction once, in report order: its id, claim, the paper's value
and evidence tag, and its parts, each a paired comparison of one quantity
(:data:`kdinterp.reporting.quantities.QUANTITIES`) between models chosen by a selector, with the
predicted sign. A prediction holds when every part holds and is contradicted when any part is
(:func:`kdinterp.core.statistics.combine`). A selector picks models by paper role
(``params.paper_models``) or by what the run contains (KD from a label-smoothed teacher over
temperatures, feature-KD pairs, every distilled student): a prediction whose models the run lacks
is not checked (P8-P11 need ``profiles/all_students.yaml``; P12 and P14 a ``saliency`` section).
REPRODUCTION.md, the sensitivity bands and the dose-response all iterate this table.

Every comparison of two models is a paired difference over seeds (students of one seed share
initialisation and data order), judged by its 95% t-interval (:mod:`kdinterp.core.statistics`);
a prediction with a pre-registered margin (``params.verdicts.equivalence_margin``, a share of the
layer's units) can also be judged *equivalent* by its 90% interval (TOST, Schuirmann 1987).
Every number comes from the run; the paper's are shown beside them as targets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from kdinterp.core import statistics
from kdinterp.core.params import Params, ParamsError
from kdinterp.core.statistics import Comparison
from kdinterp.reporting.paper import PAPER_DETECTORS, PAPER_ENTROPY, PAPER_TOP1_PERCENT, signed
from kdinterp.reporting.quantities import QUANTITIES, Quantity, five_band, object_mass
from kdinterp.reporting.results import RunResults
from kdinterp.training.methods import feature_methods

__all__ = ["ENDPOINT", "NOT_MEASURED", "P12_METHOD", "PREDICTIONS", "Part", "PartSpec", "Prediction", "PredictionSpec", "check_margins",
           "check_predictions", "compare", "count_verdicts"]

#: The quantity name of the detector predictions (P2, P4, P5, P8a, P9, P10, P11): the pre-registered
#: primary endpoint, ``params.instrument.endpoint`` (the fixed-threshold count ``detectors`` without an
#: ``instrument`` section, and in the sensitivity bands, which re-judge the paper's fixed-threshold rule).
ENDPOINT = "endpoint"

#: The verdict of a comparison whose models lack the quantity at some seed (e.g. a calibrated count that
#: a profile turned off): reported as such, never judged, and the prediction it belongs to neither.
NOT_MEASURED = "not measured"


#: The saliency method of P12. The paper does not say which it used (research/paper.md §4.2,
#: [NOT FOUND]); Grad-CAM is fixed here before any result: Tjoa & Guan introduce a CAM variant
#: (mabCAM) as the heatmap method that suits their ground truth. Grad-CAM reads ``saliency.layer``
#: (layer2 since its re-registration, docs/instrument.md §8; layer4's 2x2 map gave ~99% recall and FPR).
#: The other methods' scores are in every saliency five_band.csv.
P12_METHOD = "grad_cam"

#: A selector: the ``(a, b)`` model-name pairs a part compares in a run (``a − b``), and their T where a trend.
Selector = Callable[[Params, RunResults], list[tuple[str, str, str]]]


def roles(a: str, b: str) -> Selector:
    """The models of paper roles ``a`` and ``b``."""
    return lambda params, run: [(run.roles[a], run.roles[b], "")]


def _ls_teacher_grid(params: Params) -> list[tuple[float, str]]:
    """``(temperature, model)`` of logit-KD students of a label-smoothed teacher, by temperature."""
    return sorted((spec.temperature, name) for name, spec in params.distilled.items()
                  if spec.method == "kd" and spec.teacher in params.teachers
                  and params.teachers[spec.teacher].label_smoothing > 0)


def temperature_trend(params: Params, run: RunResults) -> list[tuple[str, str, str]]:
    """Adjacent temperatures of KD from a label-smoothed teacher (higher minus lower T); needs two or more."""
    grid = _ls_teacher_grid(params)
    if len(grid) < 2:
        return []
    return [(b, a, f"T={tb:g} \u2212 T={ta:g}") for (ta, a), (tb, b) in zip(grid[:-1], grid[1:])]


def lowest_temperature_vs(role: str) -> Selector:
    """KD from a label-smoothed teacher at its lowest T, against the model of ``role`` (needs two or more T)."""
    def select(params: Params, run: RunResults) -> list[tuple[str, str, str]]:
        grid = _ls_teacher_grid(params)
        return [(grid[0][1], run.roles[role], "")] if len(grid) >= 2 else []
    return select


def feature_pair(method: str) -> Selector:
    """A student of feature method ``method`` with logit KD against one without, of the same teacher."""
    def select(params: Params, run: RunResults) -> list[tuple[str, str, str]]:
        spec = {name: s for name, s in params.distilled.items() if s.method == method}
        for without, s in spec.items():
            partner = next((n for n, o in spec.items() if o.alpha > 0 and o.teacher == s.teacher), None)
            if s.alpha == 0 and partner is not None:
                return [(partner, without, "")]
        return []
    return select


def distilled_vs(role: str) -> Selector:
    """Every student distilled from a normally trained teacher or self-distilled, against ``role``'s (two or more)."""
    def select(params: Params, run: RunResults) -> list[tuple[str, str, str]]:
        names = [name for name, spec in params.distilled.items() if spec.teacher not in params.teachers
                 or params.teachers[spec.teacher].label_smoothing == 0] + list(params.self_distilled)
        return [(name, run.roles[role], "") for name in names] if len(names) > 1 else []
    return select


@dataclass(frozen=True)
class PartSpec:
    """One part of a prediction: ``quantity`` of the selected pairs ``a − b``, predicted to have sign ``direction``."""

    quantity: str | Quantity
    models: Selector
    direction: int


@dataclass(frozen=True)
class PredictionSpec:
    """One row of the table: a testable prediction of ``research/paper.md`` §7.

    Attributes:
        pid: ``P1`` ... ``P14``; parts of one paper prediction as ``P6a`` ..., per method ``P10-at`` ...
        claim: the prediction, in the paper's notation.
        paper: the paper's values (targets, not ours).
        evidence: the source tag of research/paper.md (``[FIG1]`` ...).
        parts: its comparisons; all must hold for the prediction to hold.
        needs: whether the run's params allow it (e.g. a ``saliency`` section), or None: always.
    """

    pid: str
    claim: str
    paper: str
    evidence: str
    parts: tuple[PartSpec, ...]
    needs: Callable[[Params], bool] | None = None


def _ordering(quantity: str) -> tuple[PartSpec, ...]:
    return PartSpec(quantity, roles("kd", "scratch"), +1), PartSpec(quantity, roles("scratch", "ls"), +1)


def _saliency(params: Params) -> bool:
    return params.saliency is not None


def _p12_method(params: Params) -> bool:
    return params.saliency is not None and P12_METHOD in params.saliency.methods


_A, _D, _E = PAPER_TOP1_PERCENT, PAPER_DETECTORS, PAPER_ENTROPY
_DIRECTION = "direction only, no numbers"

#: Detectors with and without logit KD per feature method, read from a bar chart (research/paper.md §6, [BAR]).
PAPER_FEATURE_DETECTORS: dict[str, tuple[int, int]] = {"at": (287, 303), "ft": (304, 313), "crd": (282, 286),
                                                       "sskd": (304, 310)}

#: Every prediction, in report order. P7 is checked under both candidate definitions of
#: research/paper.md §5 (:mod:`kdinterp.measures.similarity.scores`): (a) was kdinterp's from the
#: start, (b) was added after (a)'s results were known; both are reported.
PREDICTIONS: tuple[PredictionSpec, ...] = (
    PredictionSpec("P1", "acc(f_KD) > acc(f_scratch)", f"{_A['kd']:.2f}% vs {_A['scratch']:.2f}%", "[FIG1]",
                   (PartSpec("top1", roles("kd", "scratch"), +1),)),
    PredictionSpec("P2", "#det(f_KD) > #det(f_scratch)", f"{_D['kd']} vs {_D['scratch']}", "[FIG1]",
                   (PartSpec(ENDPOINT, roles("kd", "scratch"), +1),)),
    PredictionSpec("P3", "acc(f_LS) > acc(f_scratch)", f"{_A['ls']:.2f}% vs {_A['scratch']:.2f}%", "[FIG1]",
                   (PartSpec("top1", roles("ls", "scratch"), +1),)),
    PredictionSpec("P4", "#det(f_LS) < #det(f_scratch)", f"{_D['ls']} vs {_D['scratch']}", "[FIG1]",
                   (PartSpec(ENDPOINT, roles("ls", "scratch"), -1),)),
    PredictionSpec("P5", "#det: KD > scratch > LS", f"{_D['kd']} > {_D['scratch']} > {_D['ls']}", "[FIG1]",
                   _ordering(ENDPOINT)),
    PredictionSpec("P6a", "#object detectors: KD > scratch", _DIRECTION, "[BLOG]",
                   (PartSpec("object", roles("kd", "scratch"), +1),)),
    PredictionSpec("P6b", "#object detectors: LS < scratch", _DIRECTION, "[BLOG]",
                   (PartSpec("object", roles("ls", "scratch"), -1),)),
    PredictionSpec("P6c", "#scene detectors: LS > scratch", _DIRECTION, "[BLOG]",
                   (PartSpec("scene", roles("ls", "scratch"), +1),)),
    PredictionSpec("P7a", "within-class entropy (a: class-mean softmax): KD > scratch > LS",
                   f"{_E['kd']:.4f} > {_E['scratch']:.4f} > {_E['ls']:.4f}", "[SUM]", _ordering("entropy")),
    PredictionSpec("P7b", "within-class entropy (b: non-target classes, renormalised): KD > scratch > LS",
                   "same numbers; the paper's formula is unknown", "[SUM][INF]", _ordering("nontarget_entropy")),
    PredictionSpec("P8a", "KD from an LS teacher: #det increases with T", "trend only", "[SUM]",
                   (PartSpec(ENDPOINT, temperature_trend, +1),)),
    PredictionSpec("P8b", "KD from an LS teacher: top-1 decreases with T", "trend only", "[SUM]",
                   (PartSpec("top1", temperature_trend, -1),)),
    PredictionSpec("P9", "#det(KD from LS teacher, lowest T) < #det(f_KD)", "not stated numerically", "[INF]",
                   (PartSpec(ENDPOINT, lowest_temperature_vs("kd"), -1),)),
    *(PredictionSpec(f"P10-{m}", f"#det({m.upper()} + logit KD) > #det({m.upper()})",
                     (f"\u2248{PAPER_FEATURE_DETECTORS[m][1]} vs \u2248{PAPER_FEATURE_DETECTORS[m][0]}"
                      if m in PAPER_FEATURE_DETECTORS else "n/a"), "[BAR]",
                     (PartSpec(ENDPOINT, feature_pair(m), +1),)) for m in feature_methods()),
    PredictionSpec("P11", "every KD method: top-1 and #det > f_scratch", f"e.g. 282-313 vs {_D['scratch']}",
                   "[BAR][SUM]", (PartSpec("top1", distilled_vs("scratch"), +1),
                                  PartSpec(ENDPOINT, distilled_vs("scratch"), +1))),
    PredictionSpec("P12", f"five-band scores ({P12_METHOD}): pixel accuracy KD > scratch, FPR KD < scratch",
                   _DIRECTION, "[BLOG]", (PartSpec(five_band(P12_METHOD, "pixel_acc"), roles("kd", "scratch"), +1),
                                          PartSpec(five_band(P12_METHOD, "fpr"), roles("kd", "scratch"), -1)),
                   needs=_p12_method),
    PredictionSpec("P13", "DiffROAR(f_KD) > DiffROAR(f_scratch)", _DIRECTION, "[BLOG]",
                   (PartSpec("diffroar", roles("kd", "scratch"), +1),)),
    PredictionSpec("P14a", "input-loss gradient mass inside the object: KD > scratch", "qualitative (figure)",
                   "[FIGS]", (PartSpec(object_mass("loss_gradient"), roles("kd", "scratch"), +1),), needs=_saliency),
    PredictionSpec("P14b", "activation mass inside the object (paper: layer4; here saliency.layer): KD > scratch and KD > LS",
                   "qualitative (figure)", "[FIGS]", (PartSpec(object_mass("activation"), roles("kd", "scratch"), +1),
                                                      PartSpec(object_mass("activation"), roles("kd", "ls"), +1)),
                   needs=_saliency),
)


@dataclass(frozen=True)
class Part:
    """One paired comparison behind a prediction, on a run.

    Attributes:
        label: ``KD − Scratch``: the difference compared (first minus second model).
        quantity: what is compared.
        comparison: mean difference over seeds, its 95% t-interval, n, and the verdict on the sign; None
            when a model lacks the quantity at some seed (:data:`NOT_MEASURED`).
    """

    label: str
    quantity: Quantity
    comparison: Comparison | None

    @property
    def verdict(self) -> str:
        """The comparison's verdict, or :data:`NOT_MEASURED`."""
        return NOT_MEASURED if self.comparison is None else self.comparison.verdict

    @property
    def n(self) -> int:
        """The number of paired seeds (0 when not measured)."""
        return 0 if self.comparison is None else self.comparison.n

    def mean(self) -> str:
        """``+0.85 pp``: the mean difference with its unit; ``n/a`` when not measured."""
        if self.comparison is None:
            return "n/a"
        return f"{signed(self.comparison.mean, self.quantity.fmt)} {self.quantity.unit}".rstrip()

    def ci(self) -> str:
        """``[−0.31, +2.01]``; ``(n = 1, no interval)`` when n < 2; ``(not measured)``."""
        if self.comparison is None:
            return f"({NOT_MEASURED})"
        i, fmt = self.comparison.interval, self.quantity.fmt
        return f"(n = {i.n}, no interval)" if math.isnan(i.low) else f"[{signed(i.low, fmt)}, {signed(i.high, fmt)}]"

    def text(self) -> str:
        """``KD − Scratch: +0.85 pp [−0.31, +2.01]``."""
        return f"{self.label}: {self.mean()} {self.ci()}"

    def margin(self) -> str:
        """``±4.6``: the equivalence margin in the quantity's unit, or ``none``."""
        margin = None if self.comparison is None else self.comparison.margin
        return "none" if margin is None else f"\u00b1{margin:{self.quantity.fmt}}"

    def tost(self) -> str:
        """The 90% interval TOST reads, ``[−1.2, +2.0]``; ``n/a`` without a margin or an interval."""
        i, fmt = None if self.comparison is None else self.comparison.equivalence, self.quantity.fmt
        return "n/a" if i is None or math.isnan(i.low) else f"[{signed(i.low, fmt)}, {signed(i.high, fmt)}]"


@dataclass(frozen=True)
class Prediction:
    """A prediction of :data:`PREDICTIONS` checked on a run: its row and its parts' comparisons."""

    spec: PredictionSpec
    parts: tuple[Part, ...]

    def __getattr__(self, name: str):
        """The row's fields: ``prediction.pid``, ``.claim``, ``.paper``, ``.evidence``."""
        if name in ("pid", "claim", "paper", "evidence"):
            return getattr(self.spec, name)
        raise AttributeError(name)

    @property
    def verdict(self) -> str:
        """The parts' verdicts combined (:func:`kdinterp.core.statistics.combine`); :data:`NOT_MEASURED` when
        any part is (a prediction is judged on all its parts or not at all)."""
        if any(p.comparison is None for p in self.parts):
            return NOT_MEASURED
        return statistics.combine(p.verdict for p in self.parts)

    @property
    def reads_detectors(self) -> bool:
        """Whether a part compares a count of the dissected layer's units (judged only if the control ladder allows)."""
        return any(p.quantity.units is not None for p in self.parts)

    @property
    def n(self) -> str:
        """The number of seeds behind the comparisons: ``3``, or ``1–3`` when they differ."""
        ns = sorted({p.n for p in self.parts})
        return str(ns[0]) if len(ns) == 1 else f"{ns[0]}\u2013{ns[-1]}"

    @property
    def ours(self) -> str:
        """This run's mean differences and intervals, or a count of verdicts when there are many parts."""
        if len(self.parts) <= 3:
            return "; ".join(p.text() for p in self.parts)
        return f"{len(self.parts)} comparisons: {count_verdicts([p.verdict for p in self.parts])} (listed below)"


def count_verdicts(verdicts: list[str]) -> str:
    """``5 hold, 3 contradicted, 1 inconclusive`` (verdicts that occur, in :data:`statistics.VERDICTS` order,
    then :data:`NOT_MEASURED`)."""
    counts = {v: verdicts.count(v) for v in (*statistics.VERDICTS, NOT_MEASURED)}
    return ", ".join(f"{n} {'hold' if v == statistics.HOLDS and n != 1 else v}" for v, n in counts.items() if n)


def _margin(run: RunResults, a: str, b: str, quantity: Quantity, share: float | None) -> float | None:
    """``share`` of the units both models count over, in the quantity's unit; None without a share, for a
    quantity that is not a count of units, or when the models' layers differ in size."""
    if share is None or quantity.units is None:
        return None
    units = {float(u) for values in run.aligned([a, b], quantity.units) for u in values}
    return share * units.pop() if len(units) == 1 else None


def compare(run: RunResults, a: str, b: str, quantity: Quantity, direction: int, label: str = "",
            margin_share: float | None = None) -> Part:
    """The paired comparison ``a − b`` of ``quantity`` over seeds, predicted to have sign ``direction``.

    ``margin_share``: the equivalence margin as a share of the models' units (``params.verdicts``),
    or None: never *equivalent*. A model without the quantity at some seed (NaN) gives a part whose
    comparison is None (:data:`NOT_MEASURED`) rather than an interval over fewer seeds.
    """
    x, y = run.paired(a, b, quantity.value)
    label = label or f"{run.seeds_of(a)[0].label} \u2212 {run.seeds_of(b)[0].label}"
    if np.isnan(x).any() or np.isnan(y).any():
        return Part(label, quantity, None)
    margin = _margin(run, a, b, quantity, margin_share)
    return Part(label, quantity, statistics.paired_difference(x, y, direction, margin=margin))


def check_margins(params: Params) -> dict[str, float]:
    """``params.verdicts.equivalence_margin``, checked against :data:`PREDICTIONS`.

    Raises:
        ParamsError: a margin for an id the table lacks, or for a prediction that compares something
            other than counts of units (a margin is a share of units); the message names the key.
    """
    margins = dict(params.verdicts.equivalence_margin)
    specs = {spec.pid: spec for spec in PREDICTIONS}
    for pid in margins:
        key = f"verdicts.equivalence_margin.{pid}"
        if pid not in specs:
            raise ParamsError(f"no such prediction; the predictions are {', '.join(specs)}: fix the id or remove it",
                              key)
        names = [_resolve(p.quantity, params, None) for p in specs[pid].parts]
        quantities = [QUANTITIES[name] if isinstance(name, str) else name for name in names]
        other = [q.name for q in quantities if q.units is None]
        if other:
            raise ParamsError(f"{pid} compares {', '.join(other)}, not a count of units, and a margin is a share of "
                              "units: remove it", key)
    return margins


def _resolve(quantity: str | Quantity, params: Params, only: Mapping[str, Quantity] | None) -> str | Quantity:
    """A part's quantity name with :data:`ENDPOINT` replaced by the quantity it stands for."""
    if quantity != ENDPOINT:
        return quantity
    if only is not None or params.instrument is None:
        return "detectors"
    return params.instrument.endpoint


def check_predictions(params: Params, run: RunResults, *, only: Mapping[str, Quantity] | None = None,
                      table: tuple[PredictionSpec, ...] = PREDICTIONS) -> list[Prediction]:
    """Check every prediction of ``table`` that the run can, in table order.

    Args:
        params: the run's parameters (which models exist).
        run: its results.
        only: check only the predictions whose parts all use quantities that are keys here, with
            those quantities substituted (the sensitivity bands re-judge the detector predictions
            with ``{"detectors": detectors_at(...)}``; :data:`ENDPOINT` is ``detectors`` then).
        table: the predictions (default :data:`PREDICTIONS`).

    Returns:
        One :class:`Prediction` per row whose section is present and whose selectors find models.

    Raises:
        ParamsError: a bad equivalence margin (:func:`check_margins`).
    """
    margins = check_margins(params)
    checked = []
    lookup = only or QUANTITIES
    for spec in table:
        if spec.needs is not None and not spec.needs(params):
            continue
        names = [_resolve(p.quantity, params, only) for p in spec.parts]
        if only is not None and not all(isinstance(name, str) and name in only for name in names):
            continue
        parts = []
        for part, name in zip(spec.parts, names, strict=True):
            quantity = lookup[name] if isinstance(name, str) else name
            parts += [compare(run, a, b, quantity, part.direction, label, margins.get(spec.pid))
                      for a, b, label in part.models(params, run)]
        if parts:
            checked.append(Prediction(spec, tuple(parts)))
    return checked
