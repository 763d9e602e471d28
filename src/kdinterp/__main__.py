"""The ``kdinterp`` command (console script and ``python -m kdinterp``): the CLI of :mod:`kdinterp.cli`.

Under ``dvc repro`` the command runs in a child forked from the warm process (:mod:`kdinterp.workflow.warm`);
elsewhere, or when that cannot start, in this process. Either way it ends as :func:`run_cli` ends it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    """Run the command of ``sys.argv`` in a warm child when :func:`kdinterp.workflow.warm.eligible`, else here."""
    from kdinterp.workflow import warm

    if warm.eligible(os.environ, sys.argv):
        status = warm.run_warm(sys.argv, Path.cwd(), dict(os.environ))
        if status is not None:
            warm.exit_like(status)
    run_cli()


def serve_warm(path: str) -> None:
    """The warm process on the Unix socket ``path`` (:func:`kdinterp.workflow.warm_server.serve`); in each child it
    forks, the command it was sent, through :func:`run_cli`."""
    from kdinterp.workflow.warm_server import serve

    if serve(path):
        run_cli()


def run_cli() -> None:
    """Run the CLI of :mod:`kdinterp.cli` on ``sys.argv``, then exit without the interpreter's teardown.

    The teardown frees every module's objects one by one: 0.85 s of a 3.9 s evaluate stage in a fresh process,
    1.35 s in a forked child (its pages are copied as they are freed). What an exit must do is done first, as the
    interpreter does it: wait for non-daemon threads, run the ``atexit`` handlers, flush the standard streams.
    An exception other than ``SystemExit`` (a bug) takes the normal path and keeps its traceback.
    """
    import atexit
    import threading

    from kdinterp.cli import app

    try:
        app(prog_name="kdinterp")
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
        if not isinstance(exit_.code, int | None):
            print(exit_.code, file=sys.stderr)
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120
    os._exit(code)


if __name__ == "__main__":
    main()
