"""Atomic file output.

Every stage writes its outputs through these helpers, so a killed stage never leaves a
half-written file behind: the content goes to a temporary file in the same directory, which is
then renamed over the target (``os.replace`` is atomic on POSIX within one filesystem).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "read_json", "sha256_file", "write_bytes", "write_json", "write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success, rename it to ``path``.

    Use it for writers that insist on a file name (``np.save``, ``safetensors``,
    ``matplotlib``). On an exception the temporary file is removed and ``path`` is untouched. A process
    killed mid-write (SIGKILL, or SIGTERM, which runs no ``finally``) leaves its temporary file: the next
    write of ``path`` removes such leftovers first (``.<name>.*.tmp<suffix>``; one writer per path at a
    time, as DVC runs one stage per output).

    Args:
        path: the final file. Its parent directory is created if missing.

    Yields:
        A path in the same directory with the same suffix (some writers dispatch on it).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp{glob.escape(target.suffix)}"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` newlines) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes for DVC hashing)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, naming the file in the error when it is missing or malformed.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not valid JSON.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: file not found (run the stage that writes it, e.g. `dvc repro`)")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{p}: not valid JSON ({err}); delete it and rerun the stage that writes it") from err



def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
