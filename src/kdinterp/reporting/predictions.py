"""The paper's predictions (``research/paper.md`` §7) checked on a run: paired comparisons over seeds.

Predictions P1-P7 of ``research/paper.md`` §7 are checked on the paper's three students (roles
``scratch``, ``kd``, ``ls`` of ``params.paper_models``). P8-P11 are checked when the run has the
models they need (``profiles/all_students.yaml``): KD from a label-smoothed teacher over several
temperatures (P8, P9), feature-based KD with and without logit KD (P10), and every distilled
student against scratch (P11). P12 and P14 are checked when params.yaml has a ``saliency`` section
(stage ``saliency_*@``; :func:`saliency_predictions`). P13 (DiffROAR, stage ``diffroar_*@``) is
checked on every run: :func:`diffroar_predictions`.

Every comparison of two models is a paired difference over seeds (students of one seed share
initialisation and data order), judged by its 95% t-interval (:mod:`kdinterp.core.statistics`):
**holds**, **contradicted** or **inconclusive**. Every number comes from the run; the paper's are
shown beside them as targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kdinterp.core import statistics
from kdinterp.core.params import DistilledParams, Params
from kdinterp.reporting.results import (PAPER_DETECTORS, PAPER_ENTROPY, PAPER_TOP1_PERCENT, STUDENT_ROLES, Metric, RunResults,
                              signed)
from kdinterp.core.statistics import Comparison

__all__ = ["MEASURES", "P12_METHOD", "Measure", "Part", "Prediction", "compare", "count_verdicts",
           "diffroar_predictions", "evaluate_predictions", "extended_predictions", "five_band_measure", "object_mass_measure",
           "saliency_predictions"]


@dataclass(frozen=True)
class Measure:
    """A per-seed measure compared between models.

    Attributes:
        name: e.g. ``top-1``.
        unit: of its differences, e.g. ``pp``.
        fmt: format of its values and differences.
        value: the measure of one model at one seed.
    """

    name: str
    unit: str
    fmt: str
    value: Metric


def _detectors_in(category: str) -> Measure:
    return Measure(f"#{category} detectors", "detectors", ".1f", lambda m: m.detectors.get(category, 0))


#: The measures the predictions compare.
MEASURES: dict[str, Measure] = {
    "top1": Measure("top-1", "pp", ".2f", lambda m: 100 * m.top1),
    "detectors": Measure("#detectors", "detectors", ".1f", lambda m: m.num_detectors),
    "object": _detectors_in("object"),
    "scene": _detectors_in("scene"),
    "entropy": Measure("within-class entropy (a)", "nats", ".4f", lambda m: m.within_class_entropy),
    "nontarget_entropy": Measure("within-class entropy (b)", "nats", ".4f", lambda m: m.nontarget_entropy),
    "diffroar": Measure("DiffROAR", "pp", ".2f", lambda m: math.nan if m.diffroar is None else 100 * m.diffroar),
}


@dataclass(frozen=True)
class Part:
    """One paired comparison behind a prediction.

    Attributes:
        label: ``KD − Scratch``: the difference compared (first minus second model).
        measure: what is compared.
        comparison: mean difference over seeds, its 95% t-interval, n, and the verdict on the sign.
    """

    label: str
    measure: Measure
    comparison: Comparison

    def mean(self) -> str:
        """``+0.85 pp``: the mean difference with its unit."""
        return f"{signed(self.comparison.mean, self.measure.fmt)} {self.measure.unit}"

    def ci(self) -> str:
        """``[−0.31, +2.01]``; ``(n = 1, no interval)`` when n < 2."""
        i, fmt = self.comparison.interval, self.measure.fmt
        return f"(n = {i.n}, no interval)" if math.isnan(i.low) else f"[{signed(i.low, fmt)}, {signed(i.high, fmt)}]"

    def text(self) -> str:
        """``KD − Scratch: +0.85 pp [−0.31, +2.01]``."""
        return f"{self.label}: {self.mean()} {self.ci()}"


@dataclass(frozen=True)
class Prediction:
    """One testable prediction of ``research/paper.md`` §7, checked on this run.

    Attributes:
        pid: ``P1`` ... ``P14``; the parts of P6 are ``P6a`` ... ``P6c``, of P8 ``P8a``, ``P8b``, of P14 ``P14a``, ``P14b``.
        claim: the prediction, in the paper's notation.
        paper: the paper's values (targets, not ours).
        evidence: the source tag of research/paper.md (``[FIG1]`` ...).
        parts: the paired comparisons it rests on (one, or several for an ordering, a trend, P11).
    """

    pid: str
    claim: str
    paper: str
    evidence: str
    parts: tuple[Part, ...]

    @property
    def verdict(self) -> str:
        """``holds`` if every part holds, ``contradicted`` if any part is, else ``inconclusive``."""
        return statistics.combine(p.comparison.verdict for p in self.parts)

    @property
    def n(self) -> str:
        """The number of seeds behind the comparisons: ``3``, or ``1–3`` when they differ."""
        ns = sorted({p.comparison.n for p in self.parts})
        return str(ns[0]) if len(ns) == 1 else f"{ns[0]}\u2013{ns[-1]}"

    @property
    def ours(self) -> str:
        """This run's mean differences and intervals, or a count of verdicts when there are many parts."""
        if len(self.parts) <= 3:
            return "; ".join(p.text() for p in self.parts)
        return f"{len(self.parts)} comparisons: {count_verdicts([p.comparison.verdict for p in self.parts])} (listed below)"


