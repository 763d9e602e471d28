"""Tests of the concept world generator (kdinterp.world): layout, Broden format, ground truth, determinism."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from kdinterp.core.config import ParamsError
from kdinterp.core.errors import OutputError
from kdinterp.core.params import WorldParams
from kdinterp.world.catalog import BRODEN_ORDER
from kdinterp.cli import app
from kdinterp.world.colors import COLOR_NAMES, PROTOTYPES, name_colors
from kdinterp.world.coverage import concept_coverage
from kdinterp.world.generate import generate_world
from kdinterp.world.objects import resolve_parts
from kdinterp.world.params import load_world_params
from kdinterp.world.patterns import MATERIAL_PATTERNS, TEXTURE_PATTERNS
from kdinterp.world.vocabulary import MATERIALS, OBJECT_TYPES, SCENES, TEXTURES

# Small classification set, probe set large enough that every concept appears.
PARAMS = WorldParams(seed=7, object_types=3, subtypes_per_type=2, train_per_class=3, val_per_class=2, probe_images=300)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "concept_world"
    generate_world(PARAMS, out, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def world(world_dir: Path) -> dict:
    return json.loads((world_dir / "world.json").read_text())


@pytest.fixture(scope="module")
def index(world_dir: Path) -> list[dict[str, str]]:
    return _rows(world_dir / "probe" / "index.csv")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _header(path: Path) -> str:
    return path.read_text().splitlines()[0]


def _labels(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path))
    assert rgb.ndim == 3 and rgb.shape[2] == 3, f"{path}: segmentation PNGs must be 3-channel RGB"
    assert not rgb[..., 2].any(), f"{path}: blue channel must be 0"
    return rgb[..., 0].astype(np.int32) + 256 * rgb[..., 1].astype(np.int32)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_params_give_byte_identical_files_whatever_the_workers(world_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_world(PARAMS, again, workers=1, progress=False)
    first, second = _hashes(world_dir), _hashes(again)
    assert len(first) > 1000
    assert first == second


def test_seed_changes_the_images(tmp_path: Path) -> None:
    small = dict(object_types=2, subtypes_per_type=2, train_per_class=2, val_per_class=1, probe_images=4)
    generate_world(WorldParams(seed=1, **small), tmp_path / "a", progress=False)
    generate_world(WorldParams(seed=2, **small), tmp_path / "b", progress=False)
    a, b = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert a.keys() == b.keys()
    images = [k for k in a if re.search(r"\d{5}\.png$", k) and not k.startswith("saliency/")]
    assert len(images) == 2 * 2 * 3 + 4
    assert all(a[k] != b[k] for k in images)


def test_imagefolder_layout_matches_world_json(world_dir: Path, world: dict) -> None:
    names = [c["name"] for c in world["classes"]]
    assert names == sorted(names) and [c["index"] for c in world["classes"]] == list(range(len(names)))
    assert len(names) == PARAMS.object_types * PARAMS.subtypes_per_type
    for split, per_class in (("train", PARAMS.train_per_class), ("val", PARAMS.val_per_class)):
        assert sorted(p.name for p in (world_dir / split).iterdir()) == names
        for name in names:
            files = sorted(p.name for p in (world_dir / split / name).iterdir())
            assert files == [f"{name}_{k:05d}.png" for k in range(per_class)]
            image = Image.open(world_dir / split / name / files[0])
            assert image.mode == "RGB" and image.size == (PARAMS.image_size, PARAMS.image_size)
    assert world["counts"]["train"] == len(names) * PARAMS.train_per_class


def test_class_hierarchy_in_world_json(world: dict) -> None:
    types = world["object_types"]
    for cls in world["classes"]:
        spec = types[cls["object_type"]]
        assert cls["name"] == f"{cls['object_type']}_{cls['subtype']}"
        assert cls["subtype"] in spec["subtypes"][: PARAMS.subtypes_per_type]
        assert cls["differs_in"]["part"] in spec["parts"]
        assert set(spec["scenes"]) <= set(world["scenes"])
    per_type = Counter(c["object_type"] for c in world["classes"])
    assert per_type == {t.name: PARAMS.subtypes_per_type for t in OBJECT_TYPES[: PARAMS.object_types]}
    assert world["params"]["object_types"] == PARAMS.object_types


def test_broden_tables_have_the_exact_format(world_dir: Path, world: dict) -> None:
    probe = world_dir / "probe"
    assert _header(probe / "index.csv") == "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture"
    assert _header(probe / "category.csv") == "name,first,last,count,frequency"
    assert _header(probe / "label.csv") == "number,name,category,frequency,coverage,syns"
    assert [r["name"] for r in _rows(probe / "category.csv")] == list(BRODEN_ORDER)
    labels = _rows(probe / "label.csv")
    assert [int(r["number"]) for r in labels] == list(range(1, len(labels) + 1))
    assert len({r["name"] for r in labels}) == len(labels)
    for r in labels:
        cat, freq = re.fullmatch(r"([a-z]+)\((\d+)\)", r["category"]).groups()
        assert freq == r["frequency"] and re.fullmatch(r"\d+\.\d*", r["coverage"]) and r["syns"] == ""
        assert not (cat == "scene") ^ r["name"].endswith("-s") and not (cat == "color") ^ r["name"].endswith("-c")
    for cat in BRODEN_ORDER:
        assert _header(probe / f"c_{cat}.csv") == "code,number,name,frequency,coverage"
        codes = _rows(probe / f"c_{cat}.csv")
        assert [int(r["code"]) for r in codes] == list(range(1, len(codes) + 1))
        assert {r["name"] for r in codes} == {r["name"] for r in labels if r["category"].startswith(f"{cat}(")}
    concepts = [{"number": int(r["number"]), "name": r["name"], "category": r["category"].split("(")[0]}
                for r in labels]
    assert concepts == world["concepts"]


def test_index_rows(index: list[dict[str, str]], world: dict) -> None:
    assert len(index) == PARAMS.probe_images == world["counts"]["probe"]
    tiles = [r for r in index if r["texture"]]
    assert len(tiles) == world["counts"]["probe_textures"] == int(PARAMS.probe_images * PARAMS.texture_fraction)
    for r in index:
        assert r["split"] in ("train", "val") and r["sh"] == r["ih"] == str(PARAMS.probe_image_size) == r["sw"]
        assert any(r[c] for c in BRODEN_ORDER)
        for cat in ("scene", "texture"):
            assert r[cat] == "" or re.fullmatch(r"[1-9]\d*", r[cat])
        if r["texture"]:
            assert r["image"].startswith("textures/") and not (r["object"] or r["part"] or r["material"] or r["scene"])
        elif r["scene"]:
            assert r["image"].startswith("scenes/")
            assert all(r[c] for c in ("color", "object", "part", "material", "scene"))
        else:  # a close-up: objects on a backdrop, no scene or material
            assert r["image"].startswith("closeups/") and all(r[c] for c in ("color", "object", "part"))
            assert not (r["material"] or r["texture"])
    closeups = [r for r in index if r["image"].startswith("closeups/")]
    assert len(closeups) == world["counts"]["probe_closeups"] == int(PARAMS.probe_images * PARAMS.closeup_fraction)
    assert world["counts"]["probe_scenes"] == PARAMS.probe_images - len(tiles) - len(closeups)


def test_every_label_in_a_png_belongs_to_that_category(world_dir: Path, index: list[dict], world: dict) -> None:
    numbers = {cat: {c["number"] for c in world["concepts"] if c["category"] == cat} for cat in BRODEN_ORDER}
    n_labels = len(world["concepts"])
    for r in index:
        for cat in ("color", "object", "part", "material"):
            if r[cat]:
                present = set(np.unique(_labels(world_dir / "probe" / "images" / r[cat])).tolist()) - {0}
                assert max(present, default=0) < n_labels + 1
                assert present <= numbers[cat], f"{r[cat]} holds labels of another category: {present - numbers[cat]}"
        for cat in ("scene", "texture"):
            assert r[cat] == "" or int(r[cat]) in numbers[cat]


def test_every_concept_of_every_category_appears(world_dir: Path) -> None:
    table = concept_coverage(world_dir / "probe")
    assert set(table["category"]) == set(BRODEN_ORDER)
    missing = table.loc[table["pixels"] == 0, "concept"].tolist()
    assert missing == []


def test_color_masks_equal_names_recomputed_from_stored_images(world_dir: Path, index: list[dict[str, str]]) -> None:
    images = world_dir / "probe" / "images"
    named = 0
    for r in index:
        mask = _labels(images / r["color"])
        assert np.array_equal(name_colors(np.asarray(Image.open(images / r["image"]))), mask), r["image"]
        named += int((mask > 0).sum())
    assert named > 0


def test_object_mask_is_the_union_of_its_parts_and_hides_the_material(world_dir: Path, index: list[dict[str, str]], world: dict) -> None:
    images = world_dir / "probe" / "images"
    name = {c["number"]: c["name"] for c in world["concepts"]}
    for r in [r for r in index if r["object"]]:
        obj, part = _labels(images / r["object"]), _labels(images / r["part"])
        assert np.array_equal(obj > 0, part > 0), r["image"]
        if r["material"]:  # close-ups have none
            assert np.array_equal(_labels(images / r["material"]) > 0, obj == 0), f"{r['image']}: material under objects"
        for o, p in set(zip(obj[obj > 0].tolist(), part[obj > 0].tolist())):
            assert name[p] in world["object_types"][name[o]]["parts"], (r["image"], name[o], name[p])


def test_coverage_from_files_equals_world_json_and_stays_under_the_bound(world_dir: Path, world: dict) -> None:
    table = concept_coverage(world_dir / "probe")
    assert list(table.columns) == ["concept", "number", "category", "pixels", "fraction"]
    assert dict(zip(table["concept"], table["fraction"], strict=True)) == world["coverage"]
    assert table["fraction"].max() <= 0.10, table.nlargest(3, "fraction").to_string()


def test_non_empty_output_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(OutputError, match="is a folder that is not empty"):
        generate_world(PARAMS, tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_interrupted_generation_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kdinterp.world import generate as generate_module

    def fails(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate_module, "write_tables", fails)
    tiny = WorldParams(object_types=2, subtypes_per_type=2, train_per_class=1, val_per_class=1, probe_images=4)
    with pytest.raises(KeyboardInterrupt):
        generate_world(tiny, tmp_path / "world", workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the world nor its staging directory


def test_name_colors_names_prototypes_and_leaves_ambiguous_pixels_unnamed() -> None:
    for k, proto in enumerate(PROTOTYPES):
        assert (name_colors(np.full((4, 4, 3), proto, dtype=np.uint8)) == k + 1).all(), COLOR_NAMES[k]
    between = (np.array(PROTOTYPES[1]) + np.array(PROTOTYPES[3])) // 2  # blue/green midpoint
    assert (name_colors(np.full((4, 4, 3), between, dtype=np.uint8)) == 0).all()
    with pytest.raises(ValueError, match="uint8"):
        name_colors(np.zeros((4, 4, 3), dtype=np.float32))


def test_params_are_validated() -> None:
    """Ranges at construction; vocabulary bounds when a world is generated (kdinterp.world.params)."""
    from kdinterp.world.params import check_vocabulary

    with pytest.raises(ParamsError, match=f"vocabulary has {len(OBJECT_TYPES)} object types"):
        check_vocabulary(WorldParams(object_types=len(OBJECT_TYPES) + 1))
    with pytest.raises(ParamsError, match="subtypes_per_type"):
        check_vocabulary(WorldParams(subtypes_per_type=99))
    with pytest.raises(ParamsError, match="context"):
        WorldParams(context=1.5)


def test_load_world_params_reads_only_the_world_section(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("teachers: {not: [checked]}\nworld:\n  seed: 5\n  probe_images: 10\n")
    assert load_world_params(path) == WorldParams(seed=5, probe_images=10)
    path.write_text("world:\n  seeed: 5\n")
    with pytest.raises(ParamsError, match="did you mean 'seed'"):
        load_world_params(path)


def test_cli_generate_writes_a_world_and_refuses_to_overwrite(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("world:\n  object_types: 2\n  subtypes_per_type: 2\n  train_per_class: 1\n"
                      "  val_per_class: 1\n  probe_images: 6\n")
    args = ["world", "generate", "--params", str(params), "--out", str(tmp_path / "w"), "--workers", "1", "--quiet"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert json.loads((tmp_path / "w" / "world.json").read_text())["counts"]["probe"] == 6
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 1 and second.stderr.startswith("error: ") and "not empty" in second.stderr
    assert len(second.stderr.splitlines()) == 1, second.stderr  # one line, not wrapped at 80 columns


def test_vocabulary_is_consistent() -> None:
    scene_names = {s.name for s in SCENES}
    materials = {m.name for m in MATERIALS}
    assert len(SCENES) >= 16 and len(MATERIALS) >= 12 and len(OBJECT_TYPES) >= 8 and len(TEXTURES) >= 8
    assert set(TEXTURES) == set(TEXTURE_PATTERNS) and {m.pattern for m in MATERIALS} <= set(MATERIAL_PATTERNS)
    assert set().union(*(s.materials for s in SCENES)) == materials
    for scene in SCENES:
        assert any(scene.name in t.scenes for t in OBJECT_TYPES), f"{scene.name} is nobody's usual scene"
    for t in OBJECT_TYPES:
        assert set(t.scenes) <= scene_names and 2 <= len(t.parts) <= 4
        assert all(s.part.name == t.differs_in for s in t.subtypes)


def test_full_subtype_similarity_makes_subtypes_identical() -> None:
    def looks(parts: tuple, name: str) -> tuple:
        part = next(p for p in parts if p.name == name)
        visible = part.pattern != "plain" and part.pattern_strength > 0
        return part.shapes, part.colors, (part.pattern, part.pattern_strength) if visible else None

    for t in OBJECT_TYPES:
        blended = {looks(resolve_parts(t, s, 1.0, 3), t.differs_in) for s in t.subtypes[:3]}
        designed = {looks(resolve_parts(t, s, 0.0, 3), t.differs_in) for s in t.subtypes[:3]}
        assert len(blended) == 1 and len(designed) == 3, t.name


# --------------------------------------------------------------------------- saliency maps (world v2)


def _classification_images(world_dir: Path) -> list[Path]:
    return sorted(p for split in ("train", "val") for p in (world_dir / split).rglob("*.png"))


def test_every_classification_image_has_a_saliency_map_with_the_documented_encoding(world_dir: Path,
                                                                                     world: dict) -> None:
    assert world["format_version"] == 3 and world["saliency"]["dir"] == "saliency"
    assert {"R", "G", "B", "layout", "empty"} <= set(world["saliency"])
    images = _classification_images(world_dir)
    maps = sorted((world_dir / "saliency").rglob("*.png"))
    assert [m.relative_to(world_dir / "saliency") for m in maps] == [i.relative_to(world_dir) for i in images]
    without_part = 0
    for image, path in zip(images, maps, strict=True):
        rgb = np.asarray(Image.open(path))
        assert Image.open(path).mode == "RGB" and rgb.shape[:2] == np.asarray(Image.open(image)).shape[:2], path
        assert set(np.unique(rgb).tolist()) <= {0, 255} and not rgb[..., 2].any(), path
        obj, part = rgb[..., 0] == 255, rgb[..., 1] == 255
        assert obj.any(), f"{path}: empty object region"
        assert not (part & ~obj).any(), f"{path}: discriminative region outside the object region"
        without_part += not part.any()
    assert without_part <= 0.05 * len(maps)  # only an occluder can hide the part (see the next test)


def test_discriminative_region_is_empty_only_when_an_occluder_hides_it() -> None:
    from kdinterp.world.catalog import build_catalog
    from kdinterp.world.compose import render_class_image
    from kdinterp.world.saliency import saliency_masks

    for occlusion, seed in ((0.0, 1), (1.0, 2)):
        params = WorldParams(object_types=len(OBJECT_TYPES), subtypes_per_type=4, occlusion_prob=occlusion)
        catalog = build_catalog(params)
        regions = [saliency_masks(render_class_image(params, cls, np.random.default_rng([seed, cls.index, k])).masks,
                                  cls, catalog.number) for cls in catalog.classes for k in range(3)]
        assert all(obj.any() for obj, _ in regions), occlusion
        visible = sum(part.any() for _, part in regions)
        assert visible == len(regions) if occlusion == 0.0 else visible >= 0.9 * len(regions), (occlusion, visible)


def test_saliency_maps_are_the_pixels_where_the_object_and_its_part_show(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-render each image with the class object (then only its differs_in part) in two flat colours:
    the pixels that change must be exactly R (then G) of the stored saliency map."""
    from kdinterp.world import objects
    from kdinterp.world.catalog import build_catalog
    from kdinterp.world.compose import render_class_image
    from kdinterp.world.generate import _class_seed

    params = WorldParams(seed=11, object_types=len(OBJECT_TYPES), subtypes_per_type=2, train_per_class=2,
                         val_per_class=1, probe_images=2, supersample=1, color_jitter=0.0, noise=0.0,
                         distractor_prob=0.5, occlusion_prob=0.5)
    generate_world(params, tmp_path / "w", workers=1, progress=False)
    monkeypatch.setattr(objects, "_paint_patterns", lambda *args: None)  # flat parts (no rng draws)
    original = objects._part_colors
    checked = 0
    for cls in build_catalog(params).classes:
        for k in range(params.train_per_class):
            name = f"{cls.name}_{k:05d}.png"
            stored = np.asarray(Image.open(tmp_path / "w" / "saliency" / "train" / cls.name / name))
            for channel, part in ((0, None), (1, cls.object_type.differs_in)):
                renders = []
                for fill in (40.0, 210.0):
                    def colors(parts, rng, fill=fill, part=part):
                        out = original(parts, rng)  # the same random draws as in generation
                        if tuple(p.name for p in parts) == cls.object_type.part_names:  # the class object
                            out = out.copy()
                            out[[i for i, p in enumerate(parts) if part in (None, p.name)]] = fill
                        return out

                    monkeypatch.setattr(objects, "_part_colors", colors)
                    rng = np.random.default_rng(_class_seed(params, "train", cls, k))
                    renders.append(render_class_image(params, cls, rng).image.astype(np.int32))
                changed = np.abs(renders[0] - renders[1]).max(axis=2) > 60
                assert np.array_equal(changed, stored[..., channel] == 255), (name, "RG"[channel])
                checked += int(changed.any())
    assert checked == 2 * len(build_catalog(params).classes) * params.train_per_class


