"""Benchmark: the dissection engine against the oracle (issue 3 item 6) and at Broden's geometry (issue 15 item 6).

Not a test.

Usage (from the repository root)::

    .venv/bin/python benchmarks/dissection.py [--images 500] [--broden-images 100] [--threads 2]
    .venv/bin/python benchmarks/dissection.py --broden-geometry 1000 [--memory-check] [--workers 0]

**Oracle parity** (the first form). Two probe sets are generated (concept world, Broden layout) in a
temporary directory, each with a randomly initialised model (seed 0: the thresholds are arbitrary,
which is fine for timing):

* ``student``: the default-params student (``resnet18``, width 16, small-input stem) on 64 px
  probe images: 128 ``layer4`` units, 4x4 maps upsampled to 64x64. ``4 * images`` images.
* ``broden``: NetDissect-Lite's geometry on Broden: ``resnet18`` at full width (512 units) on
  112 px probe images, so 7x7 maps upsampled to 112x112 segmentations, as ResNet-18 ``layer4`` at
  224 px on ``broden1_224``. ``broden-images`` images (0: skip).

Each measurement runs in a fresh subprocess:

* ``oracle``: the tally loop of ``tests/lite_oracle.py`` (per image, per unit, numpy; Lite's
  ``tally_job``). As in Lite, the activations are extracted beforehand (kept in memory here,
  untimed) and the thresholds are given (the engine's); the loop decodes the label PNGs itself.
* ``engine tally``: the engine on the same inputs (activations in memory, thresholds given):
  :func:`~kdinterp.dissection.active_pixels` + :class:`~kdinterp.dissection.tally.Tally`, label
  PNGs decoded by the reader (``BrodenDataset`` in a ``DataLoader``, no workers).
* ``engine dissect()``: all of :func:`kdinterp.dissection.dissect` with its defaults: one forward
  pass (reading images, thresholds, top images, activations kept in memory), then the tally from
  the kept activations and the label PNGs; on CPU at 1x, 2x and 4x the images, and on CUDA if present.

Columns: ``wall s`` and ``CPU s`` (this process, all threads) of the timed part; ``decode s``:
wall seconds spent reading label PNGs; ``images/s``: probe images per wall second, with and
without (``w/o decode``) the label decoding. Peak RSS is ``ru_maxrss`` of the measuring
subprocess (``resource.getrusage``), so it includes Python, torch and the model; the ``baseline``
line is that floor (a subprocess after its imports).

Parity: oracle and engine, fed the same activations and thresholds, must give identical counts,
IoUs within 1e-6 and identical detector sets. Targets (issue 3): engine >= 20x the oracle's
images/s on 2 cores; time linear in images; peak memory independent of the images.

**Broden geometry** (``--broden-geometry N``, :mod:`benchmarks.dissection_broden`; only this mode
runs). A generated Broden-like set of ``N`` images (224 px JPEGs, 112x112 segmentation PNGs, 1,197
labels in the six categories; seeded, untimed) and a randomly initialised torchvision ResNet-18
(seed 0; 512 ``layer4`` units, 7x7 maps), dissected with params.yaml's dissection section as the
``dissect_*`` stage calls :func:`~kdinterp.dissection.dissect` (uint8 images normalised a batch
at a time, ``data.num_workers`` workers unless ``--workers``). Lines, each in a fresh subprocess:
``forward`` (the engine's DataLoader and forward step over the set to ``layer4``, decoding
included, activations dropped: the reference "one forward pass"); ``dissect()`` doing Lite's job
(one tally) with ``activations`` ``auto``, ``disk`` (float32 memmap) and ``recompute``; and
``dissect()`` as the stage (plus params.yaml's sensitivity tallies and bootstrap blocks). Each
prints wall and CPU seconds (process and reaped DataLoader workers), images/s, peak RSS, the bytes
the process wrote (``write_bytes`` of ``/proc/self/io``, memmap pages included), where the
activations were kept, and the time of the engine's two passes (pass 1: forward pass and
thresholds; pass 2: tally), measured by wrapping its ``_first_pass`` and ``_tally``. Then the
ratios of issue 15 against this run's forward pass, with targets end to end / forward <= 1.15 and
tally / forward <= 0.05, next to NetDissect-Lite's (71.8 / 51.9 = 1.38 and 12.1 / 51.9 = 0.23:
upstream code measured earlier on this machine kind, quoted from issue 15, not rerun here).
``--memory-check``: instead, ``dissect()`` with ``auto`` and ``disk`` at N and 4N images (peak RSS
should be flat for ``disk``; ``auto`` holds the activations in memory up to its cap by design).
``--width`` narrows the model, for a quick check of the script only.

The machine's load average is printed: other processes on the same cores slow everything down,
multi-threaded torch most of all (compare the CPU and wall columns). The measuring subprocesses run
with ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is set: with OpenMP's default spin-waiting, two
torch threads on two busy cores were up to 80x slower per operation than one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/lite_oracle.py, benchmarks/dissection_broden.py

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from benchmarks import dissection_broden  # noqa: E402
from kdinterp.core.params import CATEGORIES, ModelParams  # noqa: E402
from kdinterp.dissection.broden import BrodenDataset, collate_broden, load_broden  # noqa: E402
from kdinterp.dissection.engine import active_pixels, dissect  # noqa: E402
from kdinterp.dissection.tally import Tally  # noqa: E402
from kdinterp.measures.registry import load_params
from kdinterp.training.hooks import retain_layer  # noqa: E402
from kdinterp.training.models import build_model  # noqa: E402
from tests.lite_oracle import detectors, iter_rows, lite_tally  # noqa: E402

QUANTILE, IOU_THRESHOLD, LAYER = 0.005, 0.05, "layer4"
#: setting -> (probe image size, model width): layer4 has 8 * width units of size / 16 pixels a side.
SETTINGS = {"student": (64, 16), "broden": (112, 64)}


def _model(setting: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelParams("resnet18", width=SETTINGS[setting][1], small_input=True), 24).eval()


def _dataset(probe: Path, segmentation: bool = True) -> BrodenDataset:
    transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize([0.5] * 3, [0.25] * 3)])  # as params.yaml's data section
    return BrodenDataset(load_broden(probe, CATEGORIES), transform, segmentation)


def _features(setting: str, probe: Path, batch_size: int) -> np.ndarray:
    """All ``layer4`` maps ``(N, U, h, w)``, in the engine's batches (so they are bit-identical to its own)."""
    model, out = _model(setting), []
    loader = DataLoader(_dataset(probe, False), batch_size=batch_size, collate_fn=collate_broden)
    with torch.no_grad(), retain_layer(model, LAYER) as retained:
        for images, _, _ in loader:
            model(images)
            out.append(retained.get().numpy())
    return np.concatenate(out)


