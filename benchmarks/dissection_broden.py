"""Broden-geometry mode of ``benchmarks/dissection.py`` (issue 15, item 6); run it through that script.

The set (generated, seeded, untimed, in a temporary directory) has Broden's ``broden1_224`` geometry:
224 px RGB JPEGs, 112x112 RGB segmentation PNGs (label = R + 256 * G), 1,197 labels in the six
categories, and index.csv / category.csv / label.csv / c_<category>.csv as the reader expects. It is
written by ``tests/conftest.write_broden`` (the fixtures' writer: JPEG images, any labels, planes per
category), fed rows from :func:`_rows`; ``kdinterp.world.broden_writer`` is not used because it writes
PNG images and takes the concept world's rendered scenes and catalog. Rows mimic Broden's sources
(``research/dissection.md`` §2.6-2.9): ADE20K (35 %: object plane, 0-3 part planes, scene), Pascal
(16 %: object plane, 0-1 part plane), OpenSurfaces (40 %: material plane), DTD (9 %: texture); every
row also has a color plane. Planes are Voronoi regions labelled with Zipf-distributed labels of
their category. Labels: color 11, object 584, part 55, material 32, scene 468, texture 47; part
planes draw from 234 part labels, 179 of them object labels (Broden's labels can span categories;
each has one primary category in the tally), which gives Broden's 1,197 distinct labels.
Images are smooth random fields with mild noise, so the JPEGs are closer to photos in size (and
decoding cost) than noise would be; their mean size is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve().parent / "dissection.py"

#: Labels per category, in Broden's category order; part planes also use the first PART_OBJECTS object labels.
LABELS = {"color": 11, "object": 584, "part": 55, "material": 32, "scene": 468, "texture": 47}
PART_OBJECTS = 179
#: Broden's sources: share of rows (broden1_224 README: 22,210 ADE, 10,103 Pascal, 25,352 OpenSurfaces, 5,640 DTD).
SOURCES = {"ade": 0.35, "pascal": 0.16, "opensurfaces": 0.40, "dtd": 0.09}
IMAGE, SEGMENTATION = 224, 112
#: NetDissect-Lite upstream on 1,000 images of this geometry, 2 cores (issue 15's table).
LITE = {"features": 51.9, "threshold": 1.8, "tally": 12.1, "total": 71.8}


# --------------------------------------------------------------------------- the probe set (parent, untimed)

def _label_numbers() -> dict[str, np.ndarray]:
    numbers, first = {}, 1
    for category, count in LABELS.items():
        numbers[category] = np.arange(first, first + count)
        first += count
    numbers["part"] = np.concatenate([numbers["part"], numbers["object"][:PART_OBJECTS]])
    return numbers


def _zipf(count: int) -> np.ndarray:
    p = 1.0 / np.arange(1, count + 1)
    return p / p.sum()


def _plane(rng: np.random.Generator, pool: np.ndarray, p: np.ndarray, regions: tuple[int, int],
           unlabelled: float) -> np.ndarray:
    """A ``(112, 112)`` label map: Voronoi regions, each a Zipf-drawn label of ``pool`` or 0."""
    k = int(rng.integers(*regions))
    seeds = rng.random((k, 2)) * SEGMENTATION
    yy, xx = np.mgrid[0:SEGMENTATION, 0:SEGMENTATION]
    region = ((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2).argmin(-1)
    lut = rng.choice(pool, k, p=p)
    lut[rng.random(k) < unlabelled] = 0
    return lut[region]


def _image(rng: np.random.Generator) -> np.ndarray:
    coarse = Image.fromarray(rng.integers(0, 256, (7, 7, 3), dtype=np.uint8), "RGB")
    smooth = np.asarray(coarse.resize((IMAGE, IMAGE), Image.Resampling.BICUBIC), dtype=np.float32)
    return np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)


def _rows(images: int, seed: int, stats: dict):
    """Rows for ``write_broden``, one at a time (a generator: the set is never all in memory)."""
    rng = np.random.default_rng(seed)
    numbers = _label_numbers()
    p = {c: _zipf(len(n)) for c, n in numbers.items()}
    sources = rng.choice(list(SOURCES), images, p=list(SOURCES.values()))
    for source in sources:
        def plane(category: str, regions: tuple[int, int], unlabelled: float) -> np.ndarray:
            return _plane(rng, numbers[category], p[category], regions, unlabelled)

        row = {"image": _image(rng), "color": [plane("color", (3, 9), 0.05)]}
        if source in ("ade", "pascal"):
            row["object"] = [plane("object", (4, 11) if source == "ade" else (2, 7), 0.1)]
            parts = rng.choice(4, p=[0.48, 0.33, 0.18, 0.01]) if source == "ade" else rng.integers(0, 2)
            row["part"] = [plane("part", (4, 9), 0.7) for _ in range(parts)]
        if source == "ade":  # about 9 % of ADE rows carry scene 0 (labels removed by Broden's filter)
            row["scene"] = [0 if rng.random() < 0.09 else int(rng.choice(numbers["scene"], p=p["scene"]))]
        if source == "opensurfaces":
            row["material"] = [plane("material", (3, 8), 0.3)]
        if source == "dtd":
            row["texture"] = [int(rng.choice(numbers["texture"], p=p["texture"]))]
        planes = [a for c in ("color", "object", "part", "material") for a in row.get(c, [])]
        stats["planes"] += len(planes)
        stats["plane_labels"] += sum(len(np.unique(a[a > 0])) for a in planes)
        yield row


def generate(out: Path, images: int, seed: int = 0) -> Path:
    """Write the Broden-geometry probe set of ``images`` rows under ``out``; print what it holds."""
    from tests.conftest import write_broden  # lazily: it sets torch's threads on import

    torch_threads = torch.get_num_threads()
    start = time.perf_counter()
    numbers = _label_numbers()
    labels = {int(n): (f"{c}-{i}", c) for c in LABELS for i, n in enumerate(numbers[c][:LABELS[c]])}
    stats = {"planes": 0, "plane_labels": 0}
    write_broden(out, labels, _rows(images, seed, stats), image_size=IMAGE, seg_size=SEGMENTATION, suffix="jpg")
    torch.set_num_threads(torch_threads)
    jpeg = np.mean([f.stat().st_size for f in (out / "images").glob("*.jpg")]) / 1024
    print(f"broden-geometry: generated {images} images in {time.perf_counter() - start:.0f} s (untimed): "
          f"{IMAGE} px JPEGs (mean {jpeg:.0f} KiB), {SEGMENTATION}x{SEGMENTATION} PNGs, {len(labels)} labels "
          f"({', '.join(f'{c} {n}' for c, n in LABELS.items())}; part planes also use {PART_OBJECTS} object labels), "
          f"{stats['planes'] / images:.1f} planes and {stats['plane_labels'] / max(stats['planes'], 1):.1f} "
          f"labels per plane on average")
    return out


# --------------------------------------------------------------------------- measurements (subprocess)

def _cpu() -> float:
    """CPU seconds of this process and its reaped children (DataLoader workers), all threads."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _io() -> dict[str, int]:
    with open("/proc/self/io") as f:
        return {k: int(v) for k, v in (line.split(":") for line in f)}


