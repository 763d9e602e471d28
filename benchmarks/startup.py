"""Benchmark: the fixed cost of one stage command, in a process of its own and forked from the warm process.

Usage (from the repository root of a checkout whose default study has run, so that ``scratch-0`` exists; nothing
else running)::

    .venv/bin/python benchmarks/startup.py            # 7 runs of each variant, ~1 min
    .venv/bin/python benchmarks/startup.py --runs 11 --command "kdinterp evaluate teacher"

Times the whole process, from its start to its exit (``time.perf_counter`` around ``subprocess.run``), of one
stage command (default ``kdinterp evaluate scratch-0``) in three ways, interleaved run by run so that a drift of the
machine's speed hits all three alike:

* ``fresh-teardown``: a process of its own that ends with the interpreter's teardown, as every stage did before
  ``src/kdinterp/workflow/warm.py`` (``python -c 'from kdinterp.cli import app; app()' ...``);
* ``fresh``: a process of its own, ending as :func:`kdinterp.__main__.run_cli` ends it (no teardown);
* ``warm``: the client of a warm process, as under ``dvc repro`` (``DVC_STAGE`` set; the process is started by an
  untimed first run, in a socket folder of this benchmark's own, and stopped at the end).

It also times the command's work alone, in a process that has imported everything (the ``warm`` child's starting
point), and prints medians, minima and maxima; a variant's fixed cost is its median less that work.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return elapsed


def _work_alone(args: list[str], env: dict[str, str]) -> float:
    """Seconds of the command's work in a process that has already imported what the warm process imports."""
    code = ("import sys, time\n"
            "from kdinterp.core.runtime import pin_environment\n"
            "pin_environment()\n"
            "from kdinterp.workflow.warm_server import preload\n"
            "preload()\n"
            "from kdinterp.cli import app\n"
            f"sys.argv = ['kdinterp', *{args!r}]\n"
            "start = time.perf_counter()\n"
            "try:\n    app(prog_name='kdinterp')\nexcept SystemExit:\n    pass\n"
            "print(time.perf_counter() - start)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--command", default="kdinterp evaluate scratch-0")
    options = parser.parse_args()
    words = shlex.split(options.command)
    args = words[1:]
    from kdinterp.workflow.warm import stop_servers

    sockets = Path(tempfile.mkdtemp(prefix="kdbench-"))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "KDINTERP_WARM_DIR": str(sockets)}
    env.pop("DVC_STAGE", None)
    variants = {
        "fresh-teardown": ([sys.executable, "-c", "from kdinterp.cli import app; app(prog_name='kdinterp')", *args],
                           env),
        "fresh": ([str(BIN / "kdinterp"), *args], env),
        "warm": ([str(BIN / "kdinterp"), *args], {**env, "DVC_STAGE": "benchmark"}),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for argv, variant_env in variants.values():  # warm-up: page cache, and the warm process's imports
            _timed(argv, variant_env)
        for _ in range(options.runs):
            for name, (argv, variant_env) in variants.items():
                times[name].append(_timed(argv, variant_env))
        work = statistics.median(_work_alone(args, env) for _ in range(3))
    finally:
        stop_servers(sockets)
    print(f"{options.command}: whole process, seconds over {options.runs} runs (median [min, max])")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:15s} {median:6.3f} [{min(values):.3f}, {max(values):.3f}]   fixed cost {median - work:6.3f}")
    print(f"  work alone      {work:6.3f} (median of 3, after the imports)")


if __name__ == "__main__":
    main()