# --------------------------------------------------------------------------- preview and documentation


def test_preview_shows_every_class_with_its_saliency_map(world_dir: Path, world: dict, tmp_path: Path) -> None:
    out = tmp_path / "preview.png"
    result = CliRunner().invoke(app, ["world", "preview", "--world", str(world_dir), "--out", str(out), "--probe-scenes", "2"])
    assert result.exit_code == 0, result.output
    sheet = np.asarray(Image.open(out).convert("RGB"))
    red = np.all(sheet == (255, 0, 0), axis=2)
    yellow = np.all(sheet == (255, 255, 0), axis=2)
    assert red.sum() > 0 and yellow.sum() > 0  # saliency tiles: object and discriminative regions
    types = {c["object_type"] for c in world["classes"]}
    rows = np.flatnonzero(np.diff(yellow.any(axis=1).astype(int)) == 1)  # tops of the saliency rows
    assert len(rows) >= len(types)


DOC = Path(__file__).resolve().parents[1] / "docs" / "concept_world.md"


def test_documentation_names_the_whole_vocabulary_and_every_knob() -> None:
    import dataclasses

    text = DOC.read_text()
    names = [s.name for s in SCENES] + [m.name for m in MATERIALS] + list(TEXTURES) + list(COLOR_NAMES)
    for t in OBJECT_TYPES:
        names += [t.name, *t.part_names, *(s.name for s in t.subtypes), f"{t.differs_in} ({t.property})"]
    missing = [n for n in names if n not in text]
    assert missing == [], f"docs/concept_world.md does not mention {missing}"
    knobs = [f.name for f in dataclasses.fields(WorldParams)]
    assert [k for k in knobs if f"| `{k}` |" not in text] == []
    assert (DOC.parent / "concept_world_preview.png").is_file()
    readme = (DOC.parents[1] / "README.md").read_text()
    assert readme.index("## The concept world") < readme.index("## The pipeline")
    assert "docs/concept_world_preview.png" in readme and "docs/concept_world.md" in readme


