"""``REPRODUCTION.md``: what was run, the results per model and per seed, and the paper's predictions.

Predictions P1-P7 of ``research/paper.md`` §7 are checked on the paper's three students (roles
``scratch``, ``kd``, ``ls`` of ``params.paper_models``). P8-P11 are checked when the run has the
models they need (``profiles/all_students.yaml``): KD from a label-smoothed teacher over several
temperatures (P8, P9), feature-based KD with and without logit KD (P10), and every distilled
student against scratch (P11).

Every comparison of two models is a paired difference over seeds (students of one seed share
initialisation and data order), judged by its 95% t-interval (:mod:`kdinterp.statistics`):
**holds**, **contradicted** or **inconclusive**. Every number comes from the run; the paper's are
shown beside them as targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from kdinterp import statistics
from kdinterp.params import DistilledParams, Params
from kdinterp.results import (FIG1_FILE, PAPER_DETECTORS, PAPER_ENTROPY, PAPER_LABEL, PAPER_NOTATION,
                              PAPER_NUM_UNITS, PAPER_TOP1_PERCENT, PER_CATEGORY_FILE, ROLE_LABELS, STUDENT_ROLES,
                              Metric, ModelResult, RunResults, signed)
from kdinterp.statistics import Comparison

__all__ = ["MEASURES", "Measure", "Part", "Prediction", "evaluate_predictions", "extended_predictions",
           "reproduction_markdown"]


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
    "entropy": Measure("within-class entropy", "nats", ".4f", lambda m: m.within_class_entropy),
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
        pid: ``P1`` ... ``P11``; the parts of P6 are ``P6a`` ... ``P6c``, of P8 ``P8a``, ``P8b``.
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
        return f"{len(self.parts)} comparisons: {_counts([p.comparison.verdict for p in self.parts])} (listed below)"


def _counts(verdicts: list[str]) -> str:
    """``5 hold, 3 contradicted, 1 inconclusive`` (verdicts that occur, in :data:`statistics.VERDICTS` order)."""
    counts = {v: verdicts.count(v) for v in statistics.VERDICTS}
    return ", ".join(f"{n} {'hold' if v == statistics.HOLDS and n != 1 else v}" for v, n in counts.items() if n)


def _compare(run: RunResults, a: str, b: str, measure: Measure, direction: int) -> Part:
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
        P1-P5, P6a-P6c, P7, in that order. P5 and P7 (orderings of three models) rest on two
        comparisons, ``KD − Scratch`` and ``Scratch − LS``.
    """
    s, k, ls = (run.roles[role] for role in STUDENT_ROLES)
    pa, pd, pe = PAPER_TOP1_PERCENT, PAPER_DETECTORS, PAPER_ENTROPY
    top1, det, obj, scene, ent = (MEASURES[m] for m in ("top1", "detectors", "object", "scene", "entropy"))

    def one(pid: str, claim: str, paper: str, evidence: str, a: str, measure: Measure, direction: int) -> Prediction:
        return Prediction(pid, claim, paper, evidence, (_compare(run, a, s, measure, direction),))

    def ordering(pid: str, claim: str, paper: str, evidence: str, measure: Measure) -> Prediction:
        return Prediction(pid, claim, paper, evidence,
                          (_compare(run, k, s, measure, +1), _compare(run, s, ls, measure, +1)))

    return [
        one("P1", "acc(f_KD) > acc(f_scratch)", f"{pa['kd']:.2f}% vs {pa['scratch']:.2f}%", "[FIG1]", k, top1, +1),
        one("P2", "#det(f_KD) > #det(f_scratch)", f"{pd['kd']} vs {pd['scratch']}", "[FIG1]", k, det, +1),
        one("P3", "acc(f_LS) > acc(f_scratch)", f"{pa['ls']:.2f}% vs {pa['scratch']:.2f}%", "[FIG1]", ls, top1, +1),
        one("P4", "#det(f_LS) < #det(f_scratch)", f"{pd['ls']} vs {pd['scratch']}", "[FIG1]", ls, det, -1),
        ordering("P5", "#det: KD > scratch > LS", f"{pd['kd']} > {pd['scratch']} > {pd['ls']}", "[FIG1]", det),
        one("P6a", "#object detectors: KD > scratch", "direction only, no numbers", "[BLOG]", k, obj, +1),
        one("P6b", "#object detectors: LS < scratch", "direction only, no numbers", "[BLOG]", ls, obj, -1),
        one("P6c", "#scene detectors: LS > scratch", "direction only, no numbers", "[BLOG]", ls, scene, +1),
        ordering("P7", "within-class entropy: KD > scratch > LS",
                 f"{pe['kd']:.4f} > {pe['scratch']:.4f} > {pe['ls']:.4f}", "[SUM]", ent),
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
    """Adjacent differences along the temperature grid (:func:`kdinterp.statistics.monotone`)."""
    names = [name for _, name in grid]
    comparisons = statistics.monotone(run.aligned(names, measure.value), direction)
    return tuple(Part(f"T={t1:g} \u2212 T={t0:g}", measure, c)
                 for (t0, _), (t1, _), c in zip(grid[:-1], grid[1:], comparisons, strict=True))


def extended_predictions(params: Params, run: RunResults) -> list[Prediction]:
    """Check P8-P11 of ``research/paper.md`` §7 where this run has the models they need.

    * P8: KD from a label-smoothed teacher: #det increases (P8a) and top-1 decreases (P8b) with T
      (>= 2 temperatures). A trend is read as the chain of adjacent paired differences along T
      (:func:`kdinterp.statistics.monotone`): it holds if every step holds, is contradicted if any
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
                       (_compare(run, grid[0][1], kd, det, -1),)),
        ]
    for method, (without, with_kd) in sorted(_feature_pairs(params).items()):
        paper = PAPER_FEATURE_DETECTORS.get(method)
        predictions.append(Prediction(
            f"P10-{method}", f"#det({method.upper()} + logit KD) > #det({method.upper()})",
            f"\u2248{paper[1]} vs \u2248{paper[0]}" if paper else "n/a", "[BAR]",
            (_compare(run, with_kd, without, det, +1),)))
    distilled = [name for name, spec in params.distilled.items() if not _ls_teacher(params, spec)]
    distilled += list(params.self_distilled)
    if len(distilled) > 1:
        parts = tuple(_compare(run, name, scratch, measure, +1) for name in distilled for measure in (top1, det))
        predictions.append(Prediction(
            "P11", "every KD method: top-1 and #det > f_scratch", f"e.g. 282-313 vs {PAPER_DETECTORS['scratch']}",
            "[BAR][SUM]", parts))
    return predictions


# --------------------------------------------------------------------------- markdown


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def _method(spec: DistilledParams) -> str:
    logit = f"T = {spec.temperature:g}, \u03b1 = {spec.alpha:g}"
    if spec.method == "kd":
        return f"KD ({logit})"
    return f"{spec.method.upper()} " + (f"+ logit KD ({logit})" if spec.alpha > 0 else "without logit KD")


def _seeds(params: Params) -> str:
    return ", ".join(str(s) for s in params.seeds)


def _header_section(params: Params, run: RunResults) -> str:
    """What was run: data, models, recipes, seeds, dissection settings, validation."""
    teachers = ", ".join(f"`{name}` {run.seeds_of(name)[0].arch}, seed {spec.seed}"
                         for name, spec in params.teachers.items())
    students = "; ".join(
        [f"`{name}` label smoothing \u03b5 = {spec.label_smoothing:g}" for name, spec in params.students.items()]
        + [f"`{name}` {_method(spec)} from `{spec.teacher}`" for name, spec in params.distilled.items()]
        + [f"`{name}` self-distilled {_method(spec)} from `{spec.teacher}` of the same seed"
           for name, spec in params.self_distilled.items()])
    roles = ", ".join(f"{PAPER_NOTATION[role]} = `{name}`" for role, name in run.roles.items())
    validation = {True: "passed", False: "**did not pass**", None: "unknown (the report has no `success` key)"}
    data = ("the concept world (synthetic, generated by `kdinterp world generate`)" if params.data.world_file
            else f"ImageFolder data at `{params.data.train_dir}`")
    recipe = params.student_recipe.optim
    scratch = run.by_role("scratch")[0]
    return "\n".join([
        "# Reproduction report: Han et al., ICML 2023",
        "",
        "Generated by stage `figures` (`kdinterp figures`) from this run's `outputs/`; do not edit by hand. "
        "Paper values are targets from `research/paper.md` (ImageNet, ResNet-18), shown for reference only.",
        "",
        f"- **Data:** {data}; top-1 on {scratch.val_images} validation images.",
        f"- **Teacher(s):** {teachers} (one model each, trained once).",
        f"- **Students:** {scratch.arch}, {recipe.epochs} epochs, batch {recipe.batch_size}, "
        f"lr {recipe.lr:g} ({recipe.schedule}); {students}.",
        f"- **Seeds:** every student is trained with each of the seeds {_seeds(params)} (n = {len(params.seeds)} "
        "per student); a seed fixes initialisation, data order and augmentation, so students of one seed are "
        "paired. Teacher seeds: " + ", ".join(f"`{n}` {spec.seed}" for n, spec in params.teachers.items()) + ".",
        f"- **Paper roles:** {roles}.",
        f"- **Dissection:** `{run.layer}`, quantile {run.quantile:g}, IoU threshold {run.iou_threshold:g}, "
        f"{run.probe_images} probe images (Broden layout), categories {', '.join(run.categories)}.",
        f"- **Validation:** the dissection tables {validation[run.validation_success]} Great Expectations "
        f"validation ({run.validation_tables} tables, `outputs/validation/dissection.json`).",
    ])


def _mean_sd(values: np.ndarray, fmt: str, suffix: str = "") -> str:
    """``65.25 ± 1.20%`` over seeds; just the value for one seed."""
    mean, sd, n = statistics.mean_sd(values)
    return f"{mean:{fmt}}{suffix}" if n == 1 else f"{mean:{fmt}} \u00b1 {sd:{fmt}}{suffix}"


def _agreement(run: RunResults, m: ModelResult) -> str:
    if m.key == run.reference_teacher:
        return "reference"
    return "n/a" if m.teacher_agreement is None else f"{m.teacher_agreement:.3f}"


def _role(m: ModelResult) -> str:
    return m.kind if m.role in (None, m.kind) else f"{m.kind}, paper's {PAPER_NOTATION[m.role]}"


def _per_model_section(run: RunResults) -> str:
    """One row per model: mean ± sd over its seeds, and n."""
    with_mass = all(m.same_type_mass is not None for m in run.models.values())
    header = ["model", "role", "architecture", "n", "top-1 (%)", "detectors", "units", "unique concepts",
              "within-class entropy (nats)", "teacher agreement"] + (["same-type mass"] if with_mass else [])
    rows = []
    for name in run.names:
        seeds = run.seeds_of(name)
        first = seeds[0]

        def col(metric: Metric, fmt: str, seeds: list[ModelResult] = seeds) -> str:
            return _mean_sd(np.array([metric(m) for m in seeds], dtype=np.float64), fmt)

        if first.key == run.reference_teacher:
            agreement = "reference"
        elif any(m.teacher_agreement is None for m in seeds):
            agreement = "n/a"
        else:
            agreement = col(lambda m: m.teacher_agreement, ".3f")
        row = [f"`{name}`", _role(first), first.arch, str(len(seeds)), col(lambda m: 100 * m.top1, ".2f"),
               col(lambda m: m.num_detectors, ".1f"), str(first.num_units), col(lambda m: m.num_unique_concepts, ".1f"),
               col(lambda m: m.within_class_entropy, ".4f"), agreement]
        if with_mass:
            row.append(col(lambda m: m.same_type_mass, ".3f"))
        rows.append(row)
    seeds = len(run.seeds)
    return "\n".join([
        "## Results per model (mean \u00b1 sd over seeds)", "",
        f"Each student: n = {seeds} seeds ({', '.join(map(str, run.seeds))}); a teacher: n = 1 (its own seed), "
        "so it has no sd. sd: sample standard deviation over seeds (ddof 1).", "",
        _table(header, rows), "",
        "Detectors: units of the dissected layer whose best concept has IoU \u2265 "
        f"{run.iou_threshold:g}, out of the layer's units. Teacher agreement: Pearson correlation of the "
        f"model's and the teacher's (`{run.reference_teacher}`) class-mean non-target predictions."
        + ("" if not with_mass else " Same-type mass: share of non-target probability on classes of the same "
           "object type" + ("" if run.same_type_mass_chance is None
                            else f" (chance {run.same_type_mass_chance:.3f})") + "."),
        "", f"![Figure 1 counterpart]({FIG1_FILE})", "", f"![Detectors per category]({PER_CATEGORY_FILE})",
    ])


def _per_seed_section(run: RunResults) -> str:
    """One row per (model, seed): the numbers every mean and every paired difference comes from."""
    with_mass = all(m.same_type_mass is not None for m in run.models.values())
    header = (["model", "seed", "top-1", "detectors", *run.categories, "unique concepts",
               "within-class entropy (nats)", "teacher agreement"] + (["same-type mass"] if with_mass else []))
    rows = []
    for m in run.models.values():
        row = [f"`{m.name}`", str(m.seed), f"{100 * m.top1:.2f}%", f"{m.num_detectors} / {m.num_units}",
               *(str(m.detectors.get(c, 0)) for c in run.categories), str(m.num_unique_concepts),
               f"{m.within_class_entropy:.4f}", _agreement(run, m)]
        if with_mass:
            row.append(f"{m.same_type_mass:.3f}")
        rows.append(row)
    return "\n".join(["## Results per model and seed", "",
                      "Category columns: detectors whose best concept is of that category.", "",
                      _table(header, rows)])


def _predictions_section(predictions: list[Prediction], run: RunResults) -> str:
    """Predictions of research/paper.md §7 with the paper's values, ours (mean difference, 95% CI), n, a verdict."""
    rows = [[p.pid, p.claim, f"{p.paper} {p.evidence}", p.ours, p.n, f"**{p.verdict}**"] for p in predictions]
    details = [[p.pid, part.label, part.measure.name, part.mean(), part.ci(), str(part.comparison.n),
                part.comparison.verdict] for p in predictions for part in p.parts]
    return "\n".join([
        "## Paper predictions (research/paper.md \u00a77)", "",
        f"Of {len(predictions)} predictions in this run (n = {len(run.seeds)} seeds per student): "
        f"{_counts([p.verdict for p in predictions])}.", "",
        "Verdicts come from paired 95% t-intervals over seeds: for each seed s, the difference "
        "d_s = a_s \u2212 b_s between two models trained with seed s (a teacher, trained once, is compared "
        "against each seed); the interval is mean(d) \u00b1 t(0.975, n \u2212 1) \u00b7 sd(d) / \u221an. "
        "**holds**: the interval excludes 0 in the paper's direction; **contradicted**: it excludes 0 in the "
        "other direction; **inconclusive**: it contains 0, or n < 2. Orderings (P5, P7) and trends (P8) are "
        "checked pair by pair (adjacent pairs): they hold only if every pair holds and are contradicted if any "
        "pair is; P11 likewise over every student and both measures. The paper's column holds its values, "
        "not ours.", "",
        _table(["ID", "prediction", f"{PAPER_LABEL} [evidence]", "this run: mean difference [95% CI]", "n",
                "verdict"], rows),
        "", "### Every paired comparison", "",
        _table(["ID", "difference", "measure", "mean", "95% CI", "n", "verdict"], details),
    ])


def _caveats_section(params: Params, run: RunResults) -> str:
    """What limits the comparison with the paper, with this run's numbers."""
    scratch = run.by_role("scratch")
    s = scratch[0]
    top1 = float(np.mean([m.top1 for m in scratch]))
    se = 100 * math.sqrt(top1 * (1 - top1) / s.val_images)
    share = ", ".join(
        f"{ROLE_LABELS[role]} {100 * np.mean([m.num_detectors / m.num_units for m in run.by_role(role)]):.0f}%"
        for role in STUDENT_ROLES)
    paper_share = ", ".join(f"{ROLE_LABELS[r]} {100 * PAPER_DETECTORS[r] / PAPER_NUM_UNITS:.0f}%"
                            for r in STUDENT_ROLES)
    data = ("synthetic data (the concept world, with its own concepts in Broden layout), not ImageNet and "
            "Broden" if params.data.world_file else f"the data in `{params.data.train_dir}`")
    n = len(params.seeds)
    return "\n".join([
        "## Caveats", "",
        f"These are small models (students: {s.arch}) trained briefly on {data}, so they test the paper's "
        f"directions, not its values. Detectors are counted over the {s.num_units} units of the students' "
        f"`{run.layer}`, not ResNet-18's {PAPER_NUM_UNITS}: compare shares ({share} of units here, means over "
        f"seeds; {paper_share} in the paper), not counts. The probe set has {run.probe_images} images "
        "(Broden: 63,305). Entropies depend on the number of classes, so only their ordering is comparable.",
        "",
        f"Every student was trained with n = {n} seeds ({_seeds(params)}); each teacher once. The intervals "
        "cover seed-to-seed variation of training (initialisation, data order, augmentation) on one data set, "
        "one probe set and one teacher, not variation over data sets or teachers. "
        + (f"With n = {n}, a 95% t-interval is mean \u00b1 {_t975(n):.2f} standard errors, so only large, "
           "consistent differences reach a verdict; **inconclusive** means this run cannot tell, not that the "
           "effect is absent. " if n >= 2 else
           "With one seed there is no interval, so every verdict is **inconclusive**. ")
        + f"With {s.val_images} validation images, one model's top-1 also has a sampling standard error of about "
        f"{se:.1f} pp, which is part of the seed-to-seed spread.",
    ])


def _t975(n: int) -> float:
    """``t(0.975, n - 1)``: the half-width of a 95% t-interval in standard errors."""
    return float(stats.t.ppf(0.975, n - 1))


def reproduction_markdown(params: Params, run: RunResults) -> str:
    """The text of ``REPRODUCTION.md``.

    Sections: header (data, models, seeds, dissection, validation), results per model (mean ± sd
    over seeds, n), results per (model, seed), predictions (P1-P7, and P8-P11 if checked: paper
    value, mean difference and 95% CI, n, verdict; then every paired comparison), caveats.

    Args:
        params: the run's parameters.
        run: this run's results (:func:`kdinterp.results.load_run`).

    Returns:
        Markdown text ending with a newline.
    """
    predictions = evaluate_predictions(run) + extended_predictions(params, run)
    sections = [_header_section(params, run), _per_model_section(run), _per_seed_section(run),
                _predictions_section(predictions, run), _caveats_section(params, run)]
    return "\n\n".join(sections) + "\n"
