"""The control ladder (kdinterp.reporting.ladder) and the four-way verdicts in REPRODUCTION.md.

The pure rung functions are checked on hand-made series; the ladder and the report on small ``outputs/``
trees written with the measures' own records (:func:`tests.test_figures._write_outputs`).
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from kdinterp.core.config import ParamsError
from kdinterp.core.params import Params
from kdinterp.measures.registry import parse_params
from kdinterp.reporting.ladder import (
    FAIL,
    FAILED,
    INCOMPLETE,
    MISSING,
    PASS,
    PASSED,
    Series,
    floor_criterion,
    instrument_ladder,
    rotation_criterion,
    shuffled_criterion,
    training_criterion,
)
from kdinterp.reporting.predictions import check_predictions
from kdinterp.reporting.quantities import calibrated_primary
from kdinterp.reporting.reproduction import NOT_JUDGED, reproduction_markdown
from kdinterp.reporting.results import load_run
from tests.test_figures import MODELS, _det, _raw, _section, _write_outputs


def _s(label: str, *values: float) -> Series:
    return Series(label, np.array(values, dtype=np.float64))


# ---------------------------------------------------------------- the rungs, on hand-made series

def test_floor_passes_below_the_share_and_fails_above_it() -> None:
    scratch = _s("scratch", 40, 41, 39)
    passed = floor_criterion(_s("untrained", 1, 0, 1), scratch, 0.25)
    assert passed.status == PASS and passed.means[0][1] == pytest.approx(2 / 3)
    (label, comparison), = passed.comparisons
    assert label == "scratch \u2212 untrained" and comparison.mean == pytest.approx(39.333, abs=1e-3)
    # 12, 11, 12: scratch - untrained is clearly > 0, but the floor is 29% of scratch (> 25%).
    high = floor_criterion(_s("untrained", 12, 11, 12), scratch, 0.25)
    assert high.status == FAIL and "29% of scratch" in high.note
    # Below the share but the paired interval contains 0 (one seed has untrained above scratch).
    noisy = floor_criterion(_s("untrained", 0, 0, 9), _s("scratch", 40, 2, 8), 0.5)
    assert noisy.status == FAIL


def test_a_missing_model_is_missing_not_a_crash() -> None:
    rung = shuffled_criterion(_s("scratch", 40, 41, 39), Series("shuffled (`shuffled`)", None, "no model 'shuffled'"))
    assert rung.status == MISSING and "no model 'shuffled'" in rung.note and rung.comparisons == ()


def test_shuffled_labels_must_lose_detectors() -> None:
    assert shuffled_criterion(_s("scratch", 40, 41, 39), _s("shuffled", 10, 12, 9)).status == PASS
    assert shuffled_criterion(_s("scratch", 40, 41, 39), _s("shuffled", 40, 42, 38)).status == FAIL


def test_rotation_uses_the_interval_for_seeds_and_the_value_for_one_model() -> None:
    assert rotation_criterion(_s("unit", 40, 41, 39), _s("rotated", 13, 13, 13)).status == PASS
    assert rotation_criterion(_s("unit", 40, 11, 39), _s("rotated", 13, 13, 13)).status == FAIL  # CI contains 0
    teacher = rotation_criterion(_s("unit", 74), _s("rotated", 24))
    assert teacher.status == PASS and "one model" in teacher.note
    assert rotation_criterion(_s("unit", 20), _s("rotated", 24)).status == FAIL


def test_training_must_rise_overall_and_never_fall() -> None:
    untrained, end = _s("untrained", 1, 0, 1), _s("scratch", 40, 41, 39)
    assert training_criterion([untrained, _s("epoch 4", 20, 22, 19), end]).status == PASS
    plateau = training_criterion([untrained, _s("epoch 4", 40, 41, 39), end])  # flat after the snapshot: a plateau
    assert plateau.status == PASS and len(plateau.comparisons) == 3  # end - untrained, then each step
    falls = training_criterion([untrained, _s("epoch 4", 60, 62, 61), end])  # the count falls after epoch 4
    assert falls.status == FAIL and "falls" in falls.note
    never = training_criterion([untrained, _s("epoch 4", 1, 1, 0), _s("scratch", 1, 0, 1)])  # no rise at all
    assert never.status == FAIL
    assert training_criterion([untrained, end]).status == PASS  # no snapshot: untrained < end


def test_the_calibrated_endpoint_reads_the_summary_when_present() -> None:
    calibrated = SimpleNamespace(primary=17)
    with_it = SimpleNamespace(dissection=SimpleNamespace(summary=SimpleNamespace(calibrated=calibrated)))
    assert calibrated_primary(with_it) == 17.0
    assert np.isnan(calibrated_primary(SimpleNamespace(dissection=SimpleNamespace(summary=SimpleNamespace()))))
    none = SimpleNamespace(dissection=SimpleNamespace(summary=SimpleNamespace(calibrated=None)))
    assert np.isnan(calibrated_primary(none))


# ---------------------------------------------------------------- the ladder and the report, on written outputs

#: A student trained on shuffled labels: far fewer detectors than scratch (40, 41, 39) at every seed.
SHUFFLED = {**MODELS["scratch"], "detectors": _det(object=[2, 3, 2], part=1, scene=1, material=2, texture=1, color=0)}
#: KD within one detector of scratch at every seed: KD - scratch = +1, -1, 0 (P2's margin: 3.6% of 128 = 4.6).
KD_EQUIVALENT = {**MODELS["kd"], "detectors": _det(object=[11, 10, 9])}


def _params(*, endpoint: str = "detectors", max_share: float = 0.25, margins: dict | None = None,
            shuffled: bool = True) -> Params:
    raw = _raw()
    raw["controls"] = {"random_init": {}}
    if shuffled:
        raw["trained_controls"] = {"shuffled": {"label_smoothing": 0.0}}
    raw["instrument"] = {"endpoint": endpoint,
                         "controls": {"untrained": "random_init", "shuffled": "shuffled", "snapshots": []},
                         "criteria": {"untrained_max_share": max_share}}
    raw["verdicts"] = {"equivalence_margin": {"P2": 0.036, "P4": 0.0545, "P5": 0.036} if margins is None else margins}
    return parse_params(raw)


def _markdown(tmp_path: Path, params: Params, **changes: dict) -> str:
    models = {**MODELS, "shuffled": SHUFFLED, **changes}
    return reproduction_markdown(params, load_run(params, _write_outputs(tmp_path, params, models)))


def _verdict_of(markdown: str, pid: str) -> str:
    return re.search(rf"^\| {pid} \|.*\| \*\*([^*]+)\*\* \|$", markdown, re.M).group(1)


def test_the_ladder_passes_on_a_sound_instrument_and_comes_first(tmp_path: Path) -> None:
    params = _params()
    run = load_run(params, _write_outputs(tmp_path / "a", params, {**MODELS, "shuffled": SHUFFLED}))
    ladder = instrument_ladder(params, run)
    assert ladder.status == PASSED, [(c.name, c.status, c.note) for c in ladder.criteria]
    assert [c.name for c in ladder.criteria] == [
        "floor: untrained (`random_init`)", "shuffled labels: shuffled (`shuffled`)",
        "rotated basis: scratch (`scratch`)", "rotated basis: teacher (`teacher`)", "rises with training"]
    markdown = _markdown(tmp_path / "b", params)
    sections = re.findall(r"^## (.+)$", markdown, re.M)
    assert sections[0].startswith("Control ladder")
    assert sections.index("Paper predictions (research/paper.md \u00a77)") > 0
    assert "**The instrument passed every control.**" in markdown
    assert _verdict_of(markdown, "P2") == "holds"


def test_a_failed_rung_says_so_and_the_detector_predictions_are_not_judged(tmp_path: Path) -> None:
    # untrained (0.7 on average) is 1.7% of scratch (40): above a pre-registered share of 1%.
    markdown = _markdown(tmp_path, _params(max_share=0.01))
    ladder = _section(markdown, "Control ladder")
    assert "**The instrument failed its controls** (floor: untrained (`random_init`))" in ladder
    assert re.search(r"^\| floor: untrained \(`random_init`\) \|.*\| \*\*fail\*\* \(untrained is 2% of scratch\) \|$",
                     ladder, re.M)
    for pid in ("P2", "P4", "P5", "P6a"):  # detector counts
        assert _verdict_of(markdown, pid) == NOT_JUDGED
    assert _verdict_of(markdown, "P1") == "holds" and _verdict_of(markdown, "P7a") == "holds"  # top-1, entropy
    # The numbers are still shown, and the count says how many were not judged.
    assert re.search(r"^\| P2 \|.*KD \u2212 Scratch: \+12\.3 detectors \[\+10\.9, \+13\.8\]", markdown, re.M)
    assert re.search(r"predictions in this run \(n = 3 seeds per student\): .*\d+ not judged: instrument failed",
                     markdown)
    assert "these verdicts are not judged" in _section(markdown, "Sensitivity of the detector verdicts")


def test_missing_controls_leave_the_ladder_incomplete_but_the_predictions_judged(tmp_path: Path) -> None:
    params = _params(shuffled=False)
    markdown = _markdown(tmp_path, params)
    assert "**The controls are incomplete** (missing: shuffled labels: shuffled (`shuffled`))" in markdown
    assert re.search(r"^\| shuffled labels: shuffled \(`shuffled`\) \|.*\| \*\*missing\*\* \(shuffled \(`shuffled`\): "
                     r"no model 'shuffled' in this run\) \|$", markdown, re.M)
    assert _verdict_of(markdown, "P2") == "holds"
    ladder = instrument_ladder(params, load_run(params, _write_outputs(tmp_path / "b", params)))
    assert ladder.status == INCOMPLETE


def test_the_calibrated_endpoint_is_missing_until_the_dissection_writes_it(tmp_path: Path) -> None:
    params = _params(endpoint="calibrated_primary")
    run = load_run(params, _write_outputs(tmp_path, params, {**MODELS, "shuffled": SHUFFLED}))
    ladder = instrument_ladder(params, run)
    statuses = {c.name: c.status for c in ladder.criteria}
    assert statuses["floor: untrained (`random_init`)"] == MISSING and statuses["rises with training"] == MISSING
    # the calibrated endpoint has a rotated-basis twin (calibrated_primary_rotated): missing too
    assert statuses["rotated basis: scratch (`scratch`)"] == MISSING
    assert ladder.status == INCOMPLETE and "not measured" in ladder.criteria[0].note


def test_a_prediction_on_an_endpoint_that_was_not_measured_is_reported_not_measured(tmp_path: Path) -> None:
    params = _params(endpoint="calibrated_primary")
    markdown = _markdown(tmp_path, params)  # no model has a calibrated count: NaN at every seed
    for pid in ("P2", "P4", "P5"):
        assert _verdict_of(markdown, pid) == "not measured"
    assert _verdict_of(markdown, "P1") in ("holds", "contradicted", "equivalent", "inconclusive")  # top-1 is measured
    details = markdown.split("### Every paired comparison")[1]
    assert re.search(r"^\| P2 \| KD \u2212 Scratch \| .* \| n/a \| \(not measured\) \| n/a \| \u00b1?.* \| 0 \| "
                     r"not measured \|$", details, re.M)
    assert re.search(r"Of \d+ predictions in this run .*\b3 not measured\b", markdown)


def test_an_equivalent_verdict_appears_when_the_90_percent_interval_is_inside_the_margin(tmp_path: Path) -> None:
    markdown = _markdown(tmp_path, _params(), kd=KD_EQUIVALENT)
    assert _verdict_of(markdown, "P2") == "equivalent"
    # KD - scratch: +1, -1, 0: 90% CI +-2.920 / sqrt(3) = +-1.686, inside the margin 0.036 x 128 = 4.6.
    details = markdown.split("### Every paired comparison")[1]
    assert re.search(r"^\| P2 \| KD \u2212 Scratch \| #detectors \| \+0\.0 detectors \| \[\u22122\.5, \+2\.5\] \| "
                     r"\[\u22121\.7, \+1\.7\] \| \u00b14\.6 \| 3 \| equivalent \|$", details, re.M)
    assert _verdict_of(markdown, "P1") == "holds"  # no margin on top-1: never equivalent
    assert "**equivalent**: neither, and the 90% interval" in markdown
    # With a margin below the 90% interval's reach the same numbers are inconclusive.
    tight = _markdown(tmp_path / "tight", _params(margins={"P2": 0.01}), kd=KD_EQUIVALENT)
    assert _verdict_of(tight, "P2") == "inconclusive"


def test_the_report_sizes_the_seeds_from_a_control_difference(tmp_path: Path) -> None:
    markdown = _markdown(tmp_path, _params())
    # scratch - shuffled: 40 - 7, 41 - 8, 39 - 7 = 33, 33, 32: sd 0.577; P2's margin 4.6 detectors.
    assert re.search(r"planned with the between-seed sd of scratch \(`scratch`\) \u2212 shuffled \(`shuffled`\) "
                     r"\(0\.58 detectors, n = 3\).*P2 \(\u03b4 = 4\.6 detectors\): 3 to detect a difference of \u03b4, "
                     r"2 to show equivalence", markdown)


def test_margins_and_endpoint_are_checked_with_the_key_and_the_fix(tmp_path: Path) -> None:
    params = _params()
    run = load_run(params, _write_outputs(tmp_path, params, {**MODELS, "shuffled": SHUFFLED}))
    with pytest.raises(ParamsError, match=r"verdicts\.equivalence_margin\.P1: P1 compares top-1, not a count of units.*"
                                          r"remove it"):
        check_predictions(_params(margins={"P1": 0.01}), run)
    with pytest.raises(ParamsError, match=r"verdicts\.equivalence_margin\.P99: no such prediction.*fix the id"):
        check_predictions(_params(margins={"P99": 0.01}), run)
    with pytest.raises(ParamsError, match=r"verdicts\.equivalence_margin\.P2: must be a share of units in \(0, 1\]"):
        _params(margins={"P2": 1.5})
    with pytest.raises(ParamsError, match=r"instrument\.endpoint: unknown quantity 'dets'; set one of top1, top5, detectors"):
        instrument_ladder(_params(endpoint="dets"), run)
    with pytest.raises(ParamsError, match=r"instrument\.criteria\.untrained_max_share: must be in \[0, 1\]"):
        _params(max_share=2.0)
    raw = _raw()
    raw["instrument"] = {"endpoint": "detectors", "controls": {}, "criteria": {}}
    with pytest.raises(ParamsError, match=r"instrument\.criteria\.untrained_max_share: required key is missing"):
        parse_params(raw)


def test_no_instrument_section_is_said_plainly(tmp_path: Path) -> None:
    params = parse_params(_raw())
    markdown = reproduction_markdown(params, load_run(params, _write_outputs(tmp_path, params)))
    assert "No `instrument` section in params.yaml: the control ladder is not judged" in markdown
    assert "No equivalence margins in params" in markdown


def test_the_per_model_table_shows_the_endpoint_beside_the_fixed_threshold_count(tmp_path: Path) -> None:
    """A calibrated endpoint gets its own column; the fixed-threshold endpoint is the detectors column itself."""
    from kdinterp.reporting.quantities import QUANTITIES
    from kdinterp.reporting.reproduction import _per_model_section

    params = _params()
    run = load_run(params, _write_outputs(tmp_path, params, {**MODELS, "shuffled": SHUFFLED}))
    with_endpoint = _per_model_section(run, QUANTITIES["calibrated_primary"])
    assert "| detectors | #detectors (calibrated, primary categories) (endpoint) |" in with_endpoint
    assert "(endpoint)" not in _per_model_section(run, QUANTITIES["detectors"])
    assert "(endpoint)" not in _per_model_section(run)
