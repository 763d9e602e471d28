"""Tests for kdinterp.reporting.figures, kdinterp.reporting.results and kdinterp.reporting.reproduction: stage ``figures``.

Each test writes a small, consistent ``outputs/`` tree (paths from :class:`kdinterp.core.study.Layout`)
for a teacher (one seed) and three students (scratch, ls, kd) at seeds 0, 1, 2, whose numbers make
some of the paper's predictions hold, some contradicted and one inconclusive, then checks the
figures, the tables and verdicts of REPRODUCTION.md, and the errors for missing or stale inputs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.container import ErrorbarContainer
from PIL import Image

from kdinterp.core import study
from kdinterp.core.config import ParamsError
from kdinterp.core.params import Params
from kdinterp.core.statistics import t_interval
from kdinterp.core.study import FIG1_FILE, PER_CATEGORY_FILE, REPRODUCTION_FILE, SENSITIVITY_FILE
from kdinterp.measures import diffroar, dissection, evaluation, similarity
from kdinterp.measures.registry import parse_params
from kdinterp.reporting.figures import plot_accuracy_detectors
from kdinterp.reporting.predictions import check_predictions
from kdinterp.reporting.reproduction import reproduction_markdown
from kdinterp.core.records import StaleOutputError
from kdinterp.reporting.results import load_run
from kdinterp.stages.figures import make_figures

IOU_THRESHOLD = 0.05
SEEDS = (0, 1, 2)
TEACHER_SEED = 5
OTHER = {"part": 6, "scene": 5, "material": 11, "texture": 5, "color": 3}


def _det(**per_category) -> dict[str, list[int]]:
    """Detectors per category, one count per seed (a scalar is the same at every seed)."""
    merged = {**OTHER, **per_category}
    return {c: list(v) if isinstance(v, (list, tuple)) else [v] * len(SEEDS) for c, v in merged.items()}


#: Per model, one value per seed (the teacher: one value): top-1, detectors per category, entropy.
#: Paired differences against scratch, seed by seed:
#:   kd - scratch: top-1 +3.5/+3.6/+3.4 pp, #det +12/+13/+12, objects +8/+9/+8, entropy +.10/+.11/+.11
#:   ls - scratch: top-1 +1/-2/+1 pp (mean 0), #det +4/+3/+5, objects +2/+2/+2, scenes +4/+3/+5
#:   scratch - ls: entropy +.20/+.17/+.23
#:   entropy (b): kd - scratch -.10/-.10/-.09, scratch - ls -.10/-.10/-.11
#: so P1, P2, P6a, P6c, P7a hold; P4, P5 (scratch > LS fails), P6b, P7b are contradicted; P3 is inconclusive.
MODELS: dict[str, dict] = {
    "teacher": {"top1": [0.8125], "units": 256, "entropy": [1.3561], "entropy_b": [2.5], "agreement": None,
                "detectors": {"object": [30], "part": [12], "scene": [8], "material": [14], "texture": [6],
                              "color": [4]}},
    "scratch": {"top1": [0.620, 0.600, 0.640], "units": 128, "entropy": [1.10, 1.12, 1.08],
                "entropy_b": [2.60, 2.62, 2.58], "agreement": 0.712, "diffroar": [0.20, 0.21, 0.22],
                "detectors": _det(object=[10, 11, 9])},
    "ls": {"top1": [0.630, 0.580, 0.650], "units": 128, "entropy": [0.90, 0.95, 0.85], "entropy_b": [2.70, 2.72, 2.69],
           "agreement": 0.655,
           "detectors": _det(object=[12, 13, 11], scene=[9, 8, 10], part=4, material=12, texture=4)},
    "random_init": {"top1": [0.04, 0.05, 0.04], "units": 128, "entropy": [3.1, 3.1, 3.1], "entropy_b": [3.0, 3.0, 3.0],
                    "agreement": 0.01, "detectors": _det(object=0, part=0, scene=0, material=0, texture=0, color=[1, 0, 1])},
    "kd": {"top1": [0.655, 0.636, 0.674], "units": 128, "entropy": [1.20, 1.23, 1.19], "entropy_b": [2.50, 2.52, 2.49],
           "agreement": 0.874, "diffroar": [0.30, 0.32, 0.31],
           "detectors": _det(object=[18, 20, 17], part=9, scene=4, material=13)},
}
EXPECTED = {"P1": "holds", "P2": "holds", "P3": "inconclusive", "P4": "contradicted", "P5": "contradicted",
            "P6a": "holds", "P6b": "contradicted", "P6c": "holds", "P7a": "holds",
            "P7b": "contradicted", "P13": "holds"}  # P13: KD - scratch DiffROAR +10/+11/+9 pp
VERDICT_ROW = r"^\| (P\d+[a-c]?(?:-\w+)?) \|.*\| \*\*(holds|contradicted|inconclusive)\*\* \|$"


def _raw(seeds: tuple[int, ...] = SEEDS) -> dict:
    optim = {"epochs": 3, "batch_size": 32, "lr": 0.05}
    return {
        "seeds": list(seeds),
        "world": {},
        "data": {"train_dir": "data/w/train", "val_dir": "data/w/val", "world_file": "data/w/world.json",
                 "image_size": 32, "augment": "crop_flip", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "teachers": {"teacher": {"model": {"arch": "resnet34", "width": 32, "small_input": True}, "optim": optim,
                                 "seed": TEACHER_SEED}},
        "student_recipe": {"model": {"arch": "resnet18", "width": 16, "small_input": True}, "optim": optim},
        "students": {"scratch": {"label_smoothing": 0.0}, "ls": {"label_smoothing": 0.1}},
        "distilled": {"kd": {"teacher": "teacher", "temperature": 4.0, "alpha": 0.5}},
        "dissection": {"broden_dir": "data/w/probe", "iou_threshold": IOU_THRESHOLD},
        "paper_models": {"teacher": "teacher", "scratch": "scratch", "ls": "ls", "kd": "kd"},
    }


def _params(paper_models: dict[str, str] | None = None, seeds: tuple[int, ...] = SEEDS,
            controls: bool = False) -> Params:
    raw = _raw(seeds)
    if controls:
        raw["controls"] = {"random_init": {}}
    if paper_models is not None:
        raw["paper_models"] = paper_models
    return parse_params(raw)


def _dump(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")


#: The grid of the sensitivity tables: at quantile 0.0025 and IoU 0.08 nothing is a detector (every
#: prediction there is a tie, so inconclusive: a flip); elsewhere the counts scale with the main one.
QUANTILES, THRESHOLDS = (0.0025, 0.005, 0.01), (0.02, 0.05, 0.08)
ENVIRONMENT = {"torch": "9.9.9-test", "threads": 2, "cpu": {"vendor": "TestVendor", "model": "Test CPU", "flags": ["avx2"]}}


def _write_sensitivity(path: Path, total: int, units: int) -> None:
    rows = ["basis,quantile,iou_threshold,num_units,num_detectors,num_unique_concepts,mean_best_iou"]
    for q in QUANTILES:
        for t in THRESHOLDS:
            count = 0 if (q, t) == (0.0025, 0.08) else round(total * 0.05 / t)
            rows.append(f"unit,{q},{t},{units},{count},{min(count, 9)},{0.01 + 0.001 * total:.4f}")
    rows += [f"rotated,0.005,{t},{units},{round(total * 0.05 / t) // 3},2,0.02" for t in THRESHOLDS]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _write_outputs(root: Path, params: Params | None = None, models: dict = MODELS) -> study.Layout:
    """A consistent outputs/ tree for every study model, written with the measures' own records."""
    params = params or _params()
    layout = study.Layout(root)
    entries = {}
    every = study.models(params)
    for model in every:
        m = models[model.name]
        i = SEEDS.index(model.seed) if model.group.per_seed else 0
        evaluation.EvaluationSummary(model=model.name, seed=model.seed, group=model.group.kind, role=model.role or "",
                                     top1=m["top1"][i], top5=0.95, nll=1.1, ece=0.03, num_images=1200).write(
            evaluation.MEASURE.path(layout, model, evaluation.METRICS))
        detectors = {c: counts[i] for c, counts in m["detectors"].items()}
        total = sum(detectors.values())
        dissection.DissectionSummary(
            model=model.name, seed=model.seed, layer="layer4", num_units=m["units"], num_images=1500, quantile=0.005,
            iou_threshold=IOU_THRESHOLD, num_detectors=total, num_unique_concepts=20 + i, detectors=detectors,
            unique_concepts={c: min(n, 3) for c, n in detectors.items()},
            probe_bootstrap=dissection.ProbeBootstrap(replicates=1000, blocks=20, mean=total, sd=1.5, low=total - 3,
                                                      high=total + 3)).write(
            dissection.MEASURE.path(layout, model, dissection.SUMMARY))
        _write_sensitivity(dissection.MEASURE.path(layout, model, dissection.SENSITIVITY), total, m["units"])
        _dump(layout.environment(model), ENVIRONMENT)
        if model.group.trained:   # a two-epoch history (stage figures writes the plot-ready tables from it)
            layout.history(model).write_text(f"epoch,lr,loss_ce,loss,train_top1,val_top1\n1,0.05,2.0,2.0,0.3,0.25\n"
                                             f"2,0.01,1.5,1.5,0.5,{m['top1'][i] / 100}\n")
        if diffroar.MEASURE.applies(model):
            value = m.get("diffroar", [0.1] * len(SEEDS))[i]
            diffroar.DiffROARSummary(
                model=model.name, seed=model.seed, group=model.group.kind, role=model.role or "",
                method=params.diffroar.method,
                evaluator=diffroar.EvaluatorRecord(arch="test", epochs=1, batch_size=8, lr=0.01, seed=0, width=4),
                num_train=10, num_val=10, fill=(0.0, 0.0, 0.0),
                by_k={f"{k:g}": diffroar.DiffROARPoint(acc_top=0.5 + value, acc_bottom=0.5, diffroar=value)
                      for k in params.diffroar.fractions}, diffroar_mean=value).write(
                diffroar.MEASURE.path(layout, model, diffroar.SUMMARY))
        entries[model.key] = similarity.ModelSimilarity(
            within_class_entropy=m["entropy"][i], nontarget_entropy=m["entropy_b"][i], same_type_mass=0.3,
            teacher_agreement=m["agreement"])
    similarity.SimilaritySummary(entropy_unit="nats", reference_teacher="teacher", models=entries,
                                 same_type_mass_chance=0.087).write(
        similarity.MEASURE.path(layout, None, similarity.SUMMARY))
    _dump(layout.dissection_validation, {"success": True, "tables": [{}] * (3 * len(every))})
    return layout


