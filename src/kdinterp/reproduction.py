"""``REPRODUCTION.md``: what was run, the results, and the paper's predictions checked on this run.

Predictions P1-P7 of ``research/paper.md`` §7 are checked on the paper's three students (roles
``scratch``, ``kd``, ``ls`` of ``params.paper_models``). P8-P11 are checked when the run has the
models they need (``profiles/all_students.yaml``): KD from a label-smoothed teacher over several
temperatures (P8, P9), feature-based KD with and without logit KD (P10), and every distilled
student against scratch (P11). Every number comes from the run; the paper's are shown beside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kdinterp.params import DistilledParams, Params
from kdinterp.results import (FIG1_FILE, PAPER_DETECTORS, PAPER_ENTROPY, PAPER_LABEL, PAPER_NOTATION,
                              PAPER_NUM_UNITS, PAPER_TOP1_PERCENT, PER_CATEGORY_FILE, ROLE_LABELS, STUDENT_ROLES,
                              ModelResult, RunResults, arch_label, signed)

__all__ = ["Prediction", "evaluate_predictions", "extended_predictions", "reproduction_markdown"]


@dataclass(frozen=True)
class Prediction:
    """One testable prediction of ``research/paper.md`` §7, checked on this run.

    Attributes:
        pid: ``P1`` ... ``P7``; the parts of P6 are ``P6a``, ``P6b``, ``P6c``.
        claim: the prediction, in the paper's notation.
        paper: the paper's values.
        evidence: the source tag of research/paper.md (``[FIG1]`` ...).
        ours: this run's values.
        holds: whether this run's numbers satisfy the (strict) inequality.
    """

    pid: str
    claim: str
    paper: str
    evidence: str
    ours: str
    holds: bool

    @property
    def verdict(self) -> str:
        """``holds`` or ``does not hold``."""
        return "holds" if self.holds else "does not hold"


def _acc(m: ModelResult) -> str:
    return f"{100 * m.top1:.2f}%"


def evaluate_predictions(run: RunResults) -> list[Prediction]:
    """Check predictions P1-P7 of ``research/paper.md`` §7 on this run (strict inequalities; a tie fails).

    Args:
        run: this run's results.

    Returns:
        P1-P5, P6a-P6c, P7, in that order.
    """
    s, k, ls = (run.by_role(role) for role in STUDENT_ROLES)
    pa, pd = PAPER_TOP1_PERCENT, PAPER_DETECTORS
    pe = PAPER_ENTROPY

    def acc_gap(m: ModelResult) -> str:
        return f"{_acc(m)} vs {_acc(s)} ({signed(100 * (m.top1 - s.top1), '.2f')} pp)"

    def det_gap(m: ModelResult, category: str | None = None) -> str:
        a, b = ((m.num_detectors, s.num_detectors) if category is None
                else (m.detectors.get(category, 0), s.detectors.get(category, 0)))
        return f"{a} vs {b} ({signed(a - b, 'd')})"

    obj = {m.name: m.detectors.get("object", 0) for m in (s, k, ls)}
    scene = {m.name: m.detectors.get("scene", 0) for m in (s, k, ls)}
    ent = {m.name: m.within_class_entropy for m in (s, k, ls)}
    return [
        Prediction("P1", "acc(f_KD) > acc(f_scratch)", f"{pa['kd']:.2f}% vs {pa['scratch']:.2f}%", "[FIG1]",
                   acc_gap(k), k.top1 > s.top1),
        Prediction("P2", "#det(f_KD) > #det(f_scratch)", f"{pd['kd']} vs {pd['scratch']}", "[FIG1]",
                   det_gap(k), k.num_detectors > s.num_detectors),
        Prediction("P3", "acc(f_LS) > acc(f_scratch)", f"{pa['ls']:.2f}% vs {pa['scratch']:.2f}%", "[FIG1]",
                   acc_gap(ls), ls.top1 > s.top1),
        Prediction("P4", "#det(f_LS) < #det(f_scratch)", f"{pd['ls']} vs {pd['scratch']}", "[FIG1]",
                   det_gap(ls), ls.num_detectors < s.num_detectors),
        Prediction("P5", "#det: KD > scratch > LS", f"{pd['kd']} > {pd['scratch']} > {pd['ls']}", "[FIG1]",
                   f"{k.num_detectors}, {s.num_detectors}, {ls.num_detectors}",
                   k.num_detectors > s.num_detectors > ls.num_detectors),
        Prediction("P6a", "#object detectors: KD > scratch", "direction only, no numbers", "[BLOG]",
                   det_gap(k, "object"), obj[k.name] > obj[s.name]),
        Prediction("P6b", "#object detectors: LS < scratch", "direction only, no numbers", "[BLOG]",
                   det_gap(ls, "object"), obj[ls.name] < obj[s.name]),
        Prediction("P6c", "#scene detectors: LS > scratch", "direction only, no numbers", "[BLOG]",
                   det_gap(ls, "scene"), scene[ls.name] > scene[s.name]),
        Prediction("P7", "within-class entropy: KD > scratch > LS",
                   f"{pe['kd']:.4f} > {pe['scratch']:.4f} > {pe['ls']:.4f}", "[SUM]",
                   f"{ent[k.name]:.4f}, {ent[s.name]:.4f}, {ent[ls.name]:.4f}",
                   ent[k.name] > ent[s.name] > ent[ls.name]),
    ]


#: Detectors with and without logit KD per feature method, read from a bar chart (research/paper.md §6, [BAR]).
PAPER_FEATURE_DETECTORS: dict[str, tuple[int, int]] = {"at": (287, 303), "ft": (304, 313), "crd": (282, 286),
                                                       "sskd": (304, 310)}


def _ls_teacher_grid(params: Params) -> list[tuple[float, str]]:
    """``(temperature, model)`` of logit-KD students of a label-smoothed teacher, by temperature."""
    return sorted((spec.temperature, name) for name, spec in params.distilled.items()
                  if spec.method == "kd" and spec.teacher in params.teachers
                  and params.teachers[spec.teacher].label_smoothing > 0)


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


def _strictly(values: list[float], increasing: bool) -> bool:
    return all((b > a) if increasing else (b < a) for a, b in zip(values, values[1:]))


def extended_predictions(params: Params, run: RunResults) -> list[Prediction]:
    """Check P8-P11 of ``research/paper.md`` §7 where this run has the models they need.

    * P8: KD from a label-smoothed teacher: #det increases and top-1 decreases with T (>= 2 temperatures).
    * P9: that student at the lowest T has fewer detectors than f_KD (KD from the normal teacher).
    * P10: per feature method, #det with logit KD > #det without.
    * P11: every student distilled from a normal teacher or by self-distillation beats f_scratch
      in top-1 and #det.

    Returns:
        The predictions that apply (an empty list for the default profile).
    """
    scratch, kd = run.by_role("scratch"), run.by_role("kd")
    models = run.models
    predictions = []
    grid = _ls_teacher_grid(params)
    if len(grid) >= 2:
        students = [models[name] for _, name in grid]
        shown = "; ".join(f"T={t:g}: {_acc(m)}, {m.num_detectors}" for (t, _), m in zip(grid, students, strict=True))
        dets, accs = [m.num_detectors for m in students], [m.top1 for m in students]
        predictions += [
            Prediction("P8a", "KD from an LS teacher: #det increases with T", "trend only", "[SUM]", shown,
                       _strictly(dets, increasing=True)),
            Prediction("P8b", "KD from an LS teacher: top-1 decreases with T", "trend only", "[SUM]", shown,
                       _strictly(accs, increasing=False)),
            Prediction("P9", "#det(KD from LS teacher, lowest T) < #det(f_KD)", "not stated numerically", "[INF]",
                       f"{students[0].num_detectors} vs {kd.num_detectors}",
                       students[0].num_detectors < kd.num_detectors),
        ]
    for method, (without, with_kd) in sorted(_feature_pairs(params).items()):
        a, b = models[without], models[with_kd]
        paper = PAPER_FEATURE_DETECTORS.get(method)
        predictions.append(Prediction(
            f"P10-{method}", f"#det({method.upper()} + logit KD) > #det({method.upper()})",
            f"\u2248{paper[1]} vs \u2248{paper[0]}" if paper else "n/a", "[BAR]",
            f"{b.num_detectors} vs {a.num_detectors} ({signed(b.num_detectors - a.num_detectors, 'd')})",
            b.num_detectors > a.num_detectors))
    distilled = [models[name] for name, spec in params.distilled.items()
                 if name in models and not (spec.teacher in params.teachers
                                            and params.teachers[spec.teacher].label_smoothing > 0)]
    if len(distilled) > 1:
        beaten = [m for m in distilled if m.top1 > scratch.top1 and m.num_detectors > scratch.num_detectors]
        shown = ", ".join(f"{m.name} {_acc(m)}/{m.num_detectors}" for m in distilled)
        predictions.append(Prediction(
            "P11", "every KD method: top-1 and #det > f_scratch", f"e.g. 282-313 vs {PAPER_DETECTORS['scratch']}",
            "[BAR][SUM]", f"{len(beaten)} of {len(distilled)} do (scratch {_acc(scratch)}/{scratch.num_detectors}): "
            f"{shown}", len(beaten) == len(distilled)))
    return predictions


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def _method(spec: DistilledParams) -> str:
    logit = f"T = {spec.temperature:g}, \u03b1 = {spec.alpha:g}"
    if spec.method == "kd":
        return f"KD ({logit})"
    return f"{spec.method.upper()} " + (f"+ logit KD ({logit})" if spec.alpha > 0 else "without logit KD")


def _header_section(params: Params, run: RunResults) -> str:
    """What was run: data, models, recipes, dissection settings, seed, validation."""
    teachers = ", ".join(f"`{name}` {arch_label(params, name)}" for name in params.teachers)
    students = "; ".join(
        [f"`{name}` label smoothing \u03b5 = {spec.label_smoothing:g}" for name, spec in params.students.items()]
        + [f"`{name}` {_method(spec)} from `{spec.teacher}`" for name, spec in params.distilled.items()])
    roles = ", ".join(f"{PAPER_NOTATION[role]} = `{name}`" for role, name in run.roles.items())
    validation = {True: "passed", False: "**did not pass**", None: "unknown (the report has no `success` key)"}
    data = ("the concept world (synthetic, generated by `kdinterp world generate`)" if params.data.world_file
            else f"ImageFolder data at `{params.data.train_dir}`")
    recipe = params.student_recipe.optim
    return "\n".join([
        "# Reproduction report: Han et al., ICML 2023",
        "",
        "Generated by stage `figures` (`kdinterp figures`) from this run's `outputs/`; do not edit by hand. "
        "Paper values are targets from `research/paper.md` (ImageNet, ResNet-18), shown for reference only.",
        "",
        f"- **Data:** {data}; top-1 on {run.by_role('scratch').val_images} validation images.",
        f"- **Teacher(s):** {teachers}.",
        f"- **Students:** {arch_label(params, run.roles['scratch'])}, {recipe.epochs} epochs, batch {recipe.batch_size}, "
        f"lr {recipe.lr:g} ({recipe.schedule}); {students}.",
        f"- **Paper roles:** {roles}.",
        f"- **Dissection:** `{run.layer}`, quantile {run.quantile:g}, IoU threshold {run.iou_threshold:g}, "
        f"{run.probe_images} probe images (Broden layout), categories {', '.join(run.categories)}.",
        f"- **Validation:** the dissection tables {validation[run.validation_success]} Great Expectations "
        f"validation ({run.validation_tables} tables, `outputs/validation/dissection.json`).",
        f"- **Seed:** {params.seed}. This is one run with one seed, so differences between models are not "
        "tested for significance; that needs several seeds.",
    ])


def _results_section(run: RunResults) -> str:
    """One row per model: role, top-1, detectors, unique concepts, entropy, teacher agreement."""
    with_mass = all(m.same_type_mass is not None for m in run.models.values())
    header = ["model", "role", "architecture", "top-1", "detectors", "unique concepts",
              "within-class entropy (nats)", "teacher agreement"]
    if with_mass:
        header.append("same-type mass")
    rows = []
    for m in run.models.values():
        role = m.kind if m.role in (None, m.kind) else f"{m.kind}, paper's {PAPER_NOTATION[m.role]}"
        agreement = ("reference" if m.name == run.reference_teacher
                     else "n/a" if m.teacher_agreement is None else f"{m.teacher_agreement:.3f}")
        row = [f"`{m.name}`", role, m.arch, _acc(m), f"{m.num_detectors} / {m.num_units}",
               str(m.num_unique_concepts), f"{m.within_class_entropy:.4f}", agreement]
        if with_mass:
            row.append(f"{m.same_type_mass:.3f}")
        rows.append(row)
    notes = ["Detectors: units of the dissected layer whose best concept has IoU \u2265 "
             f"{run.iou_threshold:g}, out of the layer's units. Teacher agreement: Pearson correlation of the "
             f"model's and the teacher's (`{run.reference_teacher}`) class-mean non-target predictions."]
    if with_mass:
        chance = "" if run.same_type_mass_chance is None else f" (chance {run.same_type_mass_chance:.3f})"
        notes.append(f"Same-type mass: share of non-target probability on classes of the same object type{chance}.")
    return "\n".join(["## Results (this run)", "", _table(header, rows), "", " ".join(notes), "",
                      f"![Figure 1 counterpart]({FIG1_FILE})", "",
                      f"![Detectors per category]({PER_CATEGORY_FILE})"])


def _predictions_section(predictions: list[Prediction]) -> str:
    """Predictions of research/paper.md §7 (P1-P7; P8-P11 when checked) with the paper's values, ours, a verdict."""
    rows = [[p.pid, p.claim, f"{p.paper} {p.evidence}", p.ours, f"**{p.verdict}**"] for p in predictions]
    held = sum(p.holds for p in predictions)
    return "\n".join([
        "## Paper predictions (research/paper.md \u00a77)", "",
        f"{held} of {len(predictions)} hold in this run. Verdicts are strict inequalities on this run's "
        "numbers (a tie does not hold); P6 and P8 are checked part by part.", "",
        _table(["ID", "prediction", f"{PAPER_LABEL} [evidence]", "this run", "verdict"], rows),
    ])


