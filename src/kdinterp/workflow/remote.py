"""The study's DVC remote: check it, pull a published study from it, publish a study to it.

The cache rule (dvc.yaml's header) puts every output a reviewer needs either in git or in the DVC
cache. So a clone plus :func:`pull` holds the whole study, and ``dvc repro`` afterwards runs no
stage; :func:`publish` pushes everything a pull needs and then proves, with
``dvc data status --not-in-remote``, that nothing was left behind.

The remote is DVC's own configuration: ``.dvc/config`` names the default remote ``storage`` with a
placeholder URL; each user sets the real URL, and credentials, in ``.dvc/config.local`` (git-ignored
by DVC) or in the environment (``AWS_ACCESS_KEY_ID`` ...), never in a committed file. Transfers and
status checks run the ``dvc`` command itself, as a user would type it; reading the configuration and
probing the remote use DVC's Python API (``dvc.repo.Repo``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kdinterp.core.errors import KdinterpError

__all__ = ["PLACEHOLDER", "REACH_TIMEOUT_S", "Remote", "RemoteError", "changed_stages", "check", "default_remote",
           "not_in_remote", "publish", "pull", "url_is_set"]

#: The URL that ``.dvc/config`` commits for the default remote: it must be replaced by each user.
PLACEHOLDER = "s3://your-bucket/kdinterp"
#: How long :func:`check` waits for the remote to answer before it gives up (seconds).
REACH_TIMEOUT_S = 4.0

_FIX = ("set it with `dvc remote modify --local {name} url s3://BUCKET/PATH` (credentials: "
        "`dvc remote modify --local {name} access_key_id ...`, or AWS_* environment variables)")


class RemoteError(KdinterpError, RuntimeError):
    """The remote is not configured, not reachable, or a transfer failed; the message names the fix."""


@dataclass(frozen=True)
class Remote:
    """A DVC remote as configured for this checkout (``.dvc/config`` merged with ``config.local``)."""

    name: str
    url: str


def _dvc() -> str:
    """The ``dvc`` executable next to this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "dvc"
    return str(here) if here.is_file() else (shutil.which("dvc") or "dvc")


def _run(root: Path, *args: str) -> subprocess.CompletedProcess:
    """``dvc ARGS`` in ``root``, output captured (DVC prints no progress bars without a terminal anyway)."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([_dvc(), *args], cwd=root, env=env, text=True, capture_output=True, check=False)


def default_remote(root: Path, name: str | None = None) -> Remote:
    """The remote ``name`` (default: ``core.remote``) of the DVC project at ``root``.

    Raises:
        RemoteError: not a DVC project, no remote of that name, or no default remote.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            config = repo.config
            name = name or config["core"].get("remote")
            remotes = config.get("remote", {})
    except DvcException as err:
        raise RemoteError(f"{root}: {err}; run this in the kdinterp checkout") from None
    if not name:
        raise RemoteError(f"{root / '.dvc' / 'config'}: no default DVC remote; add one with "
                          "`dvc remote add -d storage s3://BUCKET/PATH`")
    if name not in remotes:
        raise RemoteError(f"{root / '.dvc' / 'config'}: no DVC remote named '{name}' (configured: "
                          f"{', '.join(sorted(remotes)) or 'none'}); add it with `dvc remote add {name} URL`")
    return Remote(name, str(remotes[name]["url"]))


def url_is_set(root: Path, name: str | None = None) -> bool:
    """Whether the remote's URL was set by the user (is not :data:`PLACEHOLDER`); raises like :func:`default_remote`."""
    return default_remote(root, name).url != PLACEHOLDER