def _with(**changes: dict) -> dict:
    """MODELS with some fields of some models replaced; ``detectors`` is merged per category."""
    models = {name: dict(m) for name, m in MODELS.items()}
    for name, fields in changes.items():
        detectors = {**models[name]["detectors"], **fields.get("detectors", {})}
        models[name].update({**fields, "detectors": detectors})
    return models


def _verdicts(markdown: str) -> dict[str, str]:
    """Prediction ID -> verdict, from the predictions table of REPRODUCTION.md."""
    return dict(re.findall(VERDICT_ROW, markdown, flags=re.M))


def _section(markdown: str, title: str) -> str:
    return markdown.split(f"## {title}")[1].split("\n## ")[0]


def _rows(markdown: str, title: str, model: str) -> list[str]:
    return [line for line in _section(markdown, title).splitlines() if line.startswith(f"| `{model}` |")]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Run the stage once on MODELS: (paper_figures directory, REPRODUCTION.md text)."""
    root = tmp_path_factory.mktemp("run")
    make_figures(_params(), _write_outputs(root / "outputs"), root / "paper_figures")
    return root / "paper_figures", (root / "paper_figures" / REPRODUCTION_FILE).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", [FIG1_FILE, PER_CATEGORY_FILE, SENSITIVITY_FILE])
def test_figures_are_real_pngs(generated: tuple[Path, str], name: str) -> None:
    with Image.open(generated[0] / name) as image:
        image.load()
        assert image.format == "PNG"
        assert image.width >= 1200 and image.height >= 600
        assert round(image.info["dpi"][0]) == 150
        colors = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colors is None or len(colors) > 50  # a drawn chart, not a blank canvas
    assert not list(generated[0].glob(".*tmp*")), "atomic writes left temporary files"


def test_figure1_draws_the_mean_as_a_bar_and_every_seed_as_a_dot(tmp_path: Path) -> None:
    run = load_run(_params(), _write_outputs(tmp_path))
    fig = plot_accuracy_detectors(_params(), run)
    acc_run, _, det_run, _ = fig.axes[:4]
    heights = [round(bar.get_height(), 4) for bar in acc_run.patches]
    assert heights == pytest.approx([62.0, 65.5, 62.0])  # scratch, KD, LS means in percent
    dots = np.concatenate([c.get_offsets()[:, 1] for c in acc_run.collections if isinstance(c, PathCollection)])
    assert sorted(dots) == pytest.approx(sorted(100 * np.array(MODELS["scratch"]["top1"] + MODELS["kd"]["top1"]
                                                               + MODELS["ls"]["top1"])))
    whiskers = [c for c in acc_run.containers if isinstance(c, ErrorbarContainer)]
    for container, role in zip(whiskers, ("scratch", "kd", "ls"), strict=True):
        ci = t_interval(100 * np.array(MODELS[role]["top1"]))
        (segment,) = container.lines[2][0].get_segments()
        assert segment[:, 1] == pytest.approx([ci.low, ci.high])  # the 95% t-interval of the mean
    assert [bar.get_height() for bar in det_run.patches] == pytest.approx([40.0, 52 + 1 / 3, 44.0])
    assert "n = 3 seeds (0, 1, 2)" in acc_run.get_title()


def test_load_run_has_one_result_per_model_and_seed(tmp_path: Path) -> None:
    run = load_run(_params(), _write_outputs(tmp_path))
    assert list(run.models) == ["teacher", "scratch-0", "scratch-1", "scratch-2", "kd-0", "kd-1", "kd-2",
                                "ls-0", "ls-1", "ls-2"]
    kd1 = run.models["kd-1"]
    assert (kd1.name, kd1.seed, kd1.kind, kd1.role, kd1.arch) == ("kd", 1, "distilled", "kd", "resnet18, width 16")
    assert (kd1.evaluation.top1, kd1.dissection.num_detectors, kd1.dissection.detectors["object"]) == (0.636, 54, 20)
    teacher = run.models["teacher"]
    assert (teacher.seed, teacher.per_seed, teacher.arch) == (TEACHER_SEED, False, "resnet34, width 32")
    assert set(run.colors) == {"teacher", "scratch", "kd", "ls"}  # one colour per name, shared by its seeds
    kd, scratch = run.paired("kd", "scratch", lambda m: m.dissection.num_detectors)
    assert kd.tolist() == [52, 54, 51] and scratch.tolist() == [40, 41, 39]
    teacher_top1, kd_top1 = run.paired("teacher", "kd", lambda m: m.evaluation.top1)
    assert teacher_top1.tolist() == [0.8125] and kd_top1.tolist() == [0.655, 0.636, 0.674]


def test_every_prediction_gets_the_verdict_of_the_numbers(generated: tuple[Path, str]) -> None:
    md = generated[1]
    assert _verdicts(md) == EXPECTED
    assert "Of 11 predictions in this run (n = 3 seeds per student): 6 hold, 4 contradicted, 1 inconclusive." in md
    assert "Verdicts come from paired 95% t-intervals over seeds" in md


def test_prediction_rows_show_mean_difference_interval_and_n(generated: tuple[Path, str]) -> None:
    md = generated[1]
    # P2: differences 12, 13, 12: mean 12.33, sd 0.577, half-width t(0.975, 2) * 0.577 / sqrt(3) = 1.434.
    assert re.search(r"^\| P2 \|.*\| 312 vs 275 \[FIG1\] \| KD \u2212 Scratch: \+12\.3 detectors "
                     r"\[\+10\.9, \+13\.8\] \| 3 \| \*\*holds\*\* \|$", md, flags=re.M)
    # P3: differences +1, -2, +1 pp: mean 0, sd 1.732, half-width 4.303: the interval straddles 0.
    assert re.search(r"^\| P3 \|.*\| LS \u2212 Scratch: \+0\.00 pp \[\u22124\.30, \+4\.30\] \| 3 \| "
                     r"\*\*inconclusive\*\* \|$", md, flags=re.M)
    # P5: two pairs, the second contradicted.
    assert re.search(r"^\| P5 \|.*KD \u2212 Scratch: \+12\.3 detectors .*; Scratch \u2212 LS: \u22124\.0 detectors",
                     md, flags=re.M)
    details = _section(md, "Paper predictions").split("### Every paired comparison")[1]
    assert re.search(r"^\| P5 \| Scratch \u2212 LS \| #detectors \| \u22124\.0 detectors \| "
                     r"\[\u22126\.5, \u22121\.5\] \| n/a \| none \| 3 \| contradicted \|$", details, flags=re.M)


def test_per_seed_table_has_every_seeds_numbers(generated: tuple[Path, str]) -> None:
    rows = _rows(generated[1], "Results per model and seed", "kd")
    assert [row.split(" | ")[1] for row in rows] == ["0", "1", "2"]
    # seed 1: top-1, detectors, then object part scene material texture color, unique concepts, entropy.
    assert "| `kd` | 1 | 63.60% | 54 / 128 | 20 | 9 | 4 | 13 | 5 | 3 | 21 | 1.2300 | 2.5200 | 0.874 |" in rows[1]
    (teacher,) = _rows(generated[1], "Results per model and seed", "teacher")
    assert f"| `teacher` | {TEACHER_SEED} | 81.25% | 74 / 256 |" in teacher and "reference" in teacher


def test_per_model_table_has_mean_sd_and_n(generated: tuple[Path, str]) -> None:
    (kd,) = _rows(generated[1], "Results per model (mean", "kd")
    # top-1 65.5, 63.6, 67.4 %: mean 65.50, sd 1.90; detectors 52, 54, 51: mean 52.33, sd 1.53.
    for value in ("| 3 |", "65.50 \u00b1 1.90", "52.3 \u00b1 1.5", "1.2067 \u00b1 0.0208", "paper's f_KD",
                  "resnet18, width 16"):
        assert value in kd, value
    (teacher,) = _rows(generated[1], "Results per model (mean", "teacher")
    assert "| 1 | 81.25 | 74.0 |" in teacher and "\u00b1" not in teacher.split("| 1 |")[1].split("|")[1]


def test_paper_values_are_labelled_as_the_papers(generated: tuple[Path, str]) -> None:
    md = generated[1]
    assert "paper (ImageNet, ResNet-18)" in md
    for title in ("Results per model (mean", "Results per model and seed"):
        for line in _section(md, title).splitlines():
            assert "312" not in line and "70.80" not in line and "69.94" not in line, line


def test_header_states_what_was_run_and_the_seeds(generated: tuple[Path, str]) -> None:
    md = generated[1]
    header = md.split("## Results")[0]
    for text in ("concept world", "resnet34, width 32", "resnet18, width 16", "seeds 0, 1, 2 (n = 3 per student)",
                 f"`teacher` resnet34, width 32, seed {TEACHER_SEED}", "IoU threshold 0.05", "T = 4",
                 "\u03b5 = 0.1", "tables passed Great Expectations validation (30 tables"):
        assert text in header, text
    caveats = _section(md, "Caveats")
    assert "128 units" in caveats and "not ResNet-18's 512" in caveats
    assert "n = 3 seeds (0, 1, 2)" in caveats and "4.30 standard errors" in caveats
    for stale in ("one run with one seed", "single seed", "not tested for significance", "does not hold"):
        assert stale not in md, stale


def test_one_seed_gives_no_interval_and_only_inconclusive_verdicts(tmp_path: Path) -> None:
    params = _params(seeds=(1,))
    md = reproduction_markdown(params, load_run(params, _write_outputs(tmp_path, params)))
    assert set(_verdicts(md).values()) == {"inconclusive"}
    assert re.search(r"^\| P2 \|.*KD \u2212 Scratch: \+13\.0 detectors \(n = 1, no interval\) \| 1 \|", md, re.M)
    assert "With one seed there is no interval" in md


def _verdicts_for(models: dict, tmp_path: Path) -> dict[str, str]:
    params = _params()
    run = load_run(params, _write_outputs(tmp_path, params, models))
    return {p.pid: p.verdict for p in check_predictions(params, run) if p.pid != "P13"}


def test_verdicts_are_computed_not_fixed(tmp_path: Path) -> None:
    # Swap the roles' numbers: KD gets scratch's and scratch gets KD's, so every KD comparison flips;
    # LS's accuracy clearly above scratch's (now KD's old numbers), its objects below.
    models = _with(kd={**MODELS["scratch"]}, scratch={**MODELS["kd"]},
                   ls={"top1": [0.70, 0.69, 0.72], "detectors": {"object": [10, 12, 9]}})
    verdicts = _verdicts_for(models, tmp_path)
    assert {k: verdicts[k] for k in ("P1", "P2", "P3", "P6a", "P6b")} == {
        "P1": "contradicted", "P2": "contradicted", "P3": "holds", "P6a": "contradicted", "P6b": "holds"}


def test_orderings_need_both_pairs(tmp_path: Path) -> None:
    # Detectors: LS now clearly below scratch, so KD > scratch > LS holds pair by pair.
    # Entropy: scratch - LS = +.02, -.03, +.01: that pair is inconclusive, so P7a is too.
    models = _with(ls={"detectors": {"material": [2, 3, 1], "scene": [5, 5, 5], "object": [10, 11, 9]},
                       "entropy": [1.08, 1.15, 1.07]})
    verdicts = _verdicts_for(models, tmp_path)
    assert verdicts["P5"] == "holds" and verdicts["P4"] == "holds"
    assert verdicts["P7a"] == "inconclusive"


def test_a_tie_is_inconclusive(tmp_path: Path) -> None:
    scratch = MODELS["scratch"]
    same = {field: scratch[field] for field in ("top1", "entropy", "entropy_b", "detectors")}
    assert set(_verdicts_for(_with(kd=same, ls=same), tmp_path).values()) == {"inconclusive"}


def test_failed_validation_is_reported(tmp_path: Path) -> None:
    layout = _write_outputs(tmp_path)
    _dump(layout.dissection_validation, {"success": False, "tables": []})
    markdown = reproduction_markdown(_params(), load_run(_params(), layout))
    assert "tables **did not pass** Great Expectations" in markdown


def test_missing_kd_summary_names_the_file_and_stage(tmp_path: Path) -> None:
    params = _params()
    layout = _write_outputs(tmp_path / "outputs")
    kd1 = study.find(params, "kd", 1)
    dissection.MEASURE.path(layout, kd1, dissection.SUMMARY).unlink()
    with pytest.raises(FileNotFoundError, match=r"dissection/kd-1/summary\.json.*dvc repro -s dissect_distilled@kd-1"):
        make_figures(params, layout, tmp_path / "paper_figures")
    assert not (tmp_path / "paper_figures" / REPRODUCTION_FILE).exists()


def test_missing_metrics_names_the_evaluate_stage(tmp_path: Path) -> None:
    layout = _write_outputs(tmp_path)
    evaluation.MEASURE.path(layout, study.find(_params(), "scratch", 2), evaluation.METRICS).unlink()
    with pytest.raises(FileNotFoundError, match=r"evaluation/scratch-2/metrics\.json.*evaluate_student@scratch-2"):
        load_run(_params(), layout)


def test_missing_role_is_an_error(tmp_path: Path) -> None:
    params = _params({"teacher": "teacher", "scratch": "scratch", "ls": "ls"})
    with pytest.raises(ParamsError, match=r"paper_models.*\bkd\b"):
        load_run(params, _write_outputs(tmp_path))


def test_stale_dissection_threshold_is_an_error(tmp_path: Path) -> None:
    layout = _write_outputs(tmp_path)
    path = dissection.MEASURE.path(layout, study.find(_params(), "ls", 0), dissection.SUMMARY)
    _dump(path, {**json.loads(path.read_text()), "iou_threshold": 0.04})
    with pytest.raises(StaleOutputError, match=r"ls-0/summary\.json: iou_threshold 0\.04.*dissect_student@ls-0"):
        load_run(_params(), layout)


def test_metrics_of_another_seed_are_stale(tmp_path: Path) -> None:
    layout = _write_outputs(tmp_path)
    path = evaluation.MEASURE.path(layout, study.find(_params(), "kd", 2), evaluation.METRICS)
    _dump(path, {**json.loads(path.read_text()), "seed": 0})
    with pytest.raises(StaleOutputError,
                       match=r"kd-2/metrics\.json: seed 0 differs from kd-2's seed 2.*evaluate_distilled@kd-2"):
        load_run(_params(), layout)


def _all_students_params() -> Params:
    """Params with an LS-trained teacher, two temperatures from it, AT with and without logit KD, self-KD."""
    raw = _raw()
    raw["teachers"] = {name: {**raw["teachers"]["teacher"], "label_smoothing": ls}
                       for name, ls in (("teacher", 0.0), ("teacher_ls", 0.1))}
    raw["distilled"] = {"kd": {"teacher": "teacher"},
                        "kd_ls_t1": {"teacher": "teacher_ls", "temperature": 1.0, "alpha": 0.9},
                        "kd_ls_t4": {"teacher": "teacher_ls", "temperature": 4.0, "alpha": 0.9},
                        "at": {"teacher": "teacher", "method": "at", "alpha": 0.0},
                        "at_kd": {"teacher": "teacher", "method": "at", "alpha": 0.5}}
    raw["self_distilled"] = {"self_kd": {"teacher": "scratch"}}
    return parse_params(raw)


def test_p8_to_p11_are_checked_when_their_models_exist(tmp_path: Path) -> None:
    """kd_ls: detectors rise with T by 4 at every seed (P8a holds) but accuracy rises too, by 1 pp
    (P8b contradicted); T=1 has far fewer detectors than kd (P9 holds); AT gains detectors with
    logit KD (P10 holds); AT is far below scratch in accuracy (P11 contradicted)."""
    def model(top1: list[float], objects: list[int]) -> dict:
        return {"top1": top1, "units": 128, "entropy": [1.0, 1.0, 1.0], "entropy_b": [2.0, 2.0, 2.0], "agreement": 0.5,
                "detectors": _det(object=objects, part=0, scene=0, material=0, texture=0, color=0)}

    models = {**MODELS, "teacher_ls": {**MODELS["teacher"]},
              "kd_ls_t1": model([0.60, 0.61, 0.59], [10, 11, 10]), "kd_ls_t4": model([0.61, 0.62, 0.60], [14, 15, 14]),
              "at": model([0.55, 0.56, 0.54], [20, 21, 20]), "at_kd": model([0.58, 0.57, 0.59], [30, 29, 31]),
              "self_kd": model([0.70, 0.71, 0.69], [50, 50, 52])}
    params = _all_students_params()
    markdown = reproduction_markdown(params, load_run(params, _write_outputs(tmp_path, params, models)))
    rows = _verdicts(markdown)
    assert {k: rows[k] for k in ("P8a", "P8b", "P9", "P10-at", "P11")} == {
        "P8a": "holds", "P8b": "contradicted", "P9": "holds", "P10-at": "holds", "P11": "contradicted"}
    assert re.search(r"^\| P8a \|.*\| T=4 \u2212 T=1: \+4\.0 detectors \[\+4\.0, \+4\.0\] \| 3 \|", markdown, re.M)
    # P11: kd, at, at_kd and self_kd against scratch, top-1 and #det each. Hold: kd and self_kd (both);
    # contradicted: at's #det, at_kd's top-1 and #det; inconclusive: at's top-1.
    assert re.search(r"^\| P11 \|.*\| 8 comparisons: 4 hold, 3 contradicted, 1 inconclusive \(listed below\) \| 3 \|",
                     markdown, re.M)
    details = markdown.split("### Every paired comparison")[1]
    # at - scratch in top-1: -7, -4, -10 pp.
    assert re.search(r"^\| P11 \| at \u2212 Scratch \| top-1 \| \u22127\.00 pp \| \[\u221214\.45, \+0\.45\] \| "
                     r"n/a \| none \| 3 \| inconclusive \|$", details, re.M)
    assert "AT + logit KD" in markdown and "AT without logit KD" in markdown and "self-distilled" in markdown


def test_controls_compare_every_model_with_the_untrained_floor_and_the_rotated_basis(tmp_path: Path) -> None:
    params = _params(controls=True)
    markdown = reproduction_markdown(params, load_run(params, _write_outputs(tmp_path, params)))
    untrained, rotated = _section(markdown, "Controls").split("**Rotated basis**")
    # kd - random_init: (52, 54, 51) - (1, 0, 1) detectors = 51, 54, 50: mean 51.7, far above 0
    kd = next(line for line in untrained.splitlines() if line.startswith("| `kd` |"))
    assert kd.startswith("| `kd` | 52.3 | 0.7 | +51.7 [") and kd.endswith("| holds |")
    assert not any(line.startswith("| `random_init` |") for line in untrained.splitlines())
    # unit 52, 54, 51 vs rotated 17, 18, 17: unit - rotated = 35, 36, 34
    kd = next(line for line in rotated.splitlines() if line.startswith("| `kd` |"))
    assert kd.startswith("| `kd` | 3 | 52.3 | 17.3 | +35.0 [") and kd.endswith("| holds |")


def test_controls_section_lists_the_ladder_against_the_floor_and_the_roles_stay(tmp_path: Path) -> None:
    """The ladder (recalibrated init, a snapshot, the shuffled-label student) gets rows against the floor; no role."""
    raw = _raw()
    raw["student_recipe"]["snapshot_epochs"] = [2]
    raw["trained_controls"] = {"shuffled": {"label_smoothing": 0.0, "shuffle_labels": True}}
    raw["controls"] = {"random_init": {}, "random_init_bn": {"batchnorm": "recalibrated"},
                       "scratch_epoch2": {"init": "snapshot", "student": "scratch", "epoch": 2}}
    params = parse_params(raw)
    floor = MODELS["random_init"]
    models = {**MODELS, "random_init_bn": {**floor, "detectors": _det(object=[3, 4, 5], part=0, scene=0, material=0,
                                                                       texture=0, color=0)},
              "scratch_epoch2": {**MODELS["scratch"], "agreement": 0.5}, "shuffled": {**floor, "agreement": 0.02}}
    run = load_run(params, _write_outputs(tmp_path, params, models))
    assert run.roles == {"teacher": "teacher", "scratch": "scratch", "kd": "kd", "ls": "ls"}
    untrained = _section(reproduction_markdown(params, run), "Controls").split("**Rotated basis**")[0]
    rows = {line.split(" | ")[0][3:-1]: line for line in untrained.splitlines() if line.startswith("| `")}
    assert {"random_init_bn", "scratch_epoch2", "shuffled", "kd"} <= set(rows) and "random_init" not in rows
    # random_init_bn - random_init: (3, 4, 5) - (1, 0, 1) = 2, 4, 4
    assert rows["random_init_bn"].startswith("| `random_init_bn` | 4.0 | 0.7 | +3.3 [")


def test_sensitivity_reports_where_a_verdict_flips(generated: tuple[Path, str]) -> None:
    section = _section(generated[1], "Sensitivity of the detector verdicts")
    assert "**Verdicts flip inside the bands**" in section
    assert "P2 at q 0.0025, IoU 0.08: inconclusive" in section
    row = next(line for line in section.splitlines() if line.startswith("| 0.005 | 0.05 (params) |"))
    assert row == "| 0.005 | 0.05 (params) | holds | contradicted | contradicted |"  # as the main verdicts P2, P4, P5


def test_probe_section_sets_the_probe_sd_beside_the_seed_sd(generated: tuple[Path, str]) -> None:
    section = _section(generated[1], "How much of a detector count is the probe set's doing")
    kd = next(line for line in section.splitlines() if line.startswith("| `kd` |"))
    # kd detectors per seed 52, 54, 51 (sd 1.5); probe sd 1.5 each; intervals total -+ 3
    assert kd == "| `kd` | 3 | 52.3 | 1.5 | 52.3 | 1.5 | [49, 55], [51, 57], [48, 54] |"


def test_environment_comes_from_the_model_headers(generated: tuple[Path, str]) -> None:
    section = _section(generated[1], "Environment")
    assert "**Environment 1** (10 models:" in section and "| torch | 9.9.9-test |" in section
    assert "| CPU | TestVendor Test CPU" in section


def test_plot_tables_hold_every_trained_model_seed_and_grid_point(tmp_path: Path) -> None:
    """Stage figures writes the tables of `dvc plots show`: one row per (trained model, seed, epoch), and per
    (model, seed, IoU threshold) at the params' quantile and (model, seed, quantile) at the params' IoU threshold."""
    import pandas as pd

    params = _params()
    layout = _write_outputs(tmp_path / "outputs", params)
    make_figures(params, layout, tmp_path / "paper_figures")
    every = study.models(params)
    training = pd.read_csv(layout.plot_table(study.TRAINING_PLOT))
    trained = [m for m in every if m.group.trained]
    assert len(training) == 2 * len(trained) and set(training.epoch) == {1, 2}
    last = training[training.epoch == 2].set_index(["model", "seed"]).val_top1
    assert {(m.name, m.seed): last[m.name, m.seed] for m in trained} == pytest.approx(
        {(m.name, m.seed): MODELS[m.name]["top1"][SEEDS.index(m.seed) if m.group.per_seed else 0] / 100
         for m in trained})
    run = load_run(params, layout)
    by_iou = pd.read_csv(layout.plot_table(study.IOU_PLOT))
    at_params = by_iou[np.isclose(by_iou.iou_threshold, IOU_THRESHOLD)].set_index(["model", "seed"]).detectors
    for m in run.models.values():   # at the params' point, the count is the sensitivity grid's
        assert at_params[m.name, m.seed] == m.dissection.sensitivity["unit", run.quantile, IOU_THRESHOLD][0]
    by_quantile = pd.read_csv(layout.plot_table(study.QUANTILE_PLOT))
    assert set(by_quantile.groupby(["model", "seed"]).size()) == {by_quantile["quantile"].nunique()} and (
        len(by_quantile.groupby(["model", "seed"])) == len(every))
