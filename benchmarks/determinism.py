"""Benchmark: which CPU settings change the trained weights (cross-machine determinism, issue).

Usage (from the repository root; each run is a fresh subprocess, a few seconds each)::

    .venv/bin/python benchmarks/determinism.py                        # the whole matrix, ~5-10 min on 2 cores
    .venv/bin/python benchmarks/determinism.py --models teacher --threads 2 --settings default dnnl_avx2
    .venv/bin/python benchmarks/determinism.py --list                 # the named settings
    .venv/bin/python benchmarks/determinism.py --worker teacher --steps 4 --kernels   # one run, this env

For every (model, threads, setting) a subprocess is started with the setting's environment
variables (oneDNN, MKL and ATen read theirs once, when torch loads them, so they cannot be changed
in-process), builds the teacher (ResNet-34, width 32) or the student (ResNet-18, width 16) exactly
as the pipeline does (``params.yaml`` through :func:`kdinterp.core.params.load_params`, else the same
``ModelParams`` literally), seeds it with ``torch.manual_seed(0)`` and runs ``--steps`` SGD steps
(lr 0.05, momentum 0.9, weight decay 5e-4, cross-entropy, batch 64 of 32x32 images: real training
images from ``data/concept_world/train`` when present, else a fixed random tensor). It prints the
SHA-256 of the final ``state_dict`` (parameters and BatchNorm buffers), the median step time, and,
the first step being run under oneDNN's verbose mode, the implementation oneDNN picked for every
primitive (``kind/prop_kind shape -> impl``) and MKL's code path (``MKL_VERBOSE``).

The table marks each hash by whether it equals the ``default`` setting's hash of the same model
and thread count, with the max |difference| of the weights, and lists the primitives whose
implementation differs from the default's (reorders, exact layout copies, are left out).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

MARK = "@@DETERMINISM "
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "dnnl_avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},                    # a Zen 2/3 (AVX2-only) EPYC, as oneDNN sees it
    "dnnl_avx512_core": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},      # AVX-512 without VNNI/BF16 (Skylake-SP)
    "dnnl_avx512_vnni": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"},
    "dnnl_avx512_bf16": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},
    "mkl_avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "mkl_cbwr_compat": {"MKL_CBWR": "COMPATIBLE"},
    "mkl_cbwr_avx2": {"MKL_CBWR": "AVX2"},
    "mkl_dynamic_false": {"MKL_DYNAMIC": "FALSE"},
    "aten_avx2": {"ATEN_CPU_CAPABILITY": "avx2"},                   # torch's own vectorised kernels (BN, SGD, ...)
    "all_avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "no_mkldnn": {"KDINTERP_BENCH_NO_MKLDNN": "1"},                 # torch.backends.mkldnn.enabled = False
    "no_mkldnn_aten_avx2": {"KDINTERP_BENCH_NO_MKLDNN": "1", "ATEN_CPU_CAPABILITY": "avx2"},
    "no_mkldnn_all_avx2": {"KDINTERP_BENCH_NO_MKLDNN": "1", "ONEDNN_MAX_CPU_ISA": "AVX2",
                           "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    # what kdinterp.core.runtime pins (pin_environment + configure_torch), and that plus the ISA pins of a portable run
    "mkl_cbwr_auto": {"MKL_CBWR": "AUTO"},
    "runtime": {"MKL_CBWR": "AUTO", "MKL_DYNAMIC": "FALSE", "KDINTERP_BENCH_CONFIGURE": "1"},
    "runtime_portable": {"MKL_CBWR": "COMPATIBLE", "MKL_DYNAMIC": "FALSE", "KDINTERP_BENCH_CONFIGURE": "1",
                         "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}
ENV_KEYS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
            "MKL_DYNAMIC", "ATEN_CPU_CAPABILITY", "KDINTERP_BENCH_NO_MKLDNN", "KDINTERP_BENCH_CONFIGURE")


# ---------------------------------------------------------------- worker (one setting, one process)

def _spec(model: str):
    from kdinterp.core.params import ModelParams
    from kdinterp.measures.registry import load_params

    try:
        params = load_params("params.yaml")
        return next(iter(params.teachers.values())).model if model == "teacher" else params.student_recipe.model
    except Exception as err:  # params.yaml may be mid-restructuring: fall back to the documented architectures
        print(f"params.yaml not usable ({type(err).__name__}: {err}); using the literal architectures", file=sys.stderr)
        return ModelParams("resnet34", 32, True) if model == "teacher" else ModelParams("resnet18", 16, True)


def _batches(steps: int, batch: int, seed: int):
    """``steps`` batches of real training images (normalised as the pipeline does) or of noise."""
    import torch

    root = Path("data/concept_world/train")
    gen = torch.Generator().manual_seed(seed)
    if root.is_dir():
        import numpy as np
        from PIL import Image

        files = sorted((d.name, f) for d in sorted(root.iterdir()) if d.is_dir() for f in sorted(d.glob("*.png")))
        classes = sorted({c for c, _ in files})
        pick = torch.randperm(len(files), generator=gen)[: steps * batch].tolist()
        images = torch.stack([torch.from_numpy(np.asarray(Image.open(files[i][1]).convert("RGB"), dtype=np.float32))
                              for i in pick]).permute(0, 3, 1, 2).div(255).sub(0.5).div(0.25).contiguous()
        labels = torch.tensor([classes.index(files[i][0]) for i in pick])
        source, num_classes = f"{root} ({len(classes)} classes)", len(classes)
    else:
        num_classes = 24
        images = torch.randn(steps * batch, 3, 32, 32, generator=gen)
        labels = torch.randint(num_classes, (steps * batch,), generator=gen)
        source = "random tensors"
    return [(images[i * batch:(i + 1) * batch], labels[i * batch:(i + 1) * batch]) for i in range(steps)], \
        num_classes, source


def worker(model_name: str, steps: int, threads: int, kernels: bool, dump: str | None) -> None:
    """Train ``steps`` SGD steps in this process's environment; print one JSON line after ``MARK``."""
    import torch
    import torch.nn.functional as F

    from kdinterp.training.models import build_model

    torch.set_num_threads(threads)
    if os.environ.get("KDINTERP_BENCH_CONFIGURE") == "1":  # deterministic algorithms etc., as the CLI does
        from kdinterp.core.runtime import configure_torch

        configure_torch(threads)
    if os.environ.get("KDINTERP_BENCH_NO_MKLDNN") == "1":
        torch.backends.mkldnn.enabled = False
    batches, num_classes, source = _batches(steps, 64, seed=1)
    torch.manual_seed(0)
    model = build_model(_spec(model_name), num_classes)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    times, cpu = [], []
    for step, (x, y) in enumerate(batches):
        start, start_cpu = time.perf_counter(), time.process_time()
        verbose = torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON if kernels and step == 0 else 0)
        with verbose:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    state = model.state_dict()
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().contiguous().numpy().tobytes())
    if dump:
        torch.save({k: v.clone() for k, v in state.items()}, dump)
    sys.stdout.flush()
    print(MARK + json.dumps({"sha256": digest.hexdigest(), "loss": float(loss.detach()), "source": source,
                             "step_s": statistics.median(times[1:] or times),
                             "step_cpu_s": statistics.median(cpu[1:] or cpu), "threads": torch.get_num_threads(),
                             "mkldnn": torch.backends.mkldnn.enabled,
                             "deterministic": torch.are_deterministic_algorithms_enabled()}), flush=True)


