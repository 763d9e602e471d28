"""The error types of user errors: bad input, bad params, missing or malformed files, non-finite values.

Every error the library raises for something the user can fix derives from :class:`KdinterpError`.
The ``kdinterp`` command catches this one base (:mod:`kdinterp.cli`) and prints its message as one
line, ``error: <what is wrong, which file (and row or key), the fix>``, with exit status 1; any
other exception is an internal bug and keeps its traceback. ``kdinterp --debug`` re-raises user
errors too. This module imports nothing heavy, so that the CLI can catch the base before any stage
library (torch, Great Expectations) is loaded.
"""

from __future__ import annotations

import errno
import os

__all__ = ["KdinterpError", "NonFiniteError", "OutputError", "UnknownLayerError", "UnknownModelError",
           "environment_fault"]


class KdinterpError(Exception):
    """A user error: the message names the file (and row or key) and the fix, on one line."""


class NonFiniteError(KdinterpError, ValueError):
    """A NaN or infinite value where the stage needs finite numbers (weights, logits, activations, losses)."""


class UnknownModelError(KdinterpError, KeyError):
    """A model name (and seed) that params.yaml does not define; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError's str() quotes the message
        return str(self.args[0]) if self.args else ""


class UnknownLayerError(KdinterpError, ValueError):
    """A layer name (``dissection.layer``, a feature method's layer) that the model does not have."""


class OutputError(KdinterpError):
    """An output path that cannot be written: a file where a folder belongs, a folder that is not empty, no
    permission, a read-only or full disk. The message names the path and the fix."""


_ELSEWHERE = "choose another path (outputs: --out or --outputs)"

#: What an errno of the environment means for a path, and its fix.
_FAULTS: dict[int, str] = {
    errno.ENOSPC: f"no space left on the device; free space on that disk, or {_ELSEWHERE} on another disk",
    errno.EDQUOT: f"disk quota exceeded; free space within the quota, or {_ELSEWHERE} on another disk",
    errno.EACCES: f"permission denied; give this user access to it (chmod, chown), or {_ELSEWHERE}",
    errno.EPERM: f"operation not permitted; give this user access to it (chmod, chown), or {_ELSEWHERE}",
    errno.EROFS: f"read-only file system; {_ELSEWHERE} on a writable disk",
    errno.ENOTDIR: f"a part of the path is a file, not a folder; move that file away, or {_ELSEWHERE}",
    errno.EISDIR: f"a folder where a file belongs; move the folder away, or {_ELSEWHERE}",
    errno.ENAMETOOLONG: f"the name is too long for the file system; {_ELSEWHERE}",
}


def environment_fault(err: OSError, path: str | os.PathLike[str] | None = None) -> OutputError | None:
    """The user error for an ``OSError`` the machine caused (full disk, no permission, a file where a folder
    belongs), or ``None`` for any other ``OSError`` (a bug: it keeps its traceback).

    Args:
        err: the error raised by a write, ``mkdir`` or rename.
        path: the output being written, named when ``err`` carries no file name (``write()`` on a full disk).

    Returns:
        An :class:`OutputError` whose one-line message names the path, the cause and the fix.
    """
    what = _FAULTS.get(err.errno) if err.errno is not None else None
    if what is None:
        return None
    where = err.filename if err.filename is not None else path
    return OutputError(f"{where}: {what}" if where is not None else f"{err.strerror}: {what}")
