"""Bad input at the edges (issue 25, items 1, 2 and 4): one error path, limits before work, faults of the machine.

Every case runs the ``kdinterp`` command and expects one line on stderr, ``error: ...`` naming the path or
key and the fix, exit status 1, no traceback and nothing partial left behind. The tests run as root, which
writes through any permission bits, so "cannot be written" is simulated: a path under a regular file (a
real ENOTDIR), or a monkeypatched ``mkdir`` or write that raises ``PermissionError`` or ``OSError(ENOSPC)``.
"""

from __future__ import annotations

import errno
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kdinterp.cli import app
from kdinterp.core.paramsfile import MAX_PARAMS_BYTES, MAX_PARAMS_NODES

ROOT = Path(__file__).resolve().parents[1]
TINY_WORLD = {"object_types": 2, "subtypes_per_type": 2, "train_per_class": 1, "val_per_class": 1, "probe_images": 4}
FAST = 1.0  # seconds: a refusal before work takes milliseconds; a regression that parses or renders takes more


def _refused(args: list[str], *names: str) -> str:
    """Run ``kdinterp ARGS``; assert one error line (naming each of ``names``) and exit 1; return the line."""
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, SystemExit), result.exc_info  # no traceback
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def _world_params(tmp_path: Path, **world) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"world": {**TINY_WORLD, **world}}))
    return path


def _generate(params: Path, out: Path) -> list[str]:
    return ["world", "generate", "--params", str(params), "--out", str(out), "--workers", "1", "--quiet"]


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


# -- 1. one error rule: the world generator's output path ------------------------------------------------------

def test_world_output_that_is_a_file_is_named_a_file(tmp_path: Path) -> None:
    params, out = _world_params(tmp_path), tmp_path / "world"
    out.write_text("not a folder")
    before = _files(tmp_path)
    line = _refused(_generate(params, out), str(out), "is a file, not a folder", "choose another --out")
    assert "not empty" not in line
    assert _files(tmp_path) == before and out.read_text() == "not a folder"


def test_world_output_under_a_file_is_refused(tmp_path: Path) -> None:
    params, blocker = _world_params(tmp_path), tmp_path / "blocker"
    blocker.write_text("a file")
    before = _files(tmp_path)
    _refused(_generate(params, blocker / "sub" / "world"), str(blocker), "is a file", "choose another --out")
    assert _files(tmp_path) == before


def test_world_output_folder_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    params, out = _world_params(tmp_path), tmp_path / "world"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    before = _files(tmp_path)
    _refused(_generate(params, out), str(out), "not empty", "choose another --out")
    assert _files(tmp_path) == before


def test_world_output_folder_that_cannot_be_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root, chmod does not stop a write: mkdir raises what it raises for a user without permission."""
    params, out = _world_params(tmp_path), tmp_path / "new" / "world"
    real_mkdir = Path.mkdir

    def denied(self: Path, *args, **kwargs) -> None:
        if self.name == ".world.partial":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", denied)
    _refused(_generate(params, out), ".world.partial", "permission denied", "chmod")
    assert _files(tmp_path) == [params]  # nor the parent folder it made


@pytest.mark.parametrize("filename", [None, "probe/index.csv"])
def test_full_disk_during_generation_is_one_line_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    filename: str | None) -> None:
    """ENOSPC from a write (``write()`` carries no file name; ``open()`` does): the staging folder is removed."""
    from kdinterp.world import generate as generate_module

    def full(*args, **kwargs) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", *([filename] if filename else []))

    monkeypatch.setattr(generate_module, "write_tables", full)
    params, out = _world_params(tmp_path), tmp_path / "deep" / "world"
    _refused(_generate(params, out), filename or str(out), "no space left", "free space")
    assert _files(tmp_path) == [params]


def test_other_os_errors_keep_their_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OSError that is not a fault of the machine (here EBADF) is a bug: not turned into one line."""
    from kdinterp.world import generate as generate_module

    def bad(*args, **kwargs) -> None:
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(generate_module, "write_tables", bad)
    params = _world_params(tmp_path)
    result = CliRunner().invoke(app, _generate(params, tmp_path / "world"))
    assert isinstance(result.exception, OSError) and result.exception.errno == errno.EBADF
    assert _files(tmp_path) == [params]  # still nothing partial


# -- 2. limits before work ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "what"), [
    ("image_size", 200_000, "of memory"),
    ("probe_image_size", 1_000_000, "of memory"),
    ("probe_images", 10**12, "of memory"),
])
def test_sizes_that_cannot_fit_in_memory_are_refused_at_once(tmp_path: Path, key: str, value: int, what: str) -> None:
    params, out = _world_params(tmp_path, **{key: value}), tmp_path / "world"
    start = time.perf_counter()
    line = _refused(_generate(params, out), f"world.{key}", what, "is available", f"lower world.{key}")
    assert time.perf_counter() - start < FAST
    assert " TB " in line or " PB " in line or " GB " in line, line  # the bytes needed, in words
    assert _files(tmp_path) == [params]