class _Phases:
    """Wraps the engine's two passes (``kdinterp.dissection._first_pass`` and ``_tally``) to time them."""

    def __init__(self, engine, sync) -> None:
        self.times: dict[str, tuple[float, float]] = {}
        self.stores: list = []
        for name in ("_first_pass", "_tally"):
            setattr(engine, name, self._timed(name, getattr(engine, name), sync))
        phases = self

        class Recorded(engine.ActivationStore):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, **kwargs)
                phases.stores.append(self)

        engine.ActivationStore = Recorded

    def _timed(self, name: str, fn, sync):
        def wrapper(*args, **kwargs):
            wall, cpu = time.perf_counter(), _cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                sync()
                self.times[name] = (time.perf_counter() - wall, _cpu() - cpu)
        return wrapper


def measure(kind: str, args: argparse.Namespace) -> dict:
    """One measurement: ``baseline``, ``forward``, or ``dissect:<activations>:<lite|stage>``."""
    from functools import partial

    from torchvision.transforms import v2

    import kdinterp.dissection as engine
    from kdinterp.core.params import ModelParams
    from kdinterp.core.runtime import configure_torch
    from kdinterp.dissection.broden import BrodenDataset, load_broden
    from kdinterp.measures.dissection import _variants
    from kdinterp.measures.registry import load_params
    from kdinterp.training.hooks import retain_layer
    from kdinterp.training.memory_data import to_normalized
    from kdinterp.training.models import build_model

    configure_torch(args.threads)  # as the stage (threads, deterministic algorithms)
    if kind == "baseline":
        return {}
    params = load_params(ROOT / "params.yaml")
    spec, device = params.dissection, torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = build_model(ModelParams("resnet18", width=args.width), 1000).eval().to(device)  # width 64: torchvision's
    dataset = BrodenDataset(load_broden(args.probe, spec.categories), v2.PILToTensor())  # as the stage
    normalize = partial(to_normalized, mean=params.data.mean, std=params.data.std)
    out: dict = {}
    phases = _Phases(engine, sync) if kind.startswith("dissect") else None
    io, wall, cpu = _io(), time.perf_counter(), _cpu()
    if kind == "forward":  # the engine's loader and forward step, activations dropped
        forward = engine._Forward(model, normalize, device)
        with torch.no_grad(), retain_layer(model, spec.layer) as forward.retained:
            for images, _, _ in engine._loader(dataset, spec.batch_size, args.workers, segmentation=False):
                forward(images)
    else:
        _, storage, job = kind.split(":")
        extra = {}
        if job == "stage":  # the stage's further tallies and bootstrap blocks (params.yaml dissection.sensitivity)
            extra = {"variants": _variants(spec, 8 * args.width), "blocks": spec.sensitivity.bootstrap_blocks}
        result = engine.dissect(model, spec.layer, dataset, quantile=spec.quantile, batch_size=spec.batch_size,
                                device=device, num_workers=args.workers, activation_rule=spec.activation_rule,
                                top_images=spec.top_images, activations=storage,
                                activation_memory_bytes=spec.activation_memory_mb << 20, scratch_dir=args.work,
                                batch_transform=normalize, **extra)
    sync()
    seconds, cpu, done = time.perf_counter() - wall, _cpu() - cpu, _io()
    out.update(seconds=seconds, cpu=cpu, images=len(dataset), write_bytes=done["write_bytes"] - io["write_bytes"],
               cancelled_write_bytes=done["cancelled_write_bytes"] - io["cancelled_write_bytes"])
    if phases is not None:  # untimed from here
        store = phases.stores[0]
        out["kept"] = store.where
        out["kept_bytes"] = store.num_images * int(np.prod(store._shape)) * 4 if store.kept else 0
        out["pass1"], out["pass2"] = phases.times["_first_pass"], phases.times["_tally"]
        out["detectors"] = int((result.iou.max(1) >= spec.iou_threshold).sum())
        np.savez(args.work / f"result_{kind.replace(':', '_')}_{len(dataset)}.npz", thresholds=result.thresholds,
                 intersection=result.intersection, unit_area=result.unit_area, concept_area=result.concept_area,
                 iou=result.iou)
    return out


