"""Stage ``report``: static pages that open from disk, units by IoU, escaped names, masks drawn right."""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import write_broden  # tests/ is on sys.path (pytest rootdir conftest)
from PIL import Image
from typer.testing import CliRunner

from kdinterp.cli import app
from kdinterp.core import study
from kdinterp.core.io import write_json
from kdinterp.core.params import Params
from kdinterp.measures import dissection
from kdinterp.measures.registry import load_params
from kdinterp.core.records import StaleOutputError
from kdinterp.reporting.dissections import ReportInputError
from kdinterp.reporting.strips import DIM, GAP
from kdinterp.stages.report import write_report

ROOT = Path(__file__).resolve().parents[1]
TILE = 16
THRESHOLD = 0.5
GREY, DARK = 200, 100  # constant probe images 0 (8 x 8) and 5 (8 x 16)
CATEGORIES = ("object", "scene", "material", "color")  # those of the probe set, in the paper's order

#: Unit 1 of `scratch` on image 0: its 2x2 map [[1, 0.4], [0, 0]] upsampled to 8x8 (align_corners=False).
#: Along each axis the first input pixel weighs w = [1, 1, .875, .625, .375, .125, 0, 0], so the value at
#: (r, c) is w[r] * (w[c] + 0.4 * (1 - w[c])), i.e. w[r] * [1, 1, .925, .775, .625, .475, .4, .4][c]; > 0.5:
HAND_MASK = np.array([[1, 1, 1, 1, 1, 0, 0, 0],
                      [1, 1, 1, 1, 1, 0, 0, 0],
                      [1, 1, 1, 1, 1, 0, 0, 0],
                      [1, 1, 1, 0, 0, 0, 0, 0],
                      *[[0] * 8] * 4], dtype=bool)

#: (concept, category, iou) per unit; `scratch` by IoU: units 1, 3, 0, 2. `ls` has no detector.
UNITS = {
    "scratch": [("sky", "material", 0.02), ("a<b&c", "object", 0.30), ("", "", 0.0), ("red-c", "color", 0.10)],
    "ls": [("sky", "material", 0.04), ("a<b&c", "object", 0.01), ("red-c", "color", 0.03), ("", "", 0.0)],
}
#: The seeds of the fixture; at seed 1, `scratch`'s unit 3 falls below the IoU threshold (0.04 < 0.05).
SEEDS = (0, 1)
KEYS = ("scratch-0", "scratch-1", "ls-0", "ls-1")


def _units(name: str, seed: int) -> list[tuple[str, str, float]]:
    units = list(UNITS[name])
    if (name, seed) == ("scratch", 1):
        units[3] = ("red-c", "color", 0.04)
    return units


def _probe(root: Path) -> Path:
    """Six probe images: 0 grey 8x8, 5 dark 8 high x 16 wide, the others random."""
    labels = {1: ("a<b&c", "object"), 2: ("sky", "material"), 3: ("red-c", "color"), 4: ("beach-s", "scene")}
    obj = np.zeros((8, 8), dtype=np.int64)
    obj[:4, :4] = 1
    rows = [{"object": [obj], "scene": [4]} for _ in range(6)]
    rows[0]["image"] = np.full((8, 8, 3), GREY, dtype=np.uint8)
    rows[5]["image"] = np.full((8, 16, 3), DARK, dtype=np.uint8)
    return write_broden(root, labels, rows, image_size=8, seg_size=8)