# --------------------------------------------------------------------------- measurements (subprocess)

class _Clock:
    """Wall and CPU (this process, all threads) seconds, in total or spent inside an iterator's ``next``."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    @staticmethod
    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def add(self, start: tuple[float, float]) -> None:
        wall, cpu = self.now()
        self.wall += wall - start[0]
        self.cpu += cpu - start[1]

    def wrap(self, items) -> Iterator:
        iterator = iter(items)
        while True:
            start = self.now()
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                self.add(start)
            yield item


def _measure(kind: str, setting: str, probe: Path, work: Path, batch_size: int, device: str) -> dict:
    total, decode = _Clock(), _Clock()
    if kind == "baseline":
        return _times(total, decode, nan=False)
    if kind == "engine":
        start = total.now()
        result = dissect(_model(setting), LAYER, _dataset(probe), quantile=QUANTILE, batch_size=batch_size,
                         device=torch.device(device))
        total.add(start)
        np.savez(work / f"engine_{device}_{probe.name}.npz", thresholds=result.thresholds, iou=result.iou,
                 intersection=result.intersection, unit_area=result.unit_area, concept_area=result.concept_area)
        return _times(total, decode, nan=True)
    features = _features(setting, probe, batch_size)
    with np.load(work / f"engine_cpu_{probe.name}.npz") as npz:
        thresholds = npz["thresholds"]
    broden, clock = load_broden(probe, CATEGORIES), decode
    start = total.now()
    if kind == "oracle":
        counts = lite_tally(clock.wrap(iter_rows(probe, CATEGORIES)), features, thresholds, broden.label_category,
                            len(broden.categories))
        np.savez(work / f"oracle_{probe.name}.npz", iou=counts.iou, intersection=counts.intersection,
                 unit_area=counts.unit_area, concept_area=counts.concept_area)
    else:  # engine-tally
        tally, first = Tally(features.shape[1], broden.label_category, len(broden.categories)), 0
        size = (broden.rows[0].sh, broden.rows[0].sw)
        loader = DataLoader(_dataset(probe), batch_size=batch_size, collate_fn=collate_broden)
        for images, planes, scalars in clock.wrap(loader):
            acts = torch.from_numpy(features[first:first + len(images)])
            tally.update(active_pixels(acts, torch.from_numpy(thresholds), size), planes.flatten(2), scalars)
            first += len(images)
    total.add(start)
    return _times(total, decode, nan=False)


def _times(total: _Clock, decode: _Clock, *, nan: bool) -> dict:
    """Wall and CPU seconds of the timed part and of its label decoding (NaN: not measured separately)."""
    return {"seconds": total.wall, "cpu": total.cpu, "decode": float("nan") if nan else decode.wall,
            "decode_cpu": float("nan") if nan else decode.cpu}


def _run(kind: str, setting: str, probe: Path, args: argparse.Namespace, device: str = "cpu") -> dict:
    """One measurement in a fresh interpreter: seconds, decode seconds, peak RSS (MiB)."""
    command = [sys.executable, __file__, "--measure", kind, "--setting", setting, "--probe", str(probe),
               "--work", str(args.work), "--batch-size", str(args.batch_size), "--device", device,
               "--threads", str(args.threads)]
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "KDINTERP_PROGRESS": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"measurement {kind} ({setting}) failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- set-up and report (parent)

def _generate(out: Path, images: int, setting: str) -> Path:
    from kdinterp.world import WorldParams, generate_world

    start = time.perf_counter()
    generate_world(WorldParams(object_types=2, subtypes_per_type=2, train_per_class=1, val_per_class=1,
                               probe_images=images, probe_image_size=SETTINGS[setting][0]),
                   out, workers=2, progress=False)
    print(f"{setting}: generated {images} probe images of {SETTINGS[setting][0]} px in "
          f"{time.perf_counter() - start:.0f} s")
    return out / "probe"


def _subset(full: Path, images: int, out: Path) -> Path:
    """A probe set of the first ``images`` rows of ``full`` (links to its files, a truncated index.csv)."""
    out.mkdir()
    for entry in full.iterdir():
        if entry.name != "index.csv":
            (out / entry.name).symlink_to(entry)
    lines = (full / "index.csv").read_text().splitlines()
    (out / "index.csv").write_text("\n".join(lines[: images + 1]) + "\n")
    return out


def _parity(work: Path, probe: Path) -> list[str]:
    with np.load(work / f"engine_cpu_{probe.name}.npz") as e, np.load(work / f"oracle_{probe.name}.npz") as o:
        same = all(np.array_equal(e[k], o[k]) for k in ("intersection", "unit_area", "concept_area"))
        diff = float(np.abs(e["iou"] - o["iou"]).max())
        lines = [f"  counts identical: {same}; max |IoU difference| = {diff:.1e} (target <= 1e-6)"]
        for threshold in (IOU_THRESHOLD, 0.02):
            ours, theirs = detectors(e["iou"], threshold), detectors(o["iou"], threshold)
            lines.append(f"  detectors at IoU >= {threshold}: engine {len(ours)}, oracle {len(theirs)}, "
                         f"identical sets: {ours.keys() == theirs.keys()}")
    return lines


def _setting(setting: str, images: int, scales: tuple[int, ...], args: argparse.Namespace) -> list[tuple]:
    """Generate, measure, print parity; return table rows ``(name, images, measurement)``."""
    full = _generate(args.work / f"world_{setting}", images * max(scales), setting)
    probes = {n: _subset(full, n * images, args.work / f"{setting}_{n}x") for n in scales}
    rows = [(f"{setting}: engine dissect(), CPU, {n}x", n * images, _run("engine", setting, probe, args))
            for n, probe in probes.items()]
    oracle = _run("oracle", setting, probes[1], args)
    tally = _run("engine-tally", setting, probes[1], args)
    rows[:0] = [(f"{setting}: (a) oracle tally loop, CPU", images, oracle),
                (f"{setting}: (b) engine tally, same inputs, CPU", images, tally)]
    if torch.cuda.is_available():
        rows.append((f"{setting}: (c) engine dissect(), CUDA, 1x", images,
                     _run("engine", setting, probes[1], args, "cuda")))
    print(f"{setting}: parity of oracle and engine on the 1x set (same activations and thresholds)")
    print("\n".join(_parity(args.work, probes[1])))
    wall = [m["seconds"] - m["decode"] for m in (oracle, tally)]
    cpu = [m["cpu"] - m["decode_cpu"] for m in (oracle, tally)]
    print(f"  speed-up of the engine tally over the oracle loop (target >= 20x): "
          f"{oracle['seconds'] / tally['seconds']:.1f}x wall with label decoding, {wall[0] / wall[1]:.1f}x wall "
          f"and {cpu[0] / cpu[1]:.1f}x CPU time without it")
    return rows


def _report(rows: list[tuple], baseline: dict) -> None:
    print(f"\n{'measurement':46s} {'images':>6s} {'wall s':>7s} {'CPU s':>7s} {'decode s':>8s} {'images/s':>8s} "
          f"{'w/o decode':>10s} {'peak RSS MiB':>12s}")
    for name, images, m in rows:
        decoded = not np.isnan(m["decode"])
        decode = f"{m['decode']:8.2f}" if decoded else ""
        rate = f"{images / (m['seconds'] - m['decode']):10.0f}" if decoded else ""
        print(f"{name:46s} {images:6d} {m['seconds']:7.2f} {m['cpu']:7.2f} {decode:>8s} "
              f"{images / m['seconds']:8.0f} {rate:>10s} {m['rss_mib']:12.0f}")
    print(f"{'baseline (python + torch + kdinterp imported)':46s} {'':>6s} {'':>7s} {'':>7s} {'':>8s} {'':>8s} "
          f"{'':>10s} {baseline['rss_mib']:12.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="student setting: probe images at 1x (default 500)")
    parser.add_argument("--broden-images", type=int, default=100, help="broden setting: probe images (0: skip)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="oracle parity (Broden geometry: params.yaml dissection.batch_size)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--broden-geometry", type=int, default=0, metavar="N",
                        help="only the Broden-geometry mode, on N generated images (issue 15: 1000)")
    parser.add_argument("--memory-check", action="store_true",
                        help="Broden geometry: dissect() at N and 4N images (auto and disk) instead of the table")
    parser.add_argument("--workers", type=int, default=None,
                        help="Broden geometry: DataLoader workers (default: params.yaml data.num_workers)")
    parser.add_argument("--width", type=int, default=64,
                        help="Broden geometry: ResNet-18 width (64: torchvision's; smaller for a quick check only)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--setting", default="student", help=argparse.SUPPRESS)
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu",
                        help="Broden geometry: where the model and the tally run (default cpu; not yet run on a GPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.measure and args.measure.startswith("broden-geometry:"):
        result = dissection_broden.measure(args.measure.split(":", 1)[1], args)
        result["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    if args.measure:
        result = _measure(args.measure, args.setting, args.probe, args.work, args.batch_size, args.device)
        result["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        args.work = Path(tmp)
        params = load_params(ROOT / "params.yaml")
        batch = params.dissection.batch_size if args.broden_geometry else args.batch_size
        print(f"{os.cpu_count()} cores, torch threads {args.threads}, batch size {batch}, "
              f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}, "
              f"load average before: {os.getloadavg()[0]:.1f}")
        if args.broden_geometry:
            if args.workers is None:
                args.workers = params.data.num_workers
            dissection_broden.run(args, _subset)
            print(f"load average after: {os.getloadavg()[0]:.1f}")
            return
        rows = _setting("student", args.images, (1, 2, 4), args)
        if args.broden_images:
            rows += _setting("broden", args.broden_images, (1,), args)
        baseline = _run("baseline", "student", args.work, args)
        _report(rows, baseline)
        per_image = [m["seconds"] / n * 1e3 for name, n, m in rows if "engine dissect(), CPU" in name
                     and name.startswith("student")]
        print("student: engine dissect() ms per image at 1x, 2x, 4x: " + ", ".join(f"{t:.2f}" for t in per_image))
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