def count_verdicts(verdicts: list[str]) -> str:
    """``5 hold, 3 contradicted, 1 inconclusive`` (verdicts that occur, in :data:`statistics.VERDICTS` order)."""
    counts = {v: verdicts.count(v) for v in statistics.VERDICTS}
    return ", ".join(f"{n} {'hold' if v == statistics.HOLDS and n != 1 else v}" for v, n in counts.items() if n)


def compare(run: RunResults, a: str, b: str, measure: Measure, direction: int) -> Part:
    """The paired comparison ``a − b`` of ``measure`` over seeds, predicted to have sign ``direction``."""
    x, y = run.paired(a, b, measure.value)
    return Part(f"{_label(run, a)} \u2212 {_label(run, b)}", measure, statistics.paired_difference(x, y, direction))


def _label(run: RunResults, name: str) -> str:
    return run.seeds_of(name)[0].label


def evaluate_predictions(run: RunResults) -> list[Prediction]:
    """Check predictions P1-P7 of ``research/paper.md`` §7 on this run, as paired comparisons over seeds.

    Args:
        run: this run's results.

    Returns:
        P1-P5, P6a-P6c, P7a, P7b, in that order. P5 and P7 (orderings of three models) rest on two
        comparisons, ``KD − Scratch`` and ``Scratch − LS``. P7 is checked under both candidate
        definitions of research/paper.md §5 (:mod:`kdinterp.measures.class_similarity`): (a) was kdinterp's from
        the start, (b) was added after (a)'s results were known; both are reported.
    """
    s, k, ls = (run.roles[role] for role in STUDENT_ROLES)
    pa, pd, pe = PAPER_TOP1_PERCENT, PAPER_DETECTORS, PAPER_ENTROPY
    top1, det, obj, scene, ent, ent_b = (MEASURES[m] for m in ("top1", "detectors", "object", "scene", "entropy",
                                                               "nontarget_entropy"))

    def one(pid: str, claim: str, paper: str, evidence: str, a: str, measure: Measure, direction: int) -> Prediction:
        return Prediction(pid, claim, paper, evidence, (compare(run, a, s, measure, direction),))

    def ordering(pid: str, claim: str, paper: str, evidence: str, measure: Measure) -> Prediction:
        return Prediction(pid, claim, paper, evidence,
                          (compare(run, k, s, measure, +1), compare(run, s, ls, measure, +1)))

    return [
        one("P1", "acc(f_KD) > acc(f_scratch)", f"{pa['kd']:.2f}% vs {pa['scratch']:.2f}%", "[FIG1]", k, top1, +1),
        one("P2", "#det(f_KD) > #det(f_scratch)", f"{pd['kd']} vs {pd['scratch']}", "[FIG1]", k, det, +1),
        one("P3", "acc(f_LS) > acc(f_scratch)", f"{pa['ls']:.2f}% vs {pa['scratch']:.2f}%", "[FIG1]", ls, top1, +1),
        one("P4", "#det(f_LS) < #det(f_scratch)", f"{pd['ls']} vs {pd['scratch']}", "[FIG1]", ls, det, -1),
        ordering("P5", "#det: KD > scratch > LS", f"{pd['kd']} > {pd['scratch']} > {pd['ls']}", "[FIG1]", det),
        one("P6a", "#object detectors: KD > scratch", "direction only, no numbers", "[BLOG]", k, obj, +1),
        one("P6b", "#object detectors: LS < scratch", "direction only, no numbers", "[BLOG]", ls, obj, -1),
        one("P6c", "#scene detectors: LS > scratch", "direction only, no numbers", "[BLOG]", ls, scene, +1),
        ordering("P7a", "within-class entropy (a: class-mean softmax): KD > scratch > LS",
                 f"{pe['kd']:.4f} > {pe['scratch']:.4f} > {pe['ls']:.4f}", "[SUM]", ent),
        ordering("P7b", "within-class entropy (b: non-target classes, renormalised): KD > scratch > LS",
                 "same numbers; the paper's formula is unknown", "[SUM][INF]", ent_b),
    ]