def _write_dissection(directory: Path, model: study.Model, units: list[tuple[str, str, float]], maps: np.ndarray,
                      image_index: np.ndarray) -> None:
    """units.csv, summary.json, thresholds.npy and top_images.npz as the dissect stage writes them."""
    iou_threshold = 0.05
    table = pd.DataFrame({
        "unit": np.arange(len(units)),
        "concept": [u[0] for u in units],
        "concept_id": [{"a<b&c": 1, "sky": 2, "red-c": 3}.get(u[0], 0) for u in units],
        "category": [u[1] for u in units],
        "iou": [u[2] for u in units],
    })
    table["detector"] = table["iou"] >= iou_threshold
    for c in CATEGORIES:
        table[f"{c}_concept"] = np.where(table["category"] == c, table["concept"], "")
        table[f"{c}_iou"] = np.where(table["category"] == c, table["iou"], 0.0)
    directory.mkdir(parents=True)
    table.to_csv(directory / dissection.UNITS.name, index=False)
    detectors = table[table["detector"]]
    dissection.DissectionSummary(
        model=model.name, seed=model.seed, layer="layer4", num_units=len(units), num_images=6, quantile=0.005,
        iou_threshold=iou_threshold, num_detectors=len(detectors),
        num_unique_concepts=int(detectors["concept"].nunique()),
        detectors={c: int((detectors["category"] == c).sum()) for c in CATEGORIES},
        unique_concepts={c: int(detectors.loc[detectors["category"] == c, "concept"].nunique()) for c in CATEGORIES},
        probe_bootstrap=dissection.ProbeBootstrap(replicates=2, blocks=2, mean=1.0, sd=0.0, low=1.0, high=1.0),
    ).write(directory / dissection.SUMMARY.name)
    np.save(directory / dissection.THRESHOLDS.name, np.full(len(units), THRESHOLD, dtype=np.float32))
    np.savez(directory / dissection.TOP_IMAGES.name, image_index=image_index.astype(np.int64),
             max_activation=maps.reshape(*maps.shape[:2], -1).max(-1), maps=maps)


@pytest.fixture
def run(tmp_path: Path) -> tuple[Params, study.Layout, Path]:
    """(params with the students scratch and ls at seeds 0 and 1, their outputs layout, report directory)."""
    probe = _probe(tmp_path / "probe")
    base = load_params(ROOT / "params.yaml")
    params = dataclasses.replace(
        base, seeds=SEEDS, control_seeds=SEEDS, teachers={}, distilled={}, self_distilled={}, controls={},
        trained_controls={},
        students={"scratch": base.students["scratch"], "ls": base.students["ls"]},
        paper_models={"scratch": "scratch", "ls": "ls"}).with_section(
        "dissection", dataclasses.replace(base.dissection, broden_dir=str(probe), categories=CATEGORIES))
    layout = study.Layout(tmp_path / "outputs")
    rng = np.random.default_rng(0)
    for model in study.models(params):
        units = _units(model.name, model.seed)
        maps = rng.uniform(0, 1, (len(units), 2, 2, 2)).astype(np.float32)
        index = rng.integers(0, 6, (len(units), 2))
        if model.name == "scratch":
            maps[1, 0] = [[1, 0.4], [0, 0]]
            maps[1, 1] = [[0, 1], [0, 0]]
            index[1] = [0, 5]
        _write_dissection(layout.measure("dissection", model), model, units, maps, index)
    return params, layout, tmp_path / "report"


@pytest.fixture
def report(run) -> Path:
    params, layout, out = run
    write_report(params, layout, out, tile=TILE)
    return out


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.links += [found[key] for key in ("href", "src") if found.get(key)]
        if tag == "article" and found.get("id"):
            self.ids.append(found["id"])


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def test_pages_link_each_other_with_relative_paths_that_resolve(report: Path) -> None:
    index = report / "index.html"
    pages = [report / f"{key}.html" for key in KEYS]
    assert {f"{key}.html" for key in KEYS} <= set(_parse(index).links)
    for page in pages:
        others = {f"{key}.html" for key in KEYS} - {page.name}
        assert {"index.html", *others} <= set(_parse(page).links), page.name
    for page in (index, *pages):
        for link in _parse(page).links:
            assert not re.match(r"^([a-z]+:|/)", link), (page.name, link)
            target, _, anchor = link.partition("#")
            assert (report / target).is_file(), (page.name, link)
            if anchor:
                assert anchor in _parse(report / target).ids, (page.name, link)


def test_pages_need_no_network(report: Path) -> None:
    for page in report.glob("*.html"):
        text = page.read_text(encoding="utf-8").lower()
        for token in ("http://", "https://", "//cdn", "<script", "<link", "@import", "url("):
            assert token not in text, (page.name, token)


def test_units_are_listed_by_iou_descending(report: Path) -> None:
    assert _parse(report / "scratch-0.html").ids == ["unit-1", "unit-3", "unit-0", "unit-2"]
    ious = [float(v) for v in re.findall(r"IoU (\d\.\d{3})</span>", (report / "scratch-0.html").read_text())]
    assert ious == [0.3, 0.1, 0.02, 0.0]
    ious = [float(v) for v in re.findall(r"IoU (\d\.\d{3})</span>", (report / "scratch-1.html").read_text())]
    assert ious == [0.3, 0.04, 0.02, 0.0]