@pytest.mark.parametrize("size", [112, 224])
def test_gpu_image_sizes_render_at_their_size(size: int, tmp_path: Path) -> None:
    """Issue 4: 112 and 224 px worlds (the GPU profiles' sizes, supersample 1) render at that size."""
    params = WorldParams(seed=3, image_size=size, probe_image_size=size, supersample=1, object_types=2,
                         subtypes_per_type=2, train_per_class=1, val_per_class=1, probe_images=6)
    generate_world(params, tmp_path / "w", workers=1, progress=False)
    pngs = sorted((tmp_path / "w").rglob("*.png"))
    assert len(list((tmp_path / "w" / "train").rglob("*.png"))) == 4
    assert {Image.open(p).size for p in pngs} == {(size, size)}
    for row in _rows(tmp_path / "w" / "probe" / "index.csv"):
        assert (row["ih"], row["iw"], row["sh"], row["sw"]) == (str(size),) * 4


def test_scene_light_scales_the_whole_image_objects_included(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from kdinterp.world import compose

    params = WorldParams(seed=3, color_jitter=0.0, noise=0.0, supersample=1)
    k = [s.name for s in SCENES].index("underwater-s")
    gains = np.asarray(SCENES[k].light)
    assert np.abs(gains - 1).max() > 0.2
    lit = compose.render_probe_scene(params, k, np.random.default_rng(5))
    monkeypatch.setattr(compose, "SCENES", tuple(dataclasses.replace(s, light=(1.0, 1.0, 1.0)) for s in SCENES))
    plain = compose.render_probe_scene(params, k, np.random.default_rng(5))
    for cat in ("object", "part", "material"):
        np.testing.assert_array_equal(lit.masks[cat], plain.masks[cat])
    unclipped = (plain.image < 250).all(axis=-1) & (plain.image.astype(float) * gains < 250).all(axis=-1)
    assert unclipped.mean() > 0.9 and (plain.masks["object"][unclipped] > 0).any()
    expected = plain.image.astype(float) * gains
    assert np.abs(lit.image[unclipped] - expected[unclipped]).max() <= 1.1  # two roundings, one scaled by the gain


def test_closeups_hold_objects_on_a_backdrop_without_scene_or_material() -> None:
    from kdinterp.world.compose import render_probe_closeup

    params = WorldParams(seed=4)
    named = []
    for i in range(16):
        r = render_probe_closeup(params, np.random.default_rng(i))
        assert set(r.masks) == {"color", "object", "part"} and r.scalars == {}
        on_object = r.masks["object"] > 0
        assert on_object.any() and (r.masks["part"][on_object] > 0).all() and not r.masks["part"][~on_object].any()
        named.append((r.masks["color"][~on_object] > 0).mean())
    # Colour jitter darkens some backdrops into grey-c, but most backdrop pixels stay unnamed.
    assert np.mean(named) < 0.2 and np.median(named) < 0.05



def test_broden_order_is_a_permutation_of_the_study_categories() -> None:
    from kdinterp.core.params import CATEGORIES

    assert sorted(BRODEN_ORDER) == sorted(CATEGORIES) and len(BRODEN_ORDER) == len(set(BRODEN_ORDER))
