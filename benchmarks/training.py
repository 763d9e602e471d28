"""Benchmark: training throughput of CE, logit KD and the feature-KD methods on the CPU.

Usage (from the repository root; a few minutes on 2 cores)::

    .venv/bin/python benchmarks/training.py [--batches 40] [--warmup 3] [--chunk 1]

Uses the default concept world (``data/concept_world``; a small one is generated in a temporary
directory if it is missing) and the architectures of ``params.yaml`` (first teacher, the student
recipe), randomly initialised: only time is measured. Each method trains its student for
``--warmup`` + ``--batches`` batches of the recipe's batch size on batches prepared beforehand
(so the table compares compute); the per-batch cost of loading and augmenting is timed alongside
(in memory, as training reads the data: :class:`~kdinterp.training.memory_data.TrainBatches`; and from the
PNG files through the DataLoader, as before) and added for the per-epoch ratio (wall time). The
methods and the loaders take turns, ``--chunk``
batches at a time, and the median wall and CPU time per batch are reported; the per-step ratios
use the CPU time of this process, which other load on a shared machine does not inflate (wall
time does: check the load average printed at the end). Feature methods are timed after
``prepare`` for CRD only; FT's and SSKD's preliminary stages are timed separately, on a subset,
and extrapolated to their default epochs.

Targets:

* (issue 5) a KD epoch costs at most 1.3x a CE epoch of the same student on the CPU;
* loading + augmenting a batch costs at most 10% of a CE training step (CPU time);
* a KD step costs at most 1.05x a CE step plus a teacher forward (CPU time): logit KD adds no
  overhead beyond the teacher's forward pass.

It also times the KD teacher's forward pass under ``torch.no_grad`` vs ``torch.inference_mode``,
in contiguous and ``channels_last`` memory format.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from kdinterp.core.params import DistilledParams, Params
from kdinterp.measures.registry import load_params
from kdinterp.training import methods
from kdinterp.training.data import WithIndex, build_transform, make_loader
from kdinterp.training.distill import Distiller, LogitKD, Vanilla
from kdinterp.training.folders import image_folder
from kdinterp.training.memory_data import InMemoryImages, TrainBatches
from kdinterp.training.methods import feature_methods
from kdinterp.training.models import build_model
from kdinterp.world import generate_world

TARGET = 1.3
LOAD_TARGET = 0.10  # loading + augmenting a batch, share of a CE step
KD_OVERHEAD_TARGET = 1.05  # KD step / (CE step + teacher forward)
TEMPERATURE, ALPHA = 4.0, 0.5


def build_feature_distiller(method, student, teacher, *, temperature, alpha, options, num_classes, num_samples):
    """The study's builder (:func:`kdinterp.training.methods.build`) for a feature method with these settings."""
    recipe = DistilledParams(teacher="teacher", method=method, temperature=temperature, alpha=alpha,
                             options=options if isinstance(options, dict) else {})
    if not isinstance(options, dict) and options is not None:  # an options object: bypass the params dict
        return methods.METHODS[method].distiller().from_recipe(student, teacher, recipe, options, num_classes,
                                                                num_samples)
    return methods.build(method, student, teacher, recipe, num_classes, num_samples)


def _world(params: Params, tmp: Path) -> Path:
    """Train directory of the default world, or of a small world generated under ``tmp``."""
    train_dir = Path(params.data.train_dir)
    if train_dir.is_dir():
        return train_dir
    print(f"{train_dir} not found: generating a small concept world in {tmp}")
    small = dataclasses.replace(params.world, train_per_class=120, val_per_class=2, probe_images=24)
    generate_world(small, tmp / "world", progress=False)
    return tmp / "world" / "train"


def _memory_epoch(train_set: InMemoryImages, batch_size: int, seed: int) -> TrainBatches:
    """One epoch of in-memory batches on the CPU, as :func:`kdinterp.training.train.fit` reads them in one process."""
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed))
    return TrainBatches(train_set, order, batch_size, drop_last=True, seed=seed, device=torch.device("cpu"))


def _batches(train_set: InMemoryImages, batch_size: int, count: int) -> list:
    """``count`` training batches ``(images, targets, indices)``, augmented in memory."""
    out: list = []
    while len(out) < count:
        for item in _memory_epoch(train_set, batch_size, seed=len(out)):
            out.append(item)
            if len(out) == count:
                break
    return out


def _loading(make_epoch: Callable[[int], Iterable]) -> Callable[[tuple], None]:
    """A task loading the next batch of an endless sequence of epochs (``make_epoch(epoch)``); ignores its argument."""
    state = {"epoch": 0, "batches": iter(make_epoch(0))}

    def run(_: tuple) -> None:
        try:
            next(state["batches"])
        except StopIteration:
            state["epoch"] += 1
            state["batches"] = iter(make_epoch(state["epoch"]))
            next(state["batches"])
    return run


