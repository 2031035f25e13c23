"""Files appear whole or not at all: write a temporary file beside the target, then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from runstore.errors import RunstoreError


class OutputError(RunstoreError):
    """An output file cannot be written where it was asked for."""


@contextmanager
def atomic_text_file(path: str | os.PathLike[str], *, private: bool = False) -> Iterator[TextIO]:
    """Yield a text file that replaces ``path`` only when the block ends without an exception.

    ``private`` files are readable by their owner only; others get the usual umask mode.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a directory")
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or "."
        )
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror}") from exc
    tmp = Path(tmp_name)
    try:
        if not private:
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n", buffering=1 << 16) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask. Linux shows it in /proc; elsewhere it can only be read by setting
    it, which briefly exposes other threads' new files, so that is the fallback only."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def check_writable_dir(path: str | os.PathLike[str]) -> None:
    """Fail early, before any work, when ``path`` could not be written later."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a directory")
    parent = target.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {target}: directory {parent} does not exist")
    try:  # the only sure test (permissions, read-only mounts, quotas): make a file there
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror}") from exc
    os.close(fd)
    os.unlink(probe)