# ---------------------------------------------------------------- driver

def _kernels(stdout: str) -> tuple[dict[str, list[str]], list[str]]:
    """``{"kind/prop problem": [impl, ...]}`` from oneDNN's exec lines; MKL's version and call modes.

    oneDNN 3.x exec line: ``onednn_verbose,v1,primitive,exec,cpu,KIND,IMPL,PROP,MDS,ATTRS,AUX,PROBLEM,TIME``
    (memory descriptors are space-separated, so the fields split on commas).
    """
    table: dict[str, list[str]] = defaultdict(list)
    mkl: list[str] = []
    for line in stdout.splitlines():
        f = line.strip().split(",")
        if f[0] in ("onednn_verbose", "dnnl_verbose") and "primitive" in f[1:3] and "exec" in f[2:4]:
            i = f.index("exec")
            kind, impl, prop, problem = f[i + 2], f[i + 3], f[i + 4], f[-2]
            key = f"{kind}/{prop} {problem}"
            if impl not in table[key]:
                table[key].append(impl)
        elif line.startswith("MKL_VERBOSE"):
            if "oneMKL" in line or "Intel(R) MKL" in line:
                short = line
            else:  # SGEMM(T,N,24,64,256,0x...) 3.69ms CNR:OFF Dyn:0 ... -> SGEMM(T,N,24,64,256) CNR:OFF Dyn:0
                call = re.sub(r",0x.*?\)", ")", line.split()[1])
                call = re.sub(r"(\(\w,\w,\d+,\d+,\d+).*", r"\1)", call)
                short = " ".join([call] + re.findall(r"(?:CNR|Dyn|NThr):\S+", line))
            if short not in mkl:
                mkl.append(short)
    return dict(table), mkl