def _trainer(distiller: Distiller) -> Callable[[tuple], None]:
    """One SGD training step of ``distiller`` (forward_train + backward + step) on a batch."""
    distiller.train()
    optimizer = torch.optim.SGD(distiller.learnable_parameters(), lr=0.01, momentum=0.9)

    def step(batch: tuple) -> None:
        _, terms = distiller.forward_train(*batch)
        optimizer.zero_grad(set_to_none=True)
        torch.stack(list(terms.values())).sum().backward()
        optimizer.step()
    return step


def _forward(model: torch.nn.Module, context: Callable, channels_last: bool) -> Callable[[tuple], None]:
    """A forward pass of ``model`` under ``context`` (``torch.no_grad`` / ``torch.inference_mode``)."""
    def run(batch: tuple) -> None:
        images = batch[0].contiguous(memory_format=torch.channels_last) if channels_last else batch[0]
        with context():
            model(images)
    return run


def _interleaved(tasks: dict, batches: list, warmup: int, chunk: int) -> dict:
    """Median (wall, CPU) seconds per batch of each task, the tasks taking turns ``chunk`` batches at a time.

    Every task first runs ``warmup`` batches. Taking turns spreads the load of other processes
    on a shared CPU over all tasks; the median ignores bursts; the CPU time of this process
    (``time.process_time``, all its threads) does not count the time other processes hold the cores.
    """
    for run in tasks.values():
        for batch in batches[:warmup]:
            run(batch)
    timed = batches[warmup:]
    samples: dict = {key: ([], []) for key in tasks}
    for start in range(0, len(timed), chunk):
        part = timed[start:start + chunk]
        for key, run in tasks.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for batch in part:
                run(batch)
            samples[key][0].append((time.perf_counter() - wall) / len(part))
            samples[key][1].append((time.process_time() - cpu) / len(part))
    return {key: (statistics.median(w), statistics.median(c)) for key, (w, c) in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="timed batches per method (default 40)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first (default 3)")
    parser.add_argument("--chunk", type=int, default=1, help="batches per turn (default 1)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    teacher_spec = next(iter(params.teachers.values())).model
    student_spec, batch_size = params.student_recipe.model, params.student_recipe.optim.batch_size
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        train_dir = _world(params, Path(tmp))
        began = time.perf_counter()
        train_set = InMemoryImages(train_dir, params.data, train=True)
        decode_s = time.perf_counter() - began
        file_set = image_folder(train_dir, build_transform(params.data, train=True))
        num_classes, num_samples = len(train_set.classes), len(train_set)
        batches = _batches(train_set, batch_size, args.warmup + args.batches)
        loaders = {
            ("load", "memory"): _loading(lambda epoch: _memory_epoch(train_set, batch_size, 1000 + epoch)),
            ("load", "files"): _loading(lambda epoch: make_loader(WithIndex(file_set), batch_size, shuffle=True,
                                                                  seed=1000 + epoch, drop_last=True)),
        }
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; data {train_dir} "
              f"({num_samples} images, {num_classes} classes, {params.data.image_size} px); batch {batch_size}")
        print(f"{args.warmup} warm-up + {args.batches} timed batches per method, methods taking turns every "
              f"{args.chunk} batch(es); medians per batch")
        print(f"teacher {teacher_spec.arch} width {teacher_spec.width}, student {student_spec.arch} width "
              f"{student_spec.width} (random init); decoding the training set into memory once: {decode_s:.1f} s")
        torch.manual_seed(0)
        teacher = build_model(teacher_spec, num_classes).eval()

        def student() -> torch.nn.Module:
            torch.manual_seed(1)
            return build_model(student_spec, num_classes)

        def feature(method: str, alpha: float, options: dict | None = None) -> Callable[[], Distiller]:
            def make() -> Distiller:
                d = build_feature_distiller(method, student(), teacher, temperature=TEMPERATURE, alpha=alpha,
                                            options=options or {}, num_classes=num_classes, num_samples=num_samples)
                if method == "crd":
                    d.prepare(train_set, torch.device("cpu"), 0)  # records labels only
                return d
            return make

        runs: dict[tuple[str, str], Callable[[], Distiller]] = {
            ("ce", "-"): lambda: Vanilla(student()),
            ("kd", "yes"): lambda: LogitKD(student(), teacher, TEMPERATURE, ALPHA),
        }
        for method in feature_methods():
            runs[(method, "no")] = feature(method, 0.0)
            runs[(method, "yes")] = feature(method, ALPHA)
        teacher_cl = copy.deepcopy(teacher).to(memory_format=torch.channels_last)
        forwards = {(name, cl): _forward(teacher_cl if cl else teacher, ctx, cl)
                    for cl in (False, True) for name, ctx in (("no_grad", torch.no_grad),
                                                              ("inference_mode", torch.inference_mode))}
        timings = _interleaved({**{key: _trainer(make()) for key, make in runs.items()}, **forwards, **loaders},
                               batches, args.warmup, args.chunk)

        ce_wall, ce_cpu = timings[("ce", "-")]
        load_s = timings[("load", "memory")]
        print()
        print(f"{'method':7s} {'logit KD':>8s} {'wall ms':>8s} {'CPU ms':>7s} {'images/s':>9s} {'x CE':>6s} "
              f"{'x CE epoch':>10s}")
        for key in runs:
            wall, cpu = timings[key]
            print(f"{key[0]:7s} {key[1]:>8s} {1000 * wall:8.1f} {1000 * cpu:7.1f} {batch_size / wall:9.0f} "
                  f"{cpu / ce_cpu:6.2f} {(wall + load_s[0]) / (ce_wall + load_s[0]):10.2f}")
        print("images/s: wall time. x CE: CPU time of a training step over CE's (the compute a step costs; other load")
        print("on the machine does not inflate it). x CE epoch: wall time of a step plus loading and augmenting")
        print("a batch in memory (as training does) over the same for CE.")

        print()
        print(f"Loading + augmenting a batch of {batch_size} (median per batch) as a share of the CE step "
              f"({1000 * ce_wall:.1f} ms wall, {1000 * ce_cpu:.1f} ms CPU):")
        for source, how in (("memory", "in memory: gather + crop + flip + normalise, batched"),
                            ("files", "from PNG files: DataLoader + PIL + v2 transforms, num_workers 0")):
            wall, cpu = timings[("load", source)]
            print(f"  {how:55s} wall {1000 * wall:6.2f} ms = {100 * wall / ce_wall:5.1f}%, CPU {1000 * cpu:6.2f} ms "
                  f"= {100 * cpu / ce_cpu:5.1f}%")
        share = load_s[1] / ce_cpu
        print(f"Loading share (in memory, CPU time): {100 * share:.1f}% of a CE step "
              f"(target <= {100 * LOAD_TARGET:.0f}%): {'met' if share <= LOAD_TARGET else 'NOT met'}.")

        print()
        print(f"KD teacher forward ({teacher_spec.arch} width {teacher_spec.width}, batch {batch_size}):")
        for (ctx_name, channels_last) in forwards:
            wall, cpu = timings[(ctx_name, channels_last)]
            layout = "channels_last" if channels_last else "contiguous"
            print(f"  {ctx_name:15s} {layout:14s} wall {1000 * wall:6.1f} ms, CPU {1000 * cpu:6.1f} ms per batch")
        best = min(forwards, key=lambda key: timings[key][1])
        spread = max(timings[key][1] for key in forwards) / timings[best][1] - 1
        print(f"  fastest (CPU time): {best[0]}, {'channels_last' if best[1] else 'contiguous'}, by {100 * spread:.1f}%"
              + (" over the slowest: within run-to-run noise, no measurable difference" if spread < 0.03 else ""))

        kd_wall, kd_cpu = timings[("kd", "yes")]
        teacher_cpu = timings[("no_grad", False)][1]
        kd_epoch = (kd_wall + load_s[0]) / (ce_wall + load_s[0])
        overhead = kd_cpu / (ce_cpu + teacher_cpu)
        print()
        print(f"KD step / (CE step + teacher forward): {overhead:.3f} (target <= {KD_OVERHEAD_TARGET}): "
              f"{'met' if overhead <= KD_OVERHEAD_TARGET else 'NOT met'} (CPU time: KD {1000 * kd_cpu:.1f} ms, CE "
              f"{1000 * ce_cpu:.1f} ms, teacher forward under no_grad {1000 * teacher_cpu:.1f} ms).")
        print(f"KD / CE per epoch: {kd_epoch:.2f} (target <= {TARGET}): {'met' if kd_epoch <= TARGET else 'NOT met'}; "
              f"per training step (compute): {kd_cpu / ce_cpu:.2f}.")
        print(f"  CE step (student forward + backward + SGD): {1000 * ce_cpu:.1f} ms; teacher forward alone: "
              f"{1000 * teacher_cpu:.1f} ms = {teacher_cpu / ce_cpu:.2f}x the CE step (CPU time), so a KD step costs "
              f"{1 + teacher_cpu / ce_cpu:.2f}x a CE step before any loss is computed.")
        print(f"  The target needs a teacher forward of <= {TARGET - 1:.1f}x the student's training step (about a "
              "teacher no larger than the student); this teacher is deeper and twice as wide.")

        print()
        print("Preliminary stages (default options; timed on a subset, extrapolated to the whole set):")
        subset = torch.utils.data.Subset(train_set, range(min(1024, num_samples)))
        for method, options, epochs_key in (("ft", {"paraphraser_epochs": 1}, "paraphraser_epochs"),
                                            ("sskd", {"ss_head_epochs": 1}, "ss_head_epochs")):
            distiller = feature(method, 0.0, options)()
            began = time.perf_counter()
            distiller.prepare(subset, torch.device("cpu"), 0)
            per_image = (time.perf_counter() - began) / len(subset)
            epochs = getattr(type(distiller.options)(), epochs_key)
            print(f"  {method}: {per_image * num_samples:6.1f} s per epoch over {num_samples} images (wall); default "
                  f"{epochs_key} = {epochs} -> {per_image * num_samples * epochs / 60:5.1f} min")
    print(f"\nload average (1 min) before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
