"""Repair what an interrupted ``dvc repro`` leaves broken: ``dvc.lock``, and DVC's read/write lock.

DVC (3.67) rewrites ``dvc.lock`` in place after every stage: it opens the file with ``"w+"``, which
empties it, and then writes the YAML (``dvc/utils/serialize/_common.py: _dump_data``). A SIGKILL or
SIGTERM between the two, or a Ctrl-C inside the write, leaves the file empty or cut short, and every
later DVC command stops at "'./dvc.lock' validation failed". ``tests/test_interrupt.py`` reproduces it.

:func:`repair_lock` puts back the committed ``dvc.lock`` (``git show HEAD:dvc.lock``), or removes the
file outside git. ``dvc repro`` then restores each stage that ran since the commit from DVC's
run-cache instead of running it again (validate_data, validate and figures, whose outputs are not
cached, run again: seconds each).

DVC's read/write lock, ``.dvc/tmp/rwlock``, keeps the entries of a ``dvc`` process that was killed
(SIGKILL, SIGTERM). DVC skips an entry whose PID no longer exists, but an unrelated process that later
gets the same PID blocks every stage that touches those paths ("is busy, it is being blocked by"), and
the file, also rewritten in place, can be cut short ("JSON structure is corrupted"). :func:`prune_rwlock`
drops the entries of processes that no longer exist, under DVC's own guard (``dvc.rwlock._edit_rwlock``,
DVC's private helper, pinned with DVC in requirements.lock), and removes a corrupted file, DVC's own
advice.

DVC keeps the ``dvc.lock`` entries of stages that ``dvc.yaml`` no longer defines (a renamed stage, a
model or seed taken out of a ``matrix``: treeverse/dvc#5293, on purpose, to ease switching branches).
They change nothing DVC does, but it parses and rewrites them after every stage, so :func:`prune_stale_stages`
drops them, through DVC's own YAML round trip. ``make repro`` runs all three (``kdinterp repair-lock``)
before ``dvc repro``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from kdinterp.core.errors import KdinterpError
from kdinterp.core.io import write_bytes

__all__ = ["LOCK_FILE", "lock_problem", "prune_rwlock", "prune_stale_stages", "repair_lock"]

LOCK_FILE = "dvc.lock"


def lock_problem(root: Path) -> str | None:
    """Why ``root/dvc.lock`` cannot be read by DVC (empty, not YAML, or not DVC's lock-file schema), or ``None``
    when it can, or does not exist. Checked with DVC's own parser and schema (``dvc.schema``)."""
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA
    from dvc.utils.serialize import YAMLFileCorruptedError, load_yaml
    from voluptuous import MultipleInvalid

    path = root / LOCK_FILE
    if not path.exists():
        return None
    if path.stat().st_size == 0:
        return "it is empty"
    try:
        COMPILED_LOCKFILE_SCHEMA(load_yaml(path))
    except YAMLFileCorruptedError:
        return "it is not valid YAML"
    except MultipleInvalid as err:
        return f"it does not match DVC's lock-file schema ({err})"
    return None


def repair_lock(root: Path) -> str | None:
    """Put back a readable ``root/dvc.lock`` when :func:`lock_problem` finds it broken; returns what was done
    (one line), or ``None`` when the file was fine.

    Raises:
        KdinterpError: the committed version cannot be read either (``git show HEAD:dvc.lock`` failed
            inside a git work tree).
    """
    problem = lock_problem(root)
    if problem is None:
        return None
    path = root / LOCK_FILE
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, text=True)
    if inside.returncode != 0:
        path.unlink()
        return (f"{path}: {problem} (an interrupted dvc repro?); removed it: dvc repro restores what its "
                "run-cache holds and runs the rest")
    committed = subprocess.run(["git", "show", f"HEAD:{LOCK_FILE}"], cwd=root, capture_output=True)
    if committed.returncode != 0:
        raise KdinterpError(f"{path}: {problem}, and `git show HEAD:{LOCK_FILE}` failed "
                            f"({committed.stderr.decode(errors='replace').strip()}); fix: `git checkout {LOCK_FILE}` "
                            f"from a commit that has it, or delete {LOCK_FILE} (every stage then runs again)")
    write_bytes(path, committed.stdout)
    return (f"{path}: {problem} (an interrupted dvc repro: DVC rewrites it in place); put back the committed "
            "version: dvc repro restores the stages run since then from its run-cache")


def prune_rwlock(root: Path) -> str | None:
    """Drop the entries of dead processes from ``root/.dvc/tmp/rwlock`` (a corrupted file is removed); returns
    what was done (one line), or ``None`` when there was nothing to do. Liveness is DVC's own test
    (``psutil.pid_exists``)."""
    import psutil
    from dvc.fs import localfs
    from dvc.rwlock import RWLOCK_FILE, RWLockFileCorruptedError, _edit_rwlock

    lock_dir = root / ".dvc" / "tmp"
    path = lock_dir / RWLOCK_FILE
    if not path.exists():
        return None
    dead: set[int] = set()
    try:
        with _edit_rwlock(str(lock_dir), localfs, False) as lock:
            for held, infos in list(lock["read"].items()):
                dead.update(info["pid"] for info in infos if not psutil.pid_exists(info["pid"]))
                alive = [info for info in infos if info["pid"] not in dead]
                if alive:
                    lock["read"][held] = alive
                else:
                    del lock["read"][held]
            for held, info in list(lock["write"].items()):
                if not psutil.pid_exists(info["pid"]):
                    dead.add(info["pid"])
                    del lock["write"][held]
    except RWLockFileCorruptedError:
        path.unlink(missing_ok=True)
        return f"{path}: not valid JSON (an interrupted dvc command); removed it"
    if not dead:
        return None
    return f"{path}: dropped the entries of {len(dead)} dvc process(es) that no longer run (killed?)"


def prune_stale_stages(root: Path) -> str | None:
    """Drop the entries of ``root/dvc.lock`` whose stage ``root/dvc.yaml`` no longer defines; returns what was done
    (one line), or ``None`` when there was nothing to drop (the file is then not rewritten). The defined stages
    are DVC's own expansion of ``dvc.yaml`` (``matrix``, ``foreach``); the file is edited with DVC's YAML round
    trip (``dvc.utils.serialize.modify_yaml``), so what stays is written as DVC writes it. A ``dvc.yaml`` that DVC
    cannot read leaves the file untouched (``dvc repro`` then names the problem).
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.stage import PipelineStage
    from dvc.utils.serialize import load_yaml, modify_yaml

    path = root / LOCK_FILE
    if not path.exists() or lock_problem(root) is not None:
        return None
    locked = set((load_yaml(path) or {}).get("stages", {}))
    try:
        with Repo(str(root)) as repo:
            pipeline = (root / "dvc.yaml").resolve()
            defined = {stage.name for stage in repo.index.stages
                       if isinstance(stage, PipelineStage) and Path(stage.path).resolve() == pipeline}
    except DvcException:
        return None
    stale = sorted(locked - defined)
    if not stale:
        return None
    with modify_yaml(path) as data:
        for name in stale:
            del data["stages"][name]
    return (f"{path}: dropped the entries of {len(stale)} stage(s) that dvc.yaml no longer defines "
            f"(e.g. {', '.join(stale[:3])})")
