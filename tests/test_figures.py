"""Tests for kdinterp.figures: stage ``figures`` (issue 2, item 8).

Each test writes a small, consistent ``outputs/`` tree for four models (teacher, scratch, ls, kd)
whose numbers make some of the paper's predictions hold and others fail, then checks the figures,
the verdicts in REPRODUCTION.md, and the errors for missing or stale inputs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from kdinterp.config import from_mapping
from kdinterp.config import ParamsError
from kdinterp.figures import make_figures
from kdinterp.reproduction import evaluate_predictions, reproduction_markdown
from kdinterp.results import FIG1_FILE, PER_CATEGORY_FILE, REPRODUCTION_FILE, FiguresInputError, load_run
from kdinterp.params import Params

IOU_THRESHOLD = 0.05

#: Per model: metrics role, top-1, detectors per category, unique concepts, units, entropy, teacher agreement.
#: Chosen so that P1, P2, P6a, P6c, P7 hold and P3, P4, P5, P6b do not.
MODELS: dict[str, dict] = {
    "teacher": {"role": "teacher", "top1": 0.8125, "unique": 41, "units": 256, "entropy": 1.3561, "agreement": None,
                "detectors": {"object": 30, "part": 12, "scene": 8, "material": 14, "texture": 6, "color": 4}},
    "scratch": {"role": "student", "top1": 0.6200, "unique": 23, "units": 128, "entropy": 1.1017, "agreement": 0.712,
                "detectors": {"object": 10, "part": 6, "scene": 5, "material": 11, "texture": 5, "color": 3}},
    "ls": {"role": "student", "top1": 0.6000, "unique": 21, "units": 128, "entropy": 0.9083, "agreement": 0.655,
           "detectors": {"object": 12, "part": 4, "scene": 9, "material": 12, "texture": 4, "color": 3}},
    "kd": {"role": "distilled", "top1": 0.6525, "unique": 29, "units": 128, "entropy": 1.2044, "agreement": 0.874,
           "detectors": {"object": 18, "part": 9, "scene": 4, "material": 13, "texture": 5, "color": 3}},
}
#: The verdict each prediction must get from MODELS.
EXPECTED = {"P1": "holds", "P2": "holds", "P3": "does not hold", "P4": "does not hold", "P5": "does not hold",
            "P6a": "holds", "P6b": "does not hold", "P6c": "holds", "P7": "holds"}
SEED = 7


def _params(paper_models: dict[str, str] | None = None) -> Params:
    optim = {"epochs": 3, "batch_size": 32, "lr": 0.05}
    return from_mapping(Params, {
        "seed": SEED,
        "world": {},
        "data": {"train_dir": "data/w/train", "val_dir": "data/w/val", "world_file": "data/w/world.json",
                 "image_size": 32, "augment": "crop_flip", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "teachers": {"teacher": {"model": {"arch": "resnet34", "width": 32, "small_input": True}, "optim": optim}},
        "student_recipe": {"model": {"arch": "resnet18", "width": 16, "small_input": True}, "optim": optim},
        "students": {"scratch": {"label_smoothing": 0.0}, "ls": {"label_smoothing": 0.1}},
        "distilled": {"kd": {"teacher": "teacher", "temperature": 4.0, "alpha": 0.5}},
        "dissection": {"broden_dir": "data/w/probe", "iou_threshold": IOU_THRESHOLD},
        "paper_models": paper_models or {"teacher": "teacher", "scratch": "scratch", "ls": "ls", "kd": "kd"},
    }, "")


def _dump(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")


def _write_outputs(root: Path, models: dict = MODELS) -> Path:
    """A consistent outputs/ tree: metrics, similarity, dissection summaries, validation report."""
    similarity = {"entropy_unit": "nats", "reference_teacher": "teacher", "same_type_mass_chance": 0.087,
                  "models": {}}
    for name, m in models.items():
        _dump(root / "metrics" / f"{name}.json", {"model": name, "role": m["role"], "top1": m["top1"], "top5": 0.95,
                                                  "nll": 1.1, "ece": 0.03, "num_images": 1200})
        detectors = m["detectors"]
        _dump(root / "dissection" / name / "summary.json", {
            "model": name, "layer": "layer4", "num_units": m["units"], "num_images": 1500, "quantile": 0.005,
            "iou_threshold": IOU_THRESHOLD, "num_detectors": sum(detectors.values()),
            "num_unique_concepts": m["unique"], "detectors": detectors,
            "unique_concepts": {c: min(n, 3) for c, n in detectors.items()}})
        entry = {"within_class_entropy": m["entropy"], "same_type_mass": 0.3}
        if m["agreement"] is not None:
            entry["teacher_agreement"] = m["agreement"]
        similarity["models"][name] = entry
    _dump(root / "metrics" / "similarity.json", similarity)
    _dump(root / "validation" / "dissection.json", {"success": True, "tables": [{}] * (3 * len(models))})
    return root


def _with(**changes: dict) -> dict:
    """MODELS with some fields of some models replaced; ``detectors`` is merged per category."""
    models = {name: dict(m) for name, m in MODELS.items()}
    for name, fields in changes.items():
        detectors = {**models[name]["detectors"], **fields.get("detectors", {})}
        models[name].update({**fields, "detectors": detectors})
    return models


def _verdicts(markdown: str) -> dict[str, str]:
    """Prediction ID -> verdict, from the predictions table of REPRODUCTION.md."""
    rows = re.findall(r"^\| (P\d[a-c]?) \|.*\| \*\*(holds|does not hold)\*\* \|$", markdown, flags=re.M)
    return dict(rows)


def _row(markdown: str, model: str) -> str:
    (line,) = [line for line in markdown.splitlines() if line.startswith(f"| `{model}` |")]
    return line


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Run the stage once on MODELS: (paper_figures directory, REPRODUCTION.md text)."""
    root = tmp_path_factory.mktemp("run")
    make_figures(_params(), _write_outputs(root / "outputs"), root / "paper_figures")
    return root / "paper_figures", (root / "paper_figures" / REPRODUCTION_FILE).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", [FIG1_FILE, PER_CATEGORY_FILE])
