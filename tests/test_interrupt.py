"""Interrupt `dvc repro` anywhere, then run it again: the study ends as if it had never been interrupted.

On a copy of the tiny study whose students train 12 epochs of 2-image batches (so `train_student@scratch-0` and
`dissect_student@scratch-0` must rerun), `dvc repro dissect_student@scratch-0` is interrupted three times in a row,
each time with the same signal, sent to its process group (what Ctrl-C in a terminal, or a CI runner's timeout,
does):

1. during training, after the line of epoch 3 of 12 (the resume state of epoch 3 is on disk);
2. between stages, when DVC prints "Updating lock file" after the training command has exited;
3. during dissection, when the dissect command has printed its summary (it is writing its outputs).

Before each run, `kdinterp repair-lock` (what `make repro` runs first) puts back the committed dvc.lock if an
interrupt left it empty: DVC rewrites that file in place (src/kdinterp/workflow/lockfile.py), and a SIGKILL "between
stages" catches it empty. A fourth `dvc repro` then completes. Every file of the workspace (outputs, dvc.lock, the DVC cache) must be
byte-identical to the same target reproduced without interruption, with no temporary file left anywhere. The resume
state (outputs/checkpoints/, neither committed nor cached) must hold the same values: a resumed run pickles them
in another byte order. DVC's read/write lock (`.dvc/tmp/rwlock`) keeps the entries of killed `dvc` processes (DVC
skips them while their PIDs are unused); after `kdinterp repair-lock` none is left. SIGINT, SIGTERM and SIGKILL are
each tried at the three points.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, tool_env
from tests.tiny_study import copy_study

pytestmark = pytest.mark.slow

TARGET = "dissect_student@scratch-0"
EPOCHS = 12
BATCH = 2
#: The three points, in the order they are reached: a line of `dvc repro`'s output after which the signal is sent.
POINTS = (("during training", f"scratch-0 epoch 3/{EPOCHS}:"),
          ("between stages", "Updating lock file"),
          ("during dissection", "units are detectors covering"))
#: Not compared byte for byte: git's own files, DVC's process-local state (its locks are checked apart) and the
#: training stages' resume state (compared by value).
SKIPPED = (".git", ".dvc/tmp", "outputs/checkpoints")
RESUME_STATE = "outputs/checkpoints/scratch-0/last.pt"
#: Starts a command with SIGINT and SIGQUIT at their defaults, as in a terminal: a shell starts its background jobs
#: with both ignored, and what ignores SIGINT (pytest, DVC, each stage) passes that on, so Ctrl-C would find nobody.
AS_IN_A_TERMINAL = (sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                    "signal.signal(signal.SIGQUIT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])")
#: How long one run may take before the test gives up on it (a tiny stage takes 1-5 s).
RUN_TIMEOUT_S = 180.0


def _longer_training(project: Path) -> Path:
    """Students train ``EPOCHS`` epochs of batches of :data:`BATCH` images in ``project``: their stages have changed
    and must rerun, and a training run lasts long enough after its epoch-3 line for the signal to find it running
    (a stage forked from the warm process has no start-up or teardown of its own to absorb a late signal)."""
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["student_recipe"]["optim"]["epochs"] = EPOCHS
    params["student_recipe"]["optim"]["batch_size"] = BATCH
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def _tree(project: Path) -> dict[str, str]:
    """sha256 of every file under ``project`` but :data:`SKIPPED`, by relative path."""
    files = {}
    for path in sorted(project.rglob("*")):
        relative = path.relative_to(project).as_posix()
        if path.is_file() and not any(relative == s or relative.startswith(f"{s}/") for s in SKIPPED):
            files[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def _env() -> dict[str, str]:
    return tool_env(PYTHONUNBUFFERED="1")


def _repair_lock(project: Path) -> str:
    """`kdinterp repair-lock` in ``project``: what it said (empty when dvc.lock was fine)."""
    done = subprocess.run([str(BIN / "kdinterp"), "repair-lock"], cwd=project, env=_env(), capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return done.stderr


def _interrupt(project: Path, sig: signal.Signals, marker: str) -> str:
    """Run `dvc repro TARGET` in ``project`` in a process group of its own; send ``sig`` to the group at the first
    line of output that contains ``marker``; return the run's output. Fails if the marker never comes."""
    run = subprocess.Popen([*AS_IN_A_TERMINAL, str(BIN / "dvc"), "repro", TARGET], cwd=project, env=_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines, sent = [], False
    deadline = time.monotonic() + RUN_TIMEOUT_S
    assert run.stdout is not None
    for line in run.stdout:
        lines.append(line)
        if not sent and marker in line:
            os.killpg(run.pid, sig)
            sent = True
        if time.monotonic() > deadline:
            os.killpg(run.pid, signal.SIGKILL)
            break
    run.wait()
    _reap(run.pid)
    output = "".join(lines)
    assert sent, f"the run ended before {marker!r}:\n{output[-3000:]}"
    assert run.returncode != 0, f"the {sig.name} at {marker!r} did not stop the run:\n{output[-3000:]}"
    return output


def _reap(group: int) -> None:
    """Wait until no process of the group ``group`` is left (a stage's child may outlive `dvc` by a moment)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(group, signal.SIGKILL)


def _repro(project: Path) -> str:
    done = subprocess.run([str(BIN / "dvc"), "repro", TARGET], cwd=project, env=_env(), capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, f"dvc repro failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _same_values(first: object, second: object) -> bool:
    """Whether two loaded checkpoints hold the same values (tensors equal, bit for bit)."""
    import torch

    if isinstance(first, dict):
        return isinstance(second, dict) and first.keys() == second.keys() and all(
            _same_values(first[k], second[k]) for k in first)
    if isinstance(first, (list, tuple)):
        return (isinstance(second, (list, tuple)) and len(first) == len(second)
                and all(_same_values(a, b) for a, b in zip(first, second)))
    if isinstance(first, torch.Tensor):
        return isinstance(second, torch.Tensor) and torch.equal(first, second)
    return first == second


def _resume_state(project: Path) -> object:
    import torch

    return torch.load(project / RESUME_STATE, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def reference(tiny_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project after an uninterrupted `dvc repro TARGET` on the longer-training copy."""
    project = _longer_training(copy_study(tiny_study, tmp_path_factory.mktemp("uninterrupted") / "study"))
    output = _repro(project)
    assert "Running stage 'train_student@scratch-0'" in output and f"Running stage '{TARGET}'" in output, output
    return project


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_interrupted_repro_resumes_to_the_uninterrupted_result(sig: signal.Signals, tiny_study: Path,
                                                                reference: Path, tmp_path: Path) -> None:
    project = _longer_training(copy_study(tiny_study, tmp_path / "study"))
    for point, marker in POINTS:
        _repair_lock(project)
        output = _interrupt(project, sig, marker)
        if point == "between stages":   # the signal came after training and before dissection began
            assert "Running stage 'train_student@scratch-0'" in output and "> kdinterp dissect" not in output, output
    _repair_lock(project)
    _repro(project)

    expected, after = _tree(reference), _tree(project)
    leftovers = sorted(set(after) - set(expected))
    assert not leftovers, f"files an uninterrupted run does not leave: {leftovers}"
    assert sorted(set(expected) - set(after)) == []
    assert [path for path in expected if after[path] != expected[path]] == []
    checkpoints = sorted(p.relative_to(project).as_posix() for p in (project / "outputs/checkpoints").rglob("*"))
    assert checkpoints == sorted(p.relative_to(reference).as_posix()
                                 for p in (reference / "outputs/checkpoints").rglob("*"))  # no temporary file
    assert _same_values(_resume_state(project), _resume_state(reference))
    _repair_lock(project)
    lock = json.loads((project / ".dvc" / "tmp" / "rwlock").read_text())
    assert lock["read"] == {} and lock["write"] == {}, lock
