"""The ``kdinterp`` command under ``dvc repro``: stages forked from a warm process that imported torch once.

Why: every DVC stage is a new process, and before any work it imports torch, torchvision (which loads
``torch._dynamo``), captum, scipy and kdinterp: about 3.7 s on 2 cores, paid by each of the default's 117 stages
(README, Budgets). DVC can run only one command per stage, so the per-output caching of separate stages and
one shared process exclude each other; a warm process keeps both. It is the zygote of Android and of
``multiprocessing``'s forkserver, shared between processes:

* The first stage command of a ``dvc repro`` (``DVC_STAGE`` set; Linux; ``KDINTERP_WARM`` not ``0``) starts a
  server (:mod:`kdinterp.workflow.warm_server`), which pins the numerical environment exactly as a stage does (:func:`kdinterp.core.runtime.pin_environment`),
  imports the stage modules of :func:`kdinterp.measures.registry.stage_modules`, then listens on a Unix socket.
* Each stage command is then a thin client: it sends its argv, working directory, environment and its standard
  streams (the file descriptors themselves), and the server forks a child that becomes the command: same
  environment, same streams, the CLI of :mod:`kdinterp.cli`, the exit of :func:`kdinterp.__main__.run_cli`. The client waits for the
  child's exit status and exits with it (a signal death is repeated on itself).
* SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to the client (Ctrl-C, a CI timeout) are forwarded to the child; if the
  client dies (SIGKILL), the server kills the child. A signal that comes after the child has ended with status 0
  kills the client, as it would kill a stage process still exiting, so a run signalled between two stages stops. So an interrupted stage stops as a separate process would
  (``tests/test_interrupt.py`` runs through this path).
* A server serves one key: the interpreter, the source files of the imported kdinterp (path, size, mtime) and the
  whole environment but the per-call variables of :data:`PER_CALL`. Anything else gets another server, so a
  child's imported state is the one a fresh process would have. A server exits after :data:`IDLE_S` seconds
  without a client; nothing is written to the workspace.
* When anything fails before the child has started (no server, a refused fork, a CUDA context already made in the
  server), the command runs in its own process as before. ``KDINTERP_WARM=0`` always does that.

Outputs are byte-identical either way (``tests/test_warm.py``; the default run, README Budgets).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

#: Environment variables that differ between the stages of one run and are read only at run time.
PER_CALL = frozenset({"DVC_STAGE", "DVC_ROOT", "PWD", "OLDPWD", "SHLVL", "_", "PYTEST_CURRENT_TEST"})
#: Seconds a server waits for the next client before it exits (``KDINTERP_WARM_IDLE`` overrides).
IDLE_S = 30.0
#: Seconds a client waits for a new server to finish its imports.
START_TIMEOUT_S = 180.0
#: The kdinterp package the servers import (its source files are part of a server's key).
PACKAGE = Path(__file__).resolve().parents[1]
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
MAX_REQUEST = 4 << 20  # bytes of a request (argv, directory, environment)
_MAX_SOCKET_PATH = 107  # bytes of a Unix socket's path on Linux (sun_path); a longer one runs without a server


def eligible(env: os._Environ | dict, argv: list[str]) -> bool:
    """Whether a command goes through a warm server: a ``dvc repro`` stage (``DVC_STAGE``) on Linux, not ``KDINTERP_WARM=0``."""
    return (sys.platform == "linux" and env.get("KDINTERP_WARM", "1") != "0" and "DVC_STAGE" in env
            and len(argv) > 1)


def server_key(env: dict[str, str], package: Path = PACKAGE) -> str:
    """Hex key of the server that may run a command: the interpreter, the ``.py`` files of ``package`` (path, size,
    mtime) and the environment ``env`` less :data:`PER_CALL`."""
    files = sorted((str(p.relative_to(package)), (st := p.stat()).st_size, st.st_mtime_ns)
                   for p in package.rglob("*.py"))
    payload = json.dumps([sys.executable, sys.version, str(package), files,
                          sorted((k, v) for k, v in env.items() if k not in PER_CALL)])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def socket_dir(env: dict[str, str]) -> Path:
    """The folder of this user's server sockets: ``$KDINTERP_WARM_DIR``, else ``$TMPDIR/kdinterp-warm-<uid>`` (mode 0700).

    A socket's path may not exceed 107 bytes: with a longer folder, commands run without a server."""
    base = env.get("KDINTERP_WARM_DIR") or str(Path(env.get("TMPDIR") or "/tmp") / f"kdinterp-warm-{os.getuid()}")
    path = Path(base)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def stop_servers(directory: Path, timeout_s: float = 10.0) -> int:
    """Stop the servers whose sockets are in ``directory`` (SIGTERM, then wait up to ``timeout_s``); how many ran."""
    pids = []
    for pid_file in directory.glob("*.sock.pid"):
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            pids.append(pid)
        except (ValueError, ProcessLookupError, FileNotFoundError):
            pass
        for leftover in (pid_file, pid_file.with_suffix("")):
            leftover.unlink(missing_ok=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    return len(pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- client

def run_warm(argv: list[str], cwd: Path, env: dict[str, str]) -> int | None:
    """Run ``argv`` in a child of the warm server of this key (started if needed).

    Returns the child's wait status (``os.waitpid`` encoding), or ``None`` if the command did not start there
    (then the caller runs it itself). Once the child has started, the signals of :data:`FORWARDED` go to it until
    this process exits, which the caller then does at once (:func:`exit_like`); a signal that came and found the child
    ended with status 0 kills this process instead. Raises ``SystemExit`` (status 1) if the connection ends after
    the child started but before its status came: the command may have run, so it is not run again.
    """
    try:
        directory = socket_dir(env)
        key = server_key(env)
        path = directory / f"{key}.sock"
        if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
            return None
        conn = _connect(path) or _start_server(directory, key, env)
    except OSError:
        return None
    if conn is None:
        return None
    with conn:
        ignored = [int(sig) for sig in FORWARDED if signal.getsignal(sig) == signal.SIG_IGN]
        request = json.dumps({"argv": argv, "cwd": str(cwd), "env": env, "ignored": ignored}).encode()
        try:
            socket.send_fds(conn, [len(request).to_bytes(8, "big") + request], [0, 1, 2])
            reply = _read_line(conn)
        except OSError:
            return None
        if not reply.startswith("started "):
            return None
        child, received = int(reply.split()[1]), []

        def forward(signum: int, _frame) -> None:
            received.append(signum)
            send_signal(child, signum)

        for sig in FORWARDED:  # kept until this process exits, so that no signal falls between two handlers
            if sig not in ignored:
                signal.signal(sig, forward)
        reply = _read_line(conn)
    if not reply.startswith("exit "):
        print(f"error: kdinterp: the warm process ended before {' '.join(argv[1:])} finished; "
              "run it again (KDINTERP_WARM=0 runs it in its own process)", file=sys.stderr)
        raise SystemExit(1)
    status = int(reply.split()[1])
    if received and status == 0:  # the child had ended when the signal came: as a process still exiting, die by it
        _die_by(received[0])
    return status


def send_signal(child: int, signum: int) -> bool:
    """Send ``signum`` to the process ``child``; whether it was still there."""
    try:
        os.kill(child, signum)
    except ProcessLookupError:
        return False
    return True


def _die_by(signum: int) -> None:
    sys.stdout.flush(), sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def exit_like(status: int) -> None:
    """Exit this process at once as the child did: its exit code (after flushing the standard streams), or death by
    its signal. ``status``: an ``os.waitpid`` wait status."""
    if os.WIFSIGNALED(status):
        _die_by(os.WTERMSIG(status))
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(os.waitstatus_to_exitcode(status))


def _connect(path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        conn.close()
        return None
    return conn


def _read_line(conn: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = conn.recv(64)
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _start_server(directory: Path, key: str, env: dict[str, str]) -> socket.socket | None:
    """Start the server of ``key`` (one per key: a lock file serialises the clients) and connect to it."""
    import fcntl

    path = directory / f"{key}.sock"
    with open(directory / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (conn := _connect(path)) is not None:
            return conn
        with open(directory / f"{key}.log", "ab") as log:
            server = subprocess.Popen(
                [sys.executable, "-P", "-c", f"from kdinterp.__main__ import serve_warm; serve_warm({str(path)!r})"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, process_group=0, close_fds=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and server.poll() is None:
            if (conn := _connect(path)) is not None:
                return conn
            time.sleep(0.05)
        return None