def test_figures_are_real_pngs(generated: tuple[Path, str], name: str) -> None:
    with Image.open(generated[0] / name) as image:
        image.load()
        assert image.format == "PNG"
        assert image.width >= 1200 and image.height >= 600
        assert round(image.info["dpi"][0]) == 150
        colors = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colors is None or len(colors) > 50  # a drawn chart, not a blank canvas
    assert not list(generated[0].glob(".*tmp*")), "atomic writes left temporary files"


def test_every_prediction_gets_the_verdict_of_the_numbers(generated: tuple[Path, str]) -> None:
    verdicts = _verdicts(generated[1])
    assert verdicts == EXPECTED
    assert {"holds", "does not hold"} <= set(verdicts.values())
    assert "5 of 9 hold in this run" in generated[1]


def _verdicts_for(models: dict, tmp_path: Path) -> dict[str, str]:
    return {p.pid: p.verdict for p in evaluate_predictions(load_run(_params(), _write_outputs(tmp_path, models)))}


def test_verdicts_are_computed_not_fixed(tmp_path: Path) -> None:
    # Every verdict flips: KD below scratch in accuracy, objects and total; LS above scratch in accuracy,
    # below it in total detectors (30 < 40) and objects, below it in scenes; scratch's entropy lowest.
    models = _with(kd={"top1": 0.61, "detectors": {"object": 8, "part": 5}},
                   ls={"top1": 0.63, "entropy": 1.0, "detectors": {"object": 2, "material": 8, "scene": 5}},
                   scratch={"entropy": 0.95})
    assert _verdicts_for(models, tmp_path) == {
        "P1": "does not hold", "P2": "does not hold", "P3": "holds", "P4": "holds", "P5": "does not hold",
        "P6a": "does not hold", "P6b": "holds", "P6c": "does not hold", "P7": "does not hold"}