def test_worlds_that_cannot_fit_on_disk_are_refused_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from kdinterp.world import capacity

    monkeypatch.setattr(capacity.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 500))
    params, out = _world_params(tmp_path, probe_images=2000), tmp_path / "world"
    start = time.perf_counter()
    _refused(_generate(params, out), "world.probe_images", "on disk", "500 B is free", "--out on a larger disk")
    assert time.perf_counter() - start < FAST
    assert _files(tmp_path) == [params]


def _study_params(tmp_path: Path, tail: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text() + tail)
    return path


@pytest.mark.parametrize("command", [["evaluate", "teacher"], ["world", "generate", "--quiet"]])
def test_params_file_over_the_size_limit_is_refused_before_parsing(tmp_path: Path, command: list[str]) -> None:
    params = _study_params(tmp_path, "junk: [" + ",".join(["1"] * (MAX_PARAMS_BYTES // 2)) + "]\n")
    start = time.perf_counter()
    _refused([*command, "--params", str(params), *(["--out", str(tmp_path / "w")] if "world" in command else [])],
             str(params), "bytes, more than a parameter file may hold", "--params")
    assert time.perf_counter() - start < FAST


def test_unknown_key_before_a_long_list_is_refused_without_reading_the_list(tmp_path: Path) -> None:
    """Under the size limit, ~0.8 MB: yaml.safe_load of it takes seconds; the event scan stops at the key."""
    params = _study_params(tmp_path, "teachrs: [" + ",".join(["1"] * 400_000) + "]\n")
    assert params.stat().st_size < MAX_PARAMS_BYTES
    start = time.perf_counter()
    _refused(["evaluate", "teacher", "--params", str(params)], str(params), "teachrs: unknown key",
             "did you mean 'teachers'?")
    assert time.perf_counter() - start < FAST


def test_too_many_values_under_a_known_key_are_refused_before_parsing(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("world:\n  seed: [" + ",".join(["1"] * (MAX_PARAMS_NODES * 10)) + "]\n")
    assert params.stat().st_size < MAX_PARAMS_BYTES
    start = time.perf_counter()
    _refused(_generate(params, tmp_path / "w"), str(params), f"more than {MAX_PARAMS_NODES:,} YAML values")
    assert time.perf_counter() - start < FAST


def test_the_scan_accepts_the_default_params_and_every_profile() -> None:
    """The scan's key tracking (nested mappings, lists of mappings, flow style) against real files."""
    from kdinterp.core.paramsfile import read_params_file

    for path in [ROOT / "params.yaml", *sorted((ROOT / "profiles").glob("*.yaml"))]:
        assert read_params_file(path) == yaml.safe_load(path.read_text()), path
    from kdinterp.measures.registry import load_params

    load_params(ROOT / "params.yaml")


# -- 4. faults of the machine ---------------------------------------------------------------------------------

def test_cuda_without_a_gpu_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No model file exists: the device is checked first, so the error is about the device."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["dissection"]["device"] = "cuda"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    outputs = tmp_path / "outputs"
    _refused(["dissect", "teacher", "--params", str(params), "--outputs", str(outputs)],
             "dissection.device", "no CUDA device", "set dissection.device: auto or cpu")
    assert not outputs.exists()


def test_an_output_folder_under_a_file_is_one_line_for_any_stage(tmp_path: Path) -> None:
    """A stage's --outputs under a regular file (ENOTDIR from the first mkdir): the path and the fix."""
    from kdinterp.cli import user_error

    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    try:
        (blocker / "outputs" / "metrics").mkdir(parents=True)
    except OSError as err:
        message = user_error(err)
    assert message is not None and str(blocker) in message and "is a file, not a folder" in message
    assert "choose another path" in message


def test_a_write_removes_the_temporary_files_a_killed_writer_left(tmp_path: Path) -> None:
    """A SIGKILL inside ``atomic_path`` leaves ``.<name>.<random>.tmp<suffix>``; the next write of the same file
    removes it (and only its own leftovers: another file's temporary file stays)."""
    from kdinterp.core.io import write_bytes

    target = tmp_path / "weights.safetensors"
    left = tmp_path / ".weights.safetensors.k3j9x.tmp.safetensors"
    other = tmp_path / ".history.csv.a1b2c.tmp.csv"
    left.write_bytes(b"half")
    other.write_bytes(b"half")
    write_bytes(target, b"whole")
    assert target.read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, target.name]


def test_repair_lock_puts_back_the_committed_dvc_lock_and_drops_dead_rwlock_entries(tmp_path: Path) -> None:
    """What an interrupted `dvc repro` leaves (tests/test_interrupt.py makes it for real): an empty dvc.lock, and
    rwlock entries of killed processes; a corrupted rwlock is removed."""
    import json
    import os
    import subprocess

    from kdinterp.workflow.lockfile import lock_problem, prune_rwlock, repair_lock
    from tests.tiny_study import GIT_IDENTITY

    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n  train:\n    cmd: kdinterp train teacher\n")
    env = {**os.environ, **GIT_IDENTITY}
    for command in (["git", "init", "-q"], ["git", "add", "dvc.lock"], ["git", "commit", "-q", "-m", "lock"]):
        subprocess.run(command, cwd=tmp_path, env=env, check=True, capture_output=True)
    committed = lock.read_bytes()
    assert lock_problem(tmp_path) is None and repair_lock(tmp_path) is None
    lock.write_text("")
    assert "empty" in repair_lock(tmp_path) and lock.read_bytes() == committed
    lock.write_text("schema: '2.0'\nstages:\n  train: [\n")
    assert "not valid YAML" in repair_lock(tmp_path) and lock.read_bytes() == committed

    rwlock = tmp_path / ".dvc" / "tmp" / "rwlock"
    rwlock.parent.mkdir(parents=True)
    dead = 2 ** 22 + 12345   # above the largest pid_max (2**22): no such process
    live = {"pid": os.getpid(), "cmd": "dvc repro"}
    rwlock.write_text(json.dumps({"read": {"a": [{"pid": dead, "cmd": "dvc repro"}, live]},
                                  "write": {"b": {"pid": dead, "cmd": "dvc repro"}}}))
    assert "1 dvc process" in prune_rwlock(tmp_path)
    assert json.loads(rwlock.read_text()) == {"read": {"a": [live]}, "write": {}}
    assert prune_rwlock(tmp_path) is None
    rwlock.write_text('{"read": {"a": [')
    assert "not valid JSON" in prune_rwlock(tmp_path) and not rwlock.exists()


def test_repair_lock_drops_the_lock_entries_of_stages_dvc_yaml_no_longer_defines(tmp_path: Path) -> None:
    """A stage taken out of a matrix keeps its dvc.lock entry (treeverse/dvc#5293); prune_stale_stages drops it and
    keeps the others byte for byte; with nothing stale the file is not rewritten."""
    import os
    import subprocess

    from kdinterp.workflow.lockfile import prune_stale_stages

    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for command in (["git", "init", "-q"], [str(Path(sys.executable).parent / "dvc"), "init", "-q"]):
        subprocess.run(command, cwd=tmp_path, env=env, check=True, capture_output=True)
    (tmp_path / "dvc.yaml").write_text("stages:\n  make:\n    matrix: {n: [1, 2]}\n    cmd: echo ${item.n} > out-${item.n}\n"
                                       "    outs:\n      - out-${item.n}\n")
    dvc = [str(Path(sys.executable).parent / "dvc"), "repro", "-q"]
    subprocess.run(dvc, cwd=tmp_path, env=env, check=True, capture_output=True)
    lock = tmp_path / "dvc.lock"
    two = lock.read_text()
    (tmp_path / "dvc.yaml").write_text((tmp_path / "dvc.yaml").read_text().replace("[1, 2]", "[1]"))
    subprocess.run(dvc, cwd=tmp_path, env=env, check=True, capture_output=True)
    assert "make@2" in lock.read_text()                              # DVC keeps it
    assert "1 stage(s)" in prune_stale_stages(tmp_path)
    assert "make@2" not in lock.read_text() and "make@1" in lock.read_text()
    assert two.split("  make@2:")[0] == lock.read_text()            # the entry that stays is unchanged
    before = lock.stat().st_mtime_ns
    assert prune_stale_stages(tmp_path) is None and lock.stat().st_mtime_ns == before


def test_pruning_leaves_the_lock_alone_when_dvc_yaml_is_unreadable(tmp_path: Path) -> None:
    import os
    import subprocess

    from kdinterp.workflow.lockfile import prune_stale_stages

    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for command in (["git", "init", "-q"], [str(Path(sys.executable).parent / "dvc"), "init", "-q"]):
        subprocess.run(command, cwd=tmp_path, env=env, check=True, capture_output=True)
    (tmp_path / "dvc.yaml").write_text("stages:\n  make: [\n")
    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n  gone:\n    cmd: echo\n")
    assert prune_stale_stages(tmp_path) is None and "gone" in lock.read_text()
