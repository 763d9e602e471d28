"""Is the detector count a sound measure here? Controls, sensitivity bands and the probe-set spread.

Three sections of ``REPRODUCTION.md``, each from the dissect stage's outputs
(``summary.json``'s ``probe_bootstrap`` and ``sensitivity.csv``, :mod:`kdinterp.dissection.sensitivity`):

* **Controls.** The first control of params ``controls`` (the untrained initialisation of each
  seed, ``random_init``; Bau et al., CVPR 2017, §3.2) is the floor: every other model, the other
  controls of the ladder included (recalibrated BatchNorm, snapshots along training) and the
  shuffled-label student, minus the floor of its seed, as a paired t-interval. The rotated-basis
  control (``dissection.sensitivity.rotation_seed``) multiplies the
  layer output by a random orthogonal matrix: if detectors are axis-aligned, the unit basis has
  more of them than the rotated one (unit minus rotated, paired by seed).
* **Sensitivity.** The detector predictions of the table (:data:`kdinterp.reporting.predictions.PREDICTIONS`
  whose every part compares the detector count: P2, P4, P5 on the default) re-judged at every
  (quantile, IoU threshold) of the grid, and on a summary that needs no IoU threshold, the mean
  best IoU over units; the section says where a verdict flips.
* **Probe set.** How much of a model's detector count is the probe set's doing: the sd of the
  probe bootstrap beside the sd over training seeds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kdinterp.core import statistics
from kdinterp.core.params import Params
from kdinterp.core.study import SENSITIVITY_FILE
from kdinterp.measures.dissection import sensitivity_key
from kdinterp.reporting.paper import ROLE_LABELS, STUDENT_ROLES, signed
from kdinterp.reporting.predictions import PREDICTIONS, check_predictions
from kdinterp.reporting.quantities import Quantity, detectors_at, mean_best_iou
from kdinterp.reporting.results import ModelResult, RunResults

__all__ = ["controls_section", "markdown_table", "probe_section", "sensitivity_grid", "sensitivity_section",
           "sensitivity_verdicts"]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table: a header row, a rule, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def sensitivity_grid(run: RunResults) -> tuple[list[float], list[float]]:
    """The quantiles and IoU thresholds of the unit basis that every model's sensitivity.csv has."""
    common = set.intersection(*(set(m.dissection.sensitivity) for m in run.models.values()))
    unit = [k for k in common if k[0] == "unit"]
    return sorted({k[1] for k in unit}), sorted({k[2] for k in unit})


def _mean_ci(part_mean: float, low: float, high: float, fmt: str) -> str:
    if np.isnan(low):
        return f"{signed(part_mean, fmt)} (no interval)"
    return f"{signed(part_mean, fmt)} [{signed(low, fmt)}, {signed(high, fmt)}]"


def _paired(run: RunResults, a: str, b: str, metric: Callable[[ModelResult], float], fmt: str) -> tuple[str, str]:
    """``a − b`` over seeds with its 95% interval, and the verdict on "> 0"."""
    x, y = run.paired(a, b, metric)
    c = statistics.paired_difference(x, y, +1)
    return _mean_ci(c.mean, c.interval.low, c.interval.high, fmt), c.verdict


def _controls(run: RunResults) -> list[str]:
    return [name for name in run.names if run.seeds_of(name)[0].kind == "control"]


def controls_section(run: RunResults) -> str:
    """Trained minus untrained, and unit basis minus rotated basis, per model, paired by seed."""
    quantile, threshold = run.quantile, run.iou_threshold
    unit, rotated = sensitivity_key("unit", quantile, threshold), sensitivity_key("rotated", quantile, threshold)
    has_rotation = all(rotated in m.dissection.sensitivity for m in run.models.values())
    controls = _controls(run)
    lines = ["## Controls: is the detector count a sound measure?", ""]
    if controls:
        floor = controls[0]
        rows = []
        for name in run.names:
            if name == floor:
                continue
            diff, verdict = _paired(run, name, floor, lambda m: m.dissection.num_detectors, ".1f")
            rows.append([f"`{name}`", f"{np.mean(run.values(name, lambda m: m.dissection.num_detectors)):.1f}",
                         f"{np.mean(run.values(floor, lambda m: m.dissection.num_detectors)):.1f}", diff, verdict])
        lines += [f"**Untrained initialisation** (`{floor}`: the weights each seed's students start from, never "
                  "trained; Bau et al. 2017 dissect random networks the same way). A detector count that training "
                  "does not raise above this floor says nothing about what training taught.", "",
                  markdown_table(["model", "detectors (mean)", f"`{floor}` (mean)", "model \u2212 untrained [95% CI]",
                          "above the floor?"], rows), ""]
    else:
        lines += ["No untrained control in this run (params `controls` is empty).", ""]
    if has_rotation:
        rows = []
        for name in run.names:
            per_seed = run.seeds_of(name)
            a = np.array([m.dissection.sensitivity[unit][0] for m in per_seed], dtype=np.float64)
            b = np.array([m.dissection.sensitivity[rotated][0] for m in per_seed], dtype=np.float64)
            c = statistics.paired_difference(a, b, +1)
            rows.append([f"`{name}`", str(len(per_seed)), f"{a.mean():.1f}", f"{b.mean():.1f}",
                         _mean_ci(c.mean, c.interval.low, c.interval.high, ".1f"), c.verdict])
        lines += ["**Rotated basis** (Bau et al. 2017, \u00a73.2): the layer output times a random orthogonal "
                  "matrix (fixed seed), dissected with the same quantile and IoU threshold. It keeps everything "
                  "the layer represents but mixes its units; if interpretability is axis-aligned, the unit "
                  "basis has more detectors. *holds* below: unit minus rotated is above 0.", "",
                  markdown_table(["model", "n", "detectors, unit basis", "rotated basis", "unit \u2212 rotated [95% CI]",
                          "verdict"], rows)]
    else:
        lines += ["No rotated-basis control in this run (`dissection.sensitivity.rotation_seed` is null)."]
    return "\n".join(lines)


