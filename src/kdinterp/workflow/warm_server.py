"""The warm process's server: pins and imports once, then forks one child per stage command (:mod:`kdinterp.workflow.warm`).

Single-threaded (a selector loop), so that nothing holds a lock when it forks. A child closes the server's sockets,
takes the client's standard streams, directory, environment, ignored signals and argv, and runs the CLI as
:func:`kdinterp.__main__.run_cli` (the caller of :func:`serve`). The server sends the client ``started <pid>``, then ``exit <wait status>``;
it kills a child whose client has died, and exits after ``KDINTERP_WARM_IDLE`` (default
:data:`kdinterp.workflow.warm.IDLE_S`) seconds without a child.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from kdinterp.workflow.warm import FORWARDED, IDLE_S, MAX_REQUEST, send_signal


def serve(path: str) -> bool:
    """Run the server on the Unix socket ``path``: pin, preload, listen, fork one child per request, until idle.

    Returns ``False`` in the server when it has been idle for ``KDINTERP_WARM_IDLE`` seconds, and ``True`` in a
    forked child that has taken its client's streams, directory, environment, signals and argv: the caller then runs
    the command (:func:`kdinterp.__main__.serve_warm`)."""
    from kdinterp.core.runtime import pin_environment

    pin_environment(portable=os.environ.get("KDINTERP_PORTABLE") == "1")
    preload()
    idle_s = float(os.environ.get("KDINTERP_WARM_IDLE", IDLE_S))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    Path(path).unlink(missing_ok=True)  # a killed server's (the starting client holds the lock: none runs)
    listener.bind(path)  # after the imports: a client that connects is served at once
    listener.listen(16)
    Path(f"{path}.pid").write_text(str(os.getpid()))
    server = os.getpid()
    try:
        request = _serve_until_idle(listener, idle_s)
    finally:
        if os.getpid() == server:
            for leftover in (path, f"{path}.pid"):
                Path(leftover).unlink(missing_ok=True)
    if request is None:
        return False
    _become(*request)  # in a forked child
    return True


def preload() -> None:
    """Import what stage commands import: the CLI, torch, torchvision, captum, scipy and every stage module of
    :func:`kdinterp.measures.registry.stage_modules` (call :func:`kdinterp.core.runtime.pin_environment` first)."""
    import importlib

    from kdinterp.measures.registry import stage_modules

    for module in ("kdinterp.cli", "torch", "torchvision", "captum.attr", "scipy.stats",
                   *sorted(set(stage_modules().values()))):
        importlib.import_module(module)


def _serve_until_idle(listener: socket.socket, idle_s: float):
    """Accept clients until idle; in a forked child, return its request ``(argv, cwd, env, ignored, fds)``."""
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    last_seen = time.monotonic()
    while children or time.monotonic() - last_seen < idle_s:
        for selected, _ in selector.select(timeout=0.05):
            if selected.fileobj is listener:
                conn, _ = listener.accept()
                request = _receive(conn)
                if request is None:
                    conn.close()
                    continue
                child = _fork_child(request, conn, listener, selector, children)
                if child is None:  # this is the child
                    return request
            else:  # a client's connection: readable means it ended (the client died)
                pid = next(p for p, c in children.items() if c is selected.fileobj)
                if not selected.fileobj.recv(1):
                    send_signal(pid, signal.SIGKILL)
                    selector.unregister(selected.fileobj)
        _reap(children, selector)
        if children:
            last_seen = time.monotonic()
    return None


def _fork_child(request, conn, listener, selector, children) -> int | None:
    import selectors

    import torch

    fds = request[-1]
    if torch.cuda.is_initialized():  # a forked child cannot use CUDA
        conn.sendall(b"refused\n")
        conn.close()
        _close(fds)
        return 0
    pid = os.fork()
    if pid == 0:
        selector.close()
        listener.close()
        for other in (conn, *children.values()):
            other.close()
        return None
    _close(fds)
    conn.sendall(f"started {pid}\n".encode())
    children[pid] = conn
    selector.register(conn, selectors.EVENT_READ)
    return pid


def _receive(conn: socket.socket):
    try:
        conn.settimeout(10)
        message, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST, 3)
        size = int.from_bytes(message[:8], "big")
        while len(message) - 8 < size:
            chunk = conn.recv(MAX_REQUEST)
            if not chunk:
                raise ConnectionError("short request")
            message += chunk
        request = json.loads(message[8:])
        conn.settimeout(None)
    except (OSError, ValueError):
        return None
    if len(fds) != 3:
        _close(fds)
        return None
    return request["argv"], request["cwd"], request["env"], request["ignored"], fds


def _reap(children: dict[int, socket.socket], selector) -> None:
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            conn = children.pop(pid)
            try:
                selector.unregister(conn)
            except KeyError:
                pass
            try:
                conn.sendall(f"exit {status}\n".encode())
            except OSError:
                pass
            conn.close()


def _close(fds) -> None:
    for fd in fds:
        os.close(fd)


def _become(argv: list[str], cwd: str, env: dict[str, str], ignored: list[int], fds: list[int]) -> None:
    """In the forked child: take the client's streams, directory, environment, ignored signals and argv."""
    import io

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    _close(fds)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = list(argv)
    for signum in FORWARDED:  # as a fresh interpreter: what the client ignored stays ignored
        default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        signal.signal(signum, signal.SIG_IGN if signum in ignored else default)
    for fd, (name, old) in enumerate((("stdin", sys.stdin), ("stdout", sys.stdout), ("stderr", sys.stderr))):
        # as a fresh interpreter makes them: the server's encoding and errors, line-buffered on a terminal
        stream = io.TextIOWrapper(open(fd, "rb" if fd == 0 else "wb", buffering=-1, closefd=False),
                                  encoding=old.encoding, errors=old.errors, write_through=old.write_through,
                                  line_buffering=old.line_buffering or (fd == 1 and os.isatty(1)))
        setattr(sys, name, stream), setattr(sys, f"__{name}__", stream)