def test_orderings_need_both_inequalities(tmp_path: Path) -> None:
    # KD > scratch > LS in detectors; KD > scratch but LS > scratch in entropy.
    models = _with(ls={"detectors": {"material": 2}}, scratch={"entropy": 0.8})
    verdicts = _verdicts_for(models, tmp_path)
    assert verdicts["P5"] == "holds" and verdicts["P7"] == "does not hold"


def test_a_tie_does_not_hold(tmp_path: Path) -> None:
    scratch = MODELS["scratch"]
    same = {field: scratch[field] for field in ("top1", "entropy", "detectors")}
    assert set(_verdicts_for(_with(kd=same, ls=same), tmp_path).values()) == {"does not hold"}


def test_results_table_has_this_runs_numbers(generated: tuple[Path, str]) -> None:
    md = generated[1]
    kd = _row(md, "kd")
    for value in ("65.25%", "52 / 128", "| 29 |", "1.2044", "0.874", "resnet18, width 16", "paper's f_KD"):
        assert value in kd
    teacher = _row(md, "teacher")
    assert "81.25%" in teacher and "74 / 256" in teacher and "reference" in teacher
    assert "40 / 128" in _row(md, "scratch") and "44 / 128" in _row(md, "ls")
    # Our measured values, not the paper's, in the predictions table.
    assert re.search(r"^\| P2 \|.*\| 52 vs 40 \(\+12\) \|", md, flags=re.M)
    assert re.search(r"^\| P7 \|.*\| 1\.2044, 1\.1017, 0\.9083 \|", md, flags=re.M)


def test_paper_values_are_labelled_as_the_papers(generated: tuple[Path, str]) -> None:
    md = generated[1]
    assert "paper (ImageNet, ResNet-18)" in md
    assert re.search(r"^\| P2 \|.*\| 312 vs 275 \[FIG1\] \|", md, flags=re.M)
    assert "312" not in _row(md, "kd") and "70.80" not in _row(md, "kd")


def test_header_states_what_was_run(generated: tuple[Path, str]) -> None:
    header = generated[1].split("## Results")[0]
    for text in ("concept world", "resnet34, width 32", "resnet18, width 16", f"**Seed:** {SEED}",
                 "IoU threshold 0.05", "one seed", "not tested for significance", "T = 4", "\u03b5 = 0.1",
                 "tables passed Great Expectations validation (12 tables"):
        assert text in header, text
    caveats = generated[1].split("## Caveats")[1]
    assert "128 units" in caveats and "not ResNet-18's 512" in caveats and "single seed" in caveats


def test_failed_validation_is_reported(tmp_path: Path) -> None:
    outputs = _write_outputs(tmp_path)
    _dump(outputs / "validation" / "dissection.json", {"success": False, "tables": []})
    markdown = reproduction_markdown(_params(), load_run(_params(), outputs))
    assert "tables **did not pass** Great Expectations" in markdown