def sensitivity_verdicts(params: Params, run: RunResults, detectors: Quantity) -> dict[str, str]:
    """The detector predictions of the table (every part compares ``detectors``: P2, P4, P5 on the default)
    judged on ``detectors`` instead of the count at the params' settings: pid -> verdict."""
    return {p.pid: p.verdict for p in check_predictions(params, run, only={"detectors": detectors})}


def sensitivity_section(params: Params, run: RunResults, note: str = "") -> str:
    """The detector predictions over the (quantile, IoU threshold) grid and on the mean best IoU; ``note``
    is printed under the title (e.g. that the instrument failed its controls)."""
    quantiles, thresholds = sensitivity_grid(run)
    if not quantiles:
        return "## Sensitivity of the detector verdicts\n\nNo sensitivity tables in this run."
    main = sensitivity_verdicts(params, run, detectors_at("unit", run.quantile, run.iou_threshold))
    rows, flips = [], []
    for q in quantiles:
        for t in thresholds:
            verdicts = sensitivity_verdicts(params, run, detectors_at("unit", q, t))
            mark = " (params)" if np.isclose(q, run.quantile) and np.isclose(t, run.iou_threshold) else ""
            rows.append([f"{q:g}", f"{t:g}{mark}", *(verdicts[p] for p in main)])
            flips += [f"{p} at q {q:g}, IoU {t:g}: {v}" for p, v in verdicts.items() if v != main[p]]
    free = [[f"{q:g}", *sensitivity_verdicts(params, run, mean_best_iou(q)).values()] for q in quantiles]
    means = []
    for role in STUDENT_ROLES:
        name = run.roles[role]
        values = [run.values(name, mean_best_iou(q).value) for q in quantiles]
        means.append([ROLE_LABELS[role], *(f"{v.mean():.4f} \u00b1 {v.std(ddof=1) if v.size > 1 else 0:.4f}"
                                           for v in values)])
    claims = {spec.pid: spec.claim for spec in PREDICTIONS}
    at_params = ", ".join(f"{pid} {verdict}" for pid, verdict in main.items())
    summary = ("No verdict flips inside the bands: every setting gives the verdicts of the params' setting."
               if not flips else
               f"**Verdicts flip inside the bands** ({len(flips)} of {len(main) * len(rows)} cells differ from the "
               f"params' setting, where {at_params}): " + "; ".join(flips[:12]) + ("; \u2026" if len(flips) > 12 else "")
               + ".")
    return "\n".join([
        "## Sensitivity of the detector verdicts", "", *([f"**{note}**", ""] if note else []),
        "The detector predictions (" + ", ".join(f"{pid}: {claims[pid]}" for pid in main) + ") depend on two free "
        "choices of Network Dissection: the activation quantile that sets each unit's threshold and the IoU a "
        "detector needs. Below, the same paired t-interval verdicts over seeds at every setting of the grid "
        "(`dissection.sensitivity`), then on the mean best IoU over units, which needs no IoU threshold.", "",
        summary, "",
        markdown_table(["quantile", "IoU threshold", *main], rows), "",
        "Threshold-free: the same predictions on the mean over units of each unit's best IoU (mean \u00b1 sd "
        "over seeds below).", "",
        markdown_table(["quantile", *main], free), "",
        markdown_table(["model", *(f"mean best IoU, q {q:g}" for q in quantiles)], means), "",
        f"![Detectors vs IoU threshold and quantile]({SENSITIVITY_FILE})",
    ])


def probe_section(run: RunResults) -> str:
    """Per model: the detector count's sd over probe-set resamplings beside its sd over training seeds."""
    rows = []
    for name in run.names:
        seeds = run.seeds_of(name)
        counts = np.array([m.dissection.num_detectors for m in seeds], dtype=np.float64)
        probe = [m.dissection.probe_bootstrap for m in seeds]
        seed_sd = f"{counts.std(ddof=1):.1f}" if counts.size > 1 else "n/a"
        rows.append([f"`{name}`", str(len(seeds)), f"{counts.mean():.1f}", seed_sd,
                     f"{np.mean([p.mean for p in probe]):.1f}", f"{np.mean([p.sd for p in probe]):.1f}",
                     ", ".join(f"[{p.low:g}, {p.high:g}]" for p in probe)])
    first = next(iter(run.models.values())).dissection.probe_bootstrap
    return "\n".join([
        "## How much of a detector count is the probe set's doing", "",
        f"Probe bootstrap: {first.replicates} resamplings of the probe set in {first.blocks} blocks of "
        "consecutive images (the probe index interleaves scenes, close-ups and textures), drawn with "
        "replacement; the IoUs and detectors are recounted with each unit's threshold held at its full-set "
        "value, so this is the tally's spread given the thresholds. A unit's best IoU is a maximum over "
        "concepts, and a maximum of noisy estimates is biased upward: when the bootstrap mean lies above the "
        "observed count, the count itself leans on which probe images were drawn. Read the sd beside the sd "
        "over seeds: when it is as large, the spread between seeds is partly the probe set's.", "",
        markdown_table(["model", "n", "detectors (mean)", "sd over seeds", "bootstrap mean (mean over seeds)",
                "sd over probe resamplings (mean over seeds)", "95% probe interval per seed"], rows),
    ])