def _caveats_section(params: Params, run: RunResults) -> str:
    """What limits the comparison with the paper, with this run's numbers."""
    s = run.by_role("scratch")
    se = 100 * math.sqrt(s.top1 * (1 - s.top1) / s.val_images)
    students = [run.by_role(role) for role in STUDENT_ROLES]
    share = ", ".join(f"{m.label} {100 * m.num_detectors / m.num_units:.0f}%" for m in students)
    paper_share = ", ".join(f"{ROLE_LABELS[r]} {100 * PAPER_DETECTORS[r] / PAPER_NUM_UNITS:.0f}%"
                            for r in STUDENT_ROLES)
    data = ("synthetic data (the concept world, with its own concepts in Broden layout), not ImageNet and "
            "Broden" if params.data.world_file else f"the data in `{params.data.train_dir}`")
    return "\n".join([
        "## Caveats", "",
        f"These are small models (students: {s.arch}) trained briefly on {data}, so they test the paper's "
        f"directions, not its values. Detectors are counted over the {s.num_units} units of the students' "
        f"`{run.layer}`, not ResNet-18's {PAPER_NUM_UNITS}: compare shares ({share} of units here; "
        f"{paper_share} in the paper), not counts. The probe set has {run.probe_images} images (Broden: 63,305). "
        "Entropies depend on the number of classes, so only their ordering is comparable. "
        f"Everything comes from a single seed ({params.seed}); with {s.val_images} validation images, top-1 "
        f"alone has a sampling standard error of about {se:.1f} pp, so accuracy gaps below about "
        f"{2 * se:.1f} pp are within evaluation noise, before any seed-to-seed variation.",
    ])


def reproduction_markdown(params: Params, run: RunResults) -> str:
    """The text of ``REPRODUCTION.md``: header, results table, predictions (P1-P7, and P8-P11 if checked), caveats."""
    predictions = evaluate_predictions(run) + extended_predictions(params, run)
    sections = [_header_section(params, run), _results_section(run),
                _predictions_section(predictions), _caveats_section(params, run)]
    return "\n\n".join(sections) + "\n"
