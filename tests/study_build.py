"""The tiny study, built once per test session in a background process that starts with the session.

Its `dvc repro` (~55 stages, ~5 min on 2 cores) is the longest thing the suite does, and it is a chain of
one-process stages. It therefore runs beside the other tests instead of before the tests that read it:
`conftest.py` starts it with the session, orders the tests that read it last, and waits for it there.
Under pytest-xdist the workers share one build (the first to create its folder starts it; the others wait
for its status file), so `make test` builds the study once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Longest wait for the build before the waiting test fails (the build takes ~5 min alone on 2 cores).
TIMEOUT_S = 1800.0


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, which has exited and is not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True


class BackgroundStudy:
    """One build of ``tests/tiny_study.py --run`` in ``folder``: ``study/`` (the project), ``build.log``,
    ``pid`` and, once it has ended, ``status`` (its exit code)."""

    def __init__(self, folder: Path, process: subprocess.Popen | None = None) -> None:
        self.folder, self.process = folder, process

    @classmethod
    def start(cls, shared: Path, env: dict[str, str]) -> BackgroundStudy:
        """Start the build under ``shared`` (a folder every worker of the session sees), unless a worker already did.

        ``env`` is the build's environment (``conftest.tool_env()``).
        """
        folder = shared / "tiny_study"
        try:
            folder.mkdir()
        except FileExistsError:
            return cls(folder)
        log = (folder / "build.log").open("wb")
        command = (f'"{sys.executable}" -m tests.tiny_study --run "{folder / "study"}"; code=$?; '
                   f'echo $code > "{folder / "status.tmp"}" && mv "{folder / "status.tmp"}" "{folder / "status"}"')
        process = subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        (folder / "pid").write_text(str(process.pid))
        return cls(folder, process)

    def wait(self, timeout_s: float = TIMEOUT_S) -> Path:
        """The built study's folder, once the build has ended. Raises ``RuntimeError`` with the end of its log
        if it failed, stopped without a status, or ran past ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        status, pid_file = self.folder / "status", self.folder / "pid"
        while not status.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(self._failure(f"still running after {timeout_s:.0f} s"))
            if pid_file.exists() and not _alive(int(pid_file.read_text())) and not status.exists():
                raise RuntimeError(self._failure("stopped without a status (killed?)"))
            time.sleep(0.5)
        code = int(status.read_text())
        if code != 0:
            raise RuntimeError(self._failure(f"exit code {code}"))
        return self.folder / "study"

    def stop(self) -> None:
        """Stop the build if this process started it and it still runs (the session ended early)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait()

    def _failure(self, why: str) -> str:
        log = (self.folder / "build.log").read_text(errors="replace") if (self.folder / "build.log").exists() else ""
        return f"the tiny study's build ({self.folder}) failed: {why}\n{log[-6000:]}"