# --------------------------------------------------------------------------- set-up and report (parent)

def _run(kind: str, probe: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, str(SCRIPT), "--measure", f"broden-geometry:{kind}", "--probe", str(probe),
               "--work", str(args.work), "--device", args.device, "--threads", str(args.threads),
               "--workers", str(args.workers), "--width", str(args.width)]
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "KDINTERP_PROGRESS": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"measurement {kind} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


_LINES = {"forward": "forward pass to layer4 (decoding included)",
          "dissect:auto:lite": "dissect(), one tally (Lite's job), auto",
          "dissect:disk:lite": "dissect(), one tally, disk (memmap)",
          "dissect:recompute:lite": "dissect(), one tally, recompute",
          "dissect:auto:stage": "dissect() as the stage (+variants, blocks), auto"}


def _table(rows: list[tuple[str, dict]], baseline: dict) -> None:
    print(f"\n{'measurement':54s} {'images':>6s} {'wall s':>7s} {'CPU s':>7s} {'images/s':>8s} {'peak RSS MiB':>12s} "
          f"{'written MB':>10s} {'kept':>13s} {'pass 1 s':>8s} {'pass 2 s':>8s} {'detectors':>9s}")
    for name, m in rows:
        kept = f"{m['kept']} {m['kept_bytes'] / 1e6:.1f} MB" if m.get("kept") in ("memory", "disk") else \
            m.get("kept", "")
        passes = [f"{m[k][0]:8.2f}" if k in m else "" for k in ("pass1", "pass2")]
        print(f"{name:54s} {m['images']:6d} {m['seconds']:7.2f} {m['cpu']:7.2f} {m['images'] / m['seconds']:8.1f} "
              f"{m['rss_mib']:12.0f} {m['write_bytes'] / 1e6:10.1f} {kept:>13s} {passes[0]:>8s} {passes[1]:>8s} "
              f"{m.get('detectors', ''):>9}")
    print(f"{'baseline (subprocess after imports)':54s} {'':>6s} {'':>7s} {'':>7s} {'':>8s} {baseline['rss_mib']:12.0f}")
    cancelled = ", ".join(f"{name}: {m['cancelled_write_bytes'] / 1e6:.1f} MB" for name, m in rows
                          if m["cancelled_write_bytes"])
    print("  written MB: write_bytes of /proc/self/io of the measuring process, the timed part only (pages it "
          f"dirtied, the memmap's included); of them cancelled (file deleted before write-back): {cancelled or 'none'}")
    print("  pass 1: forward pass, thresholds, top images, keeping the activations; pass 2: the tally (label PNGs "
          "decoded, upsampling, counts) from the kept activations (recompute: with a second forward pass)")