#: Detectors with and without logit KD per feature method, read from a bar chart (research/paper.md §6, [BAR]).
PAPER_FEATURE_DETECTORS: dict[str, tuple[int, int]] = {"at": (287, 303), "ft": (304, 313), "crd": (282, 286),
                                                       "sskd": (304, 310)}


def _ls_teacher(params: Params, spec: DistilledParams) -> bool:
    return spec.teacher in params.teachers and params.teachers[spec.teacher].label_smoothing > 0


def _ls_teacher_grid(params: Params) -> list[tuple[float, str]]:
    """``(temperature, model)`` of logit-KD students of a label-smoothed teacher, by temperature."""
    return sorted((spec.temperature, name) for name, spec in params.distilled.items()
                  if spec.method == "kd" and _ls_teacher(params, spec))


def _feature_pairs(params: Params) -> dict[str, tuple[str, str]]:
    """Per feature method, a ``(without logit KD, with logit KD)`` pair of students of the same teacher."""
    pairs = {}
    for name, spec in params.distilled.items():
        if spec.method == "kd" or spec.alpha > 0:
            continue
        partner = next((other for other, o in params.distilled.items()
                        if o.method == spec.method and o.teacher == spec.teacher and o.alpha > 0), None)
        if partner is not None:
            pairs.setdefault(spec.method, (name, partner))
    return pairs


def _trend(run: RunResults, grid: list[tuple[float, str]], measure: Measure, direction: int) -> tuple[Part, ...]:
    """Adjacent differences along the temperature grid (:func:`kdinterp.core.statistics.monotone`)."""
    names = [name for _, name in grid]
    comparisons = statistics.monotone(run.aligned(names, measure.value), direction)
    return tuple(Part(f"T={t1:g} \u2212 T={t0:g}", measure, c)
                 for (t0, _), (t1, _), c in zip(grid[:-1], grid[1:], comparisons, strict=True))


def extended_predictions(params: Params, run: RunResults) -> list[Prediction]:
    """Check P8-P11 of ``research/paper.md`` §7 where this run has the models they need.

    * P8: KD from a label-smoothed teacher: #det increases (P8a) and top-1 decreases (P8b) with T
      (>= 2 temperatures). A trend is read as the chain of adjacent paired differences along T
      (:func:`kdinterp.core.statistics.monotone`): it holds if every step holds, is contradicted if any
      step is.
    * P9: that student at the lowest T has fewer detectors than f_KD (KD from the normal teacher).
    * P10: per feature method, #det with logit KD > #det without.
    * P11: every student distilled from a normal teacher or by self-distillation beats f_scratch in
      top-1 and #det (two comparisons per student; holds only if all hold).

    Returns:
        The predictions that apply (an empty list for the default profile).
    """
    scratch, kd = run.roles["scratch"], run.roles["kd"]
    top1, det = MEASURES["top1"], MEASURES["detectors"]
    predictions = []
    grid = _ls_teacher_grid(params)
    if len(grid) >= 2:
        predictions += [
            Prediction("P8a", "KD from an LS teacher: #det increases with T", "trend only", "[SUM]",
                       _trend(run, grid, det, +1)),
            Prediction("P8b", "KD from an LS teacher: top-1 decreases with T", "trend only", "[SUM]",
                       _trend(run, grid, top1, -1)),
            Prediction("P9", "#det(KD from LS teacher, lowest T) < #det(f_KD)", "not stated numerically", "[INF]",
                       (compare(run, grid[0][1], kd, det, -1),)),
        ]
    for method, (without, with_kd) in sorted(_feature_pairs(params).items()):
        paper = PAPER_FEATURE_DETECTORS.get(method)
        predictions.append(Prediction(
            f"P10-{method}", f"#det({method.upper()} + logit KD) > #det({method.upper()})",
            f"\u2248{paper[1]} vs \u2248{paper[0]}" if paper else "n/a", "[BAR]",
            (compare(run, with_kd, without, det, +1),)))
    distilled = [name for name, spec in params.distilled.items() if not _ls_teacher(params, spec)]
    distilled += list(params.self_distilled)
    if len(distilled) > 1:
        parts = tuple(compare(run, name, scratch, measure, +1) for name in distilled for measure in (top1, det))
        predictions.append(Prediction(
            "P11", "every KD method: top-1 and #det > f_scratch", f"e.g. 282-313 vs {PAPER_DETECTORS['scratch']}",
            "[BAR][SUM]", parts))
    return predictions