def test_missing_kd_summary_names_the_file_and_stage(tmp_path: Path) -> None:
    outputs = _write_outputs(tmp_path / "outputs")
    (outputs / "dissection" / "kd" / "summary.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"dissection/kd/summary\.json.*dvc repro -s dissect_distilled@kd"):
        make_figures(_params(), outputs, tmp_path / "paper_figures")
    assert not (tmp_path / "paper_figures" / REPRODUCTION_FILE).exists()


def test_missing_metrics_names_the_evaluate_stage(tmp_path: Path) -> None:
    outputs = _write_outputs(tmp_path)
    (outputs / "metrics" / "scratch.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"metrics/scratch\.json.*evaluate_student@scratch"):
        load_run(_params(), outputs)


def test_missing_role_is_an_error(tmp_path: Path) -> None:
    params = _params({"teacher": "teacher", "scratch": "scratch", "ls": "ls"})
    with pytest.raises(ParamsError, match=r"paper_models.*\bkd\b"):
        load_run(params, _write_outputs(tmp_path))


def test_stale_dissection_threshold_is_an_error(tmp_path: Path) -> None:
    outputs = _write_outputs(tmp_path)
    path = outputs / "dissection" / "ls" / "summary.json"
    _dump(path, {**json.loads(path.read_text()), "iou_threshold": 0.04})
    with pytest.raises(FiguresInputError, match=r"ls/summary\.json: iou_threshold 0\.04.*dissect_student@ls"):
        load_run(_params(), outputs)


def _all_students_params() -> Params:
    """Params with an LS-trained teacher, two temperatures from it, AT with and without logit KD, self-KD."""
    raw = {
        "seed": SEED, "world": {},
        "data": {"train_dir": "data/w/train", "val_dir": "data/w/val", "world_file": "data/w/world.json",
                 "image_size": 32, "augment": "crop_flip", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "teachers": {name: {"model": {"arch": "resnet34", "width": 32, "small_input": True},
                            "optim": {"epochs": 3, "batch_size": 32, "lr": 0.05}, "label_smoothing": ls}
                     for name, ls in (("teacher", 0.0), ("teacher_ls", 0.1))},
        "student_recipe": {"model": {"arch": "resnet18", "width": 16, "small_input": True},
                           "optim": {"epochs": 3, "batch_size": 32, "lr": 0.05}},
        "students": {"scratch": {"label_smoothing": 0.0}, "ls": {"label_smoothing": 0.1}},
        "distilled": {"kd": {"teacher": "teacher"},
                      "kd_ls_t1": {"teacher": "teacher_ls", "temperature": 1.0, "alpha": 0.9},
                      "kd_ls_t4": {"teacher": "teacher_ls", "temperature": 4.0, "alpha": 0.9},
                      "at": {"teacher": "teacher", "method": "at", "alpha": 0.0},
                      "at_kd": {"teacher": "teacher", "method": "at", "alpha": 0.5},
                      "self_kd": {"teacher": "scratch"}},
        "dissection": {"broden_dir": "data/w/probe", "iou_threshold": IOU_THRESHOLD},
        "paper_models": {"teacher": "teacher", "scratch": "scratch", "ls": "ls", "kd": "kd"},
    }
    return from_mapping(Params, raw, "")


def test_p8_to_p11_are_checked_when_their_models_exist(tmp_path: Path) -> None:
    """kd_ls: detectors rise with T (P8a holds) but accuracy rises too (P8b fails); T=1 has fewer
    detectors than kd (P9 holds); AT gains detectors with logit KD (P10 holds); self_kd and kd beat
    scratch but at/at_kd do not in accuracy (P11 fails)."""
    def model(top1: float, objects: int, role: str = "distilled") -> dict:
        return {"role": role, "top1": top1, "unique": 5, "units": 128, "entropy": 1.0, "agreement": 0.5,
                "detectors": {"object": objects, "part": 0, "scene": 0, "material": 0, "texture": 0, "color": 0}}

    models = {**MODELS, "teacher_ls": {**MODELS["teacher"]},
              "kd_ls_t1": model(0.60, 10), "kd_ls_t4": model(0.61, 14),
              "at": model(0.55, 20), "at_kd": model(0.58, 30), "self_kd": model(0.70, 50)}
    params = _all_students_params()
    markdown = reproduction_markdown(params, load_run(params, _write_outputs(tmp_path, models)))
    rows = dict(re.findall(r"^\| (P\d+[a-c]?(?:-\w+)?) \|.*\| \*\*(holds|does not hold)\*\* \|$", markdown, re.M))
    assert {k: rows[k] for k in ("P8a", "P8b", "P9", "P10-at", "P11")} == {
        "P8a": "holds", "P8b": "does not hold", "P9": "holds", "P10-at": "holds", "P11": "does not hold"}
    assert "T=1: 60.00%, 10; T=4: 61.00%, 14" in markdown
    assert "AT + logit KD" in markdown and "AT without logit KD" in markdown