def _identical(work: Path, kinds: list[str], images: int) -> str:
    loaded = [np.load(work / f"result_{k.replace(':', '_')}_{images}.npz") for k in kinds]
    same = all(np.array_equal(a[k], b[k]) for a in loaded[1:] for b in loaded[:1]
               for k in ("thresholds", "intersection", "unit_area", "concept_area", "iou"))
    return f"thresholds, counts and IoUs identical across the dissect() lines ({images} images): {same}"


def _ratios(forward: dict, lines: dict[str, dict]) -> None:
    f = forward["seconds"]
    print(f"\nratios to the forward pass of this run ({f:.1f} s, {forward['images']} images; NetDissect-Lite's "
          f"'features' step also writes its float64 memmap, so this denominator is the stricter one):")
    for kind, m in lines.items():
        tally = "n/a: its pass 2 includes a forward pass" if kind.startswith("dissect:recompute") else \
            f"{m['pass2'][0] / f:.3f} (target <= 0.05)"
        print(f"  {_LINES[kind]:54s} end to end / forward {m['seconds'] / f:5.2f} (target <= 1.15); "
              f"tally / forward {tally}")
    print(f"  NetDissect-Lite upstream, measured earlier on this machine kind (issue 15), not rerun here: "
          f"features {LITE['features']} s, threshold {LITE['threshold']} s, tally {LITE['tally']} s, total "
          f"{LITE['total']} s, peak 2.15 GB + 205 MB of memmaps, on 1,000 images; end to end / features "
          f"{LITE['total'] / LITE['features']:.2f}, tally / features {LITE['tally'] / LITE['features']:.2f}")


def run(args: argparse.Namespace, subset) -> None:
    """The mode: generate, measure each line in a fresh subprocess, print the table and the ratios.

    ``subset(full, images, out)``: a probe set of the first ``images`` rows of ``full``.
    """
    n = args.broden_geometry
    print(f"broden-geometry: resnet18 width {args.width} ({8 * args.width} layer4 units, 7x7 at {IMAGE} px), "
          f"random init (seed 0), dissection params of params.yaml, device {args.device}, DataLoader workers "
          f"{args.workers}")
    scales = (1, 4) if args.memory_check else (1,)
    full = generate(args.work / "broden_geometry", n * max(scales))
    probes = {s: full if s == max(scales) else subset(full, s * n, args.work / f"broden_geometry_{s}x")
              for s in scales}
    baseline = _run("baseline", probes[1], args)
    if args.memory_check:
        kinds = ["dissect:auto:lite", "dissect:disk:lite"]
        rows = [(f"{_LINES[k]}, {s}x", _run(k, probes[s], args)) for k in kinds for s in scales]
        _table(rows, baseline)
        for k, (one, four) in zip(kinds, zip(rows[::2], rows[1::2], strict=True), strict=True):
            print(f"  {_LINES[k]}: peak RSS 4x / 1x = {four[1]['rss_mib'] / one[1]['rss_mib']:.2f} "
                  f"(+{four[1]['rss_mib'] - one[1]['rss_mib']:.0f} MiB)")
        for s in scales:
            print("  " + _identical(args.work, kinds, s * n))
        print("  auto keeps the activations in memory up to dissection.activation_memory_mb (params.yaml), "
              f"{8 * args.width * 49 * 4 / 1e6 * 1e3:.0f} MB per 1,000 images here, so its RSS grows by design "
              "below that cap; flatness (issue 15 target) is judged on the disk line")
        return
    forward = _run("forward", probes[1], args)
    kinds = [k for k in _LINES if k != "forward"]
    lines = {k: _run(k, probes[1], args) for k in kinds}
    _table([(_LINES["forward"], forward), *((_LINES[k], m) for k, m in lines.items())], baseline)
    print("  " + _identical(args.work, kinds, n))
    _ratios(forward, lines)