def test_concept_names_are_escaped(report: Path) -> None:
    for page in ("index", *KEYS):
        text = (report / f"{page}.html").read_text(encoding="utf-8")
        assert "a&lt;b&amp;c" in text, page
        assert "a<b&c" not in text, page
    scratch = (report / "scratch-0.html").read_text(encoding="utf-8")
    assert re.search(r'id="unit-1"><h3>a&lt;b&amp;c</h3><p class="meta">unit 1 &middot; object', scratch)


def test_summary_counts_and_a_model_without_detectors(report: Path) -> None:
    assert "2/4 units are detectors, covering 2 concepts" in (report / "scratch-0.html").read_text()
    assert "1/4 units are detectors, covering 1 concepts" in (report / "scratch-1.html").read_text()
    ls = (report / "ls-1.html").read_text()
    assert "0/4 units are detectors, covering 0 concepts" in ls
    assert ls.count('class="unit low"') == 4 and "<svg" in ls
    assert "<h1>ls <small>seed 1</small>" in ls


def test_index_lists_every_model_and_seed_grouped_by_model(report: Path) -> None:
    index = (report / "index.html").read_text()
    assert "Network Dissection: 2 models, 4 dissections" in index
    rows = re.findall(r'<a href="([\w-]+)\.html">(\w+)</a></td><td>(\d)</td><td class="text">(\w*)</td>'
                      r"<td>(\d) / 4</td><td>(\d)</td><td>(\d) \(\d\)</td>", index)
    # key, name, seed, role, detectors, unique concepts, object detectors
    assert rows == [("scratch-0", "scratch", "0", "Scratch", "2", "2", "1"),
                    ("scratch-1", "scratch", "1", "Scratch", "1", "1", "1"),
                    ("ls-0", "ls", "0", "LS", "0", "0", "0"), ("ls-1", "ls", "1", "LS", "0", "0", "0")]
    # The chart shows each model's mean over its seeds: scratch has 1 and 0 color detectors, mean 0.5.
    assert "<title>scratch (mean of 2 seeds), color: 0.5</title>" in index
    assert "<title>scratch (mean of 2 seeds), object: 1</title>" in index
    # Detectors per concept, seed by seed: red-c is a detector of scratch at seed 0 only.
    assert re.search(r"<tr><td>red-c</td><td class=\"text\">color</td><td>1 &middot; 0</td><td></td></tr>", index)


def test_model_pages_link_the_other_seeds(report: Path) -> None:
    nav = (report / "scratch-1.html").read_text().split("</nav>")[0]
    assert ('scratch: <a href="scratch-0.html">0</a> <span class="current">1</span> &middot; '
            'ls: <a href="ls-0.html">0</a> <a href="ls-1.html">1</a>') in nav


def _strip(report: Path, unit: int, key: str = "scratch-0") -> np.ndarray:
    return np.asarray(Image.open(report / "images" / key / f"unit_{unit:04d}.png"))


def test_strip_highlights_the_thresholded_upsampled_map(report: Path) -> None:
    strip = _strip(report, 1)  # 8 px probe images are stored as they are (and shown at TILE px)
    assert strip.shape == (8, 8 + GAP + 16, 3)  # image 0 is square, image 5 twice as wide
    np.testing.assert_array_equal(strip[:, :8], np.where(HAND_MASK, GREY, round(GREY * DIM))[..., None].repeat(3, 2))
    assert (strip[:, 8:8 + GAP] == 255).all()
    up = F.interpolate(torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]]), size=(8, 16), mode="bilinear", align_corners=False)
    wide = (up[0, 0] > THRESHOLD).numpy()
    assert wide[0, -1] and not wide[0, 0] and not wide[-1, -1]  # top right: not transposed (P-K4)
    np.testing.assert_array_equal(strip[:, 8 + GAP:, 0], np.where(wide, DARK, round(DARK * DIM)))
    page = (report / "scratch-0.html").read_text()
    assert '<img src="images/scratch-0/unit_0001.png" width="52" height="16"' in page
    np.testing.assert_array_equal(_strip(report, 1, "scratch-1"), strip)  # same maps at seed 1 for unit 1


def test_images_taller_than_the_tile_are_stored_at_its_height(run) -> None:
    params, layout, out = run
    write_report(params, layout, out, tile=4)
    strip = _strip(out, 1)
    assert strip.shape == (4, 4 + GAP + 8, 3)
    inside = HAND_MASK[1::2, 1::2]  # nearest neighbour from 8 to 4 px takes the odd pixels
    np.testing.assert_array_equal(strip[:, :4, 1], np.where(inside, GREY, round(GREY * DIM)))


