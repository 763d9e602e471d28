"""Measure the budgets on a fresh clone: `make venv`, `make data`, `make repro`, a second `dvc repro`, `make test`.

Run by hand from the repository root (takes about as long as the three commands):

    python3 benchmarks/budgets.py [--keep] [--skip-test]

It clones the committed HEAD into a temporary folder, runs the README's commands there (the
clone's own ``.venv`` is created by ``make``; pip takes the wheels from its cache or local disk)
and prints one line per step with its wall time, then where the `dvc repro` time went: seconds per
stage family (train, evaluate, dissect, the rest), with stage counts, from the time each "Running
stage" line appeared, and the start-up cost of one stage process (importing torch and kdinterp).
Targets (2 CPU cores): `make repro` <= 15 min, second `dvc repro` does nothing, `make test` <= 10 min.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(step: str, command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Run ``command``, stream nothing, return (seconds, combined output); exit on failure."""
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"{step} failed ({' '.join(command)}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def timed_stages(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, dict[str, float], str]:
    """Run ``command`` (``make repro``), timestamping each "Running stage" line; return (seconds, per-stage seconds, output)."""
    began = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1)
    marks, lines = [], []
    for line in process.stdout:  # type: ignore[union-attr]
        lines.append(line)
        match = re.search(r"Running stage '([^']+)'", line)
        if match:
            marks.append((match.group(1), time.perf_counter()))
    process.wait()
    end = time.perf_counter()
    output = "".join(lines)
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    stages = {name: (marks[i + 1][1] if i + 1 < len(marks) else end) - start for i, (name, start) in enumerate(marks)}
    return end - began, stages, output


def family(stage: str) -> str:
    """``train`` / ``evaluate`` / ``dissect`` / ``saliency`` / ``diffroar`` / the stage's own name."""
    base = stage.split("@")[0]
    if base.startswith(("train_", "distill_", "self_distill_", "init_")):  # study.GROUPS' train stages
        return "train"
    return base.split("_")[0] if base.startswith(("evaluate_", "dissect_", "saliency_", "diffroar_")) else base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    parser.add_argument("--skip-test", action="store_true", help="do not time `make test`")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kdinterp-budget-"))
    clone = work / "kdinterp"
    env = {**os.environ, "KDINTERP_PROGRESS": "0"}
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    rows = []
    rows.append(("make venv (create .venv)", run("make venv", ["make", "venv"], clone, env)[0]))
    rows.append(("make data (generate the concept world)", run("make data", ["make", "data"], clone, env)[0]))
    path_env = {**env, "PATH": f"{clone / '.venv' / 'bin'}:{env['PATH']}", "DVC_NO_ANALYTICS": "1"}
    seconds, stages, _ = timed_stages(["make", "repro"], clone, path_env)
    rows.append(("make repro (dvc repro: the whole study)", seconds))
    seconds, output = run("dvc repro (again)", ["dvc", "repro"], clone, path_env)
    up_to_date = "up to date" in output and "Running stage" not in output
    rows.append((f"dvc repro again ({'nothing to do' if up_to_date else 'RERAN STAGES'})", seconds))
    if not args.skip_test:
        rows.append(("make test", run("make test", ["make", "test"], clone, env)[0]))
    startup = run("stage start-up", [str(clone / ".venv" / "bin" / "python"), "-c",
                                     "import kdinterp.stages.training, kdinterp.measures.dissection"], clone, env)[0]
    print(f"{'step':48s} {'seconds':>8s}")
    for step, seconds in rows:
        print(f"{step:48s} {seconds:8.1f}")
    print(f"\ndvc repro by stage family ({len(stages)} stages; start-up of one stage process: {startup:.1f} s):")
    totals: dict[str, list[float]] = {}
    for name, took in stages.items():
        totals.setdefault(family(name), []).append(took)
    for name, times in sorted(totals.items(), key=lambda item: -sum(item[1])):
        print(f"  {name:16s} {len(times):3d} stages {sum(times):8.1f} s  (median {sorted(times)[len(times) // 2]:.1f} s)")
    print(f"clone: {clone}" if args.keep else "")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