#: The saliency method of P12. The paper does not say which it used (research/paper.md §4.2,
#: [NOT FOUND]); Grad-CAM is fixed here before any result: Tjoa & Guan introduce a CAM variant
#: (mabCAM) as the heatmap method that suits their ground truth, and Grad-CAM reads layer4, the
#: layer the study dissects. The other methods' scores are in every saliency five_band.csv.
P12_METHOD = "grad_cam"


def five_band_measure(method: str, metric: str) -> Measure:
    """A five-band score of ``method`` (:mod:`kdinterp.measures.five_band`), in percent of pixels / ratios x 100."""
    return Measure(f"five-band {metric} ({method})", "pp", ".2f", lambda m: 100 * m.five_band[method][metric])


def object_mass_measure(name: str) -> Measure:
    """The mean share of ``name``'s map mass inside the object region, in percent (NaN when not measured)."""

    def value(m):
        share = m.object_mass.get(name)
        return math.nan if share is None else 100 * share

    return Measure(f"object mass share ({name})", "pp", ".2f", value)


def saliency_predictions(params: Params, run: RunResults) -> list[Prediction]:
    """Check P12 and P14 of ``research/paper.md`` §7 (when params.yaml has a ``saliency`` section).

    * P12: on the ground truth of the concept world, KD's :data:`P12_METHOD` maps have a higher
      five-band pixel accuracy and a lower five-band FPR than scratch's (two comparisons).
    * P14a: KD's input-loss gradient puts a larger share of its mass inside the object than scratch's.
    * P14b: KD's layer4 activation map puts a larger share of its mass inside the object than
      scratch's and than LS's (two comparisons).

    Returns:
        ``[]`` without a ``saliency`` section, else P12, P14a, P14b.
    """
    if params.saliency is None:
        return []
    s, k, ls = (run.roles[role] for role in STUDENT_ROLES)
    method = P12_METHOD if P12_METHOD in params.saliency.methods else params.saliency.methods[0]
    gradient, activation = object_mass_measure("loss_gradient"), object_mass_measure("activation")
    return [
        Prediction("P12", f"five-band scores ({method}): pixel accuracy KD > scratch, FPR KD < scratch",
                   "direction only, no numbers", "[BLOG]",
                   (compare(run, k, s, five_band_measure(method, "pixel_acc"), +1),
                    compare(run, k, s, five_band_measure(method, "fpr"), -1))),
        Prediction("P14a", "input-loss gradient mass inside the object: KD > scratch", "qualitative (figure)",
                   "[FIGS]", (compare(run, k, s, gradient, +1),)),
        Prediction("P14b", "layer4 activation mass inside the object: KD > scratch and KD > LS",
                   "qualitative (figure)", "[FIGS]", (compare(run, k, s, activation, +1),
                                                      compare(run, k, ls, activation, +1))),
    ]


def diffroar_predictions(params: Params, run: RunResults) -> list[Prediction]:
    """Check P13 of ``research/paper.md`` §7: DiffROAR(f_KD) > DiffROAR(f_scratch) (Shah et al. 2021).

    DiffROAR of a model = acc(top-k) - acc(bottom-k) of an evaluator retrained on the pixels its
    ``diffroar.method`` attributions rank highest / lowest (:mod:`kdinterp.measures.roar`), averaged over
    ``diffroar.fractions``, in percentage points; a paired difference over seeds.
    """
    s, k = run.roles["scratch"], run.roles["kd"]
    grid = ", ".join(f"{f:g}" for f in params.diffroar.fractions)
    return [Prediction("P13", f"DiffROAR(f_KD) > DiffROAR(f_scratch) ({params.diffroar.method}, k = {grid})",
                       "direction only, no numbers", "[BLOG]", (compare(run, k, s, MEASURES["diffroar"], +1),))]