def run_one(model: str, threads: int, setting: str, steps: int, dump: Path) -> dict:
    """One subprocess run; returns its result dict plus ``kernels`` and ``mkl``."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), MKL_VERBOSE="1", **SETTINGS[setting])
    cmd = [sys.executable, __file__, "--worker", model, "--steps", str(steps), "--threads", str(threads),
           "--kernels", "--dump", str(dump)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode or not lines:
        raise RuntimeError(f"{model}/{threads}/{setting} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len(MARK):])
    result["kernels"], result["mkl"] = _kernels(proc.stdout)
    return result


def _max_diff(a: Path, b: Path) -> float:
    import torch

    sa, sb = torch.load(a), torch.load(b)
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa
               if sa[k].is_floating_point() and "running_" not in k)  # parameters only, not BN statistics


def _short(impls: list[str]) -> str:
    return "+".join(impls)


def main() -> None:
    """Parse the arguments; run one worker, or the matrix and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=["teacher", "student"], help=argparse.SUPPRESS)
    parser.add_argument("--kernels", action="store_true", help="(worker) log oneDNN kernels of the first step")
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", default=["teacher", "student"], choices=["teacher", "student"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--steps", type=int, default=4, help="SGD steps per run (default 4)")
    parser.add_argument("--json", type=Path, help="also write all results to this JSON file")
    parser.add_argument("--list", action="store_true", help="print the named settings and exit")
    args = parser.parse_args()
    if args.list:
        for name, env in SETTINGS.items():
            print(f"{name:22s} {env}")
        return
    if args.worker:
        return worker(args.worker, args.steps, args.threads[0], args.kernels, args.dump)
    settings = ["default"] + [s for s in args.settings if s != "default"]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for threads in args.threads:
                base = None
                for setting in settings:
                    dump = Path(tmp) / f"{model}-{threads}-{setting}.pt"
                    r = run_one(model, threads, setting, args.steps, dump)
                    base = base or (r, dump)
                    same = r["sha256"] == base[0]["sha256"]
                    r["max_abs_diff"] = 0.0 if same else _max_diff(dump, base[1])
                    r["kernel_diffs"] = {k: [_short(base[0]["kernels"].get(k, [])), _short(v)]
                                         for k, v in r["kernels"].items()
                                         if v != base[0]["kernels"].get(k) and not k.startswith("reorder")}
                    results[f"{model}/{threads}/{setting}"] = r
                    n_diff = len(r["kernel_diffs"])
                    print(f"{model:8s} threads={threads} {setting:22s} {r['sha256'][:12]} "
                          f"{'same' if same else 'DIFF'} max|dw|={r['max_abs_diff']:.2e} "
                          f"step={r['step_s'] * 1000:.0f} ms (cpu {r['step_cpu_s'] * 1000:.0f} ms)  "
                          f"kernels differing: {n_diff}", flush=True)
        # same setting, other thread count: does the thread count change the hash?
        for model in args.models:
            hashes = {t: results[f"{model}/{t}/default"]["sha256"][:12] for t in args.threads}
            print(f"{model}: default hash per thread count: {hashes}")
    print("\nKernels that differ from the default setting (first step; 'kind/prop problem: default -> setting'):")
    for key, r in results.items():
        for prim, (a, b) in sorted(r["kernel_diffs"].items()):
            print(f"  {key:36s} {prim}: {a or '-'} -> {b}")
    print("\nImplementations per setting (distinct impl names over all primitives):")
    for key, r in results.items():
        counts: dict[str, int] = defaultdict(int)
        for prim, impls in r["kernels"].items():
            for impl in impls:
                counts[f"{prim.split(' ')[0]}:{impl}"] += 1
        modes = sorted({" ".join(ln.split()[1:]) for ln in r["mkl"] if "CNR:" in ln})
        print(f"  {key:36s} {dict(sorted(counts.items()))}  MKL: {modes}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