def test_same_inputs_give_the_same_bytes(run, report: Path) -> None:
    params, layout, _ = run
    again = report.parent / "again"
    write_report(params, layout, again, tile=TILE)
    files = sorted(p.relative_to(report) for p in report.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert len(files) == 1 + len(KEYS) + 4 * len(KEYS)  # index, a page per key, a strip per unit
    for name in files:
        assert (report / name).read_bytes() == (again / name).read_bytes(), name


def test_missing_top_images_names_the_file_and_the_stage(run) -> None:
    params, layout, out = run
    dissection.MEASURE.path(layout, study.find(params, "ls", 1), dissection.TOP_IMAGES).unlink()
    with pytest.raises(FileNotFoundError, match=r"ls-1/top_images\.npz: .*stage dissect_student@ls-1"):
        write_report(params, layout, out)
    assert not out.exists()


def test_summary_of_another_seed_is_stale(run) -> None:
    params, layout, out = run
    path = dissection.MEASURE.path(layout, study.find(params, "scratch", 1), dissection.SUMMARY)
    write_json(path, {**json.loads(path.read_text()), "seed": 0})
    with pytest.raises(StaleOutputError, match=r"scratch-1/summary\.json: seed 0 differs from scratch-1's seed 1"):
        write_report(params, layout, out)


def test_top_images_from_another_probe_set_is_an_error(run) -> None:
    params, layout, out = run
    path = dissection.MEASURE.path(layout, study.find(params, "scratch", 0), dissection.TOP_IMAGES)
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["image_index"][0, 0] = 6
    np.savez(path, **arrays)
    with pytest.raises(ReportInputError, match=r"scratch-0/top_images\.npz: image_index outside .* 6 images"):
        write_report(params, layout, out)


runner = CliRunner()


def test_cli_forwards_its_options(monkeypatch) -> None:
    import kdinterp.stages.report

    calls = []
    monkeypatch.setattr(kdinterp.stages.report, "write_report", lambda *args: calls.append(args))
    result = runner.invoke(app, ["report", "--outputs", "o", "--out", "r", "--params", str(ROOT / "params.yaml")])
    assert result.exit_code == 0, result.output
    (params, layout, out), = calls
    assert (layout, out, params.paper_models["kd"]) == (study.Layout(Path("o")), Path("r"), "kd")


def test_cli_missing_input_exits_1_with_the_file(run, monkeypatch) -> None:
    import kdinterp.cli

    params, layout, out = run
    dissection.MEASURE.path(layout, study.find(params, "scratch", 0), dissection.TOP_IMAGES).unlink()
    monkeypatch.setattr(kdinterp.cli, "_params", lambda path: params)
    result = runner.invoke(app, ["report", "--outputs", str(layout.root), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "scratch-0/top_images.npz: missing input of stage report" in result.output


def test_chart_legend_shows_every_entry_inside_the_chart() -> None:
    """Nine models with long labels (the default study's index page): every legend entry lies inside the svg
    (one row of them ran past its right edge, hiding LS and the untrained controls), in rows below each other."""
    from kdinterp.reporting.html import Series, bar_chart_svg

    labels = [f"{name} (mean of 3 seeds)" for name in ("teacher", "scratch", "kd", "ls", "shuffled", "random_init",
                                                        "random_init_bn", "scratch_epoch2", "scratch_epoch4")]
    svg = bar_chart_svg(["object", "part", "scene"], [Series(label, "#123456", (1.0, 2.0, 0.0)) for label in labels],
                        "chart")
    width = float(re.search(r'<svg class="chart" width="([\d.]+)"', svg).group(1))
    entries = re.findall(r'<text class="legend" x="([\d.]+)" y="([\d.]+)">([^<]+)</text>', svg)
    assert [label for _, _, label in entries] == labels
    assert all(float(x) + 7 * len(label) <= width for x, _, label in entries), (width, entries)
    assert len({y for _, y, _ in entries}) > 1  # wrapped
    first_bar = min(float(y) for y in re.findall(r'<rect x="[\d.]+" y="([\d.]+)" width="\d+" height="[\d.]+" '
                                                  r'fill="#123456"><title>', svg))
    assert max(float(y) for _, y, _ in entries) < first_bar  # the legend rows sit above the bars