def _reach(root: Path, name: str) -> None:
    """List the remote's root through DVC's own filesystem for it; raise what that raises."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        handle = repo.cloud.get_remote(name)
        handle.fs.exists(handle.path)


def check(root: Path, name: str | None = None, timeout_s: float = REACH_TIMEOUT_S) -> Remote:
    """The configured remote, once it is set (not :data:`PLACEHOLDER`) and answers within ``timeout_s``.

    The remote is asked from a child process (``python -m kdinterp.workflow.remote ROOT NAME``), killed after
    ``timeout_s``: DVC's S3 filesystem retries an unreachable endpoint for about 9 s (measured on a
    closed loopback port), and its I/O threads would hold up this process's exit.

    Raises:
        RemoteError: one line naming the remote, its URL, what is wrong and the fix.
    """
    remote = default_remote(root, name)
    if remote.url == PLACEHOLDER:
        raise RemoteError(f"remote '{remote.name}' still has the placeholder URL {PLACEHOLDER} from .dvc/config; "
                          + _FIX.format(name=remote.name))
    try:
        done = subprocess.run([sys.executable, "-m", "kdinterp.workflow.remote", str(root), remote.name], capture_output=True,
                              text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise RemoteError(f"remote '{remote.name}' ({remote.url}) did not answer within {timeout_s:g} s; check the "
                          "URL (`dvc remote list`), the network and the endpoint; " + _FIX.format(name=remote.name)
                          ) from None
    if done.returncode != 0:
        reason = " ".join(done.stderr.split())[-300:] or f"exit status {done.returncode}"
        raise RemoteError(f"remote '{remote.name}' ({remote.url}) is unreachable: {reason}; "
                          + _FIX.format(name=remote.name))
    return remote


def _summary(done: subprocess.CompletedProcess) -> None:
    """Print the last line of a successful transfer (DVC's count of files fetched or pushed)."""
    lines = [line for line in (done.stdout or "").splitlines() if line.strip()]
    if lines:
        print(lines[-1])


def _failed(done: subprocess.CompletedProcess, what: str, remote: Remote) -> RemoteError:
    lines = [line for line in (done.stderr or "").splitlines() if line.strip()]
    reason = next((line for line in lines if line.startswith("ERROR")), lines[-1] if lines else "no message")
    return RemoteError(f"{what} remote '{remote.name}' ({remote.url}) failed: {reason.strip()}")


def pull(root: Path, name: str | None = None) -> list[str]:
    """``dvc pull`` every cached output of the study, then confirm that nothing would rerun.

    Returns:
        The stages ``dvc status`` still reports as changed (empty: ``dvc repro`` runs no stage).

    Raises:
        RemoteError: the remote is not set or unreachable, or the pull failed (a corrupted object is
            refused by DVC when the remote has ``verify = true``, as ``.dvc/config`` sets).
    """
    remote = check(root, name)
    done = _run(root, "pull", "--remote", remote.name)
    if done.returncode != 0:
        raise _failed(done, "pulling from", remote)
    _summary(done)
    return changed_stages(root)


def changed_stages(root: Path) -> list[str]:
    """The stages ``dvc status`` reports as changed (``dvc status --json``'s keys)."""
    done = _run(root, "status", "--json")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise RemoteError(f"dvc status failed in {root}: {last}")
    return sorted(json.loads(done.stdout or "{}"))


def publish(root: Path, name: str | None = None) -> Remote:
    """Push data, models, dissections, the report and DVC's run-cache; then check the remote has them all.

    Returns:
        The remote, which now holds every cached file of the workspace.

    Raises:
        RemoteError: not set, unreachable, the push failed (e.g. a read-only HTTP remote), or files
            are still missing from the remote afterwards (named in the message).
    """
    remote = check(root, name)
    done = _run(root, "push", "--remote", remote.name, "--run-cache")
    if done.returncode != 0:
        raise _failed(done, "pushing to", remote)
    _summary(done)
    not_in_remote(root, remote)
    return remote


def not_in_remote(root: Path, remote: Remote) -> None:
    """Check that the remote holds every cached file of the workspace (``dvc data status --not-in-remote``).

    Raises:
        RemoteError: the check failed, or files are missing (the first five named).
    """
    done = _run(root, "data", "status", "--not-in-remote", "--json", "--remote", remote.name)
    if done.returncode != 0:
        raise _failed(done, "checking", remote)
    missing = sorted(json.loads(done.stdout or "{}").get("not_in_remote", []))
    if missing:
        raise RemoteError(f"after the push, remote '{remote.name}' still lacks {len(missing)} file(s): "
                          f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; run `make publish` again")


def _main(argv: list[str]) -> int:
    """``python -m kdinterp.workflow.remote ROOT NAME``: exit 0 if remote NAME answers, else 1 with the error on stderr."""
    try:
        _reach(Path(argv[0]), argv[1])
    except Exception as err:  # any failure of the remote's filesystem is reported, not raised
        print(f"{type(err).__name__}: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
