"""Files runstore writes for a user: whole or not at all, and never over the store or the input.

An output option names one of three things, and each is written the way it needs:

- a descriptor: ``-``, ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N``: written to that open
  descriptor, as the shell would, never reopened (reopening would truncate what it points at);
- an existing file that is not a regular file (``/dev/null``, ``/dev/full``, a FIFO): written in
  place, since renaming over it would replace the device node;
- a regular file, or nothing yet: a temporary file beside it is renamed over it at the end (beside
  the symlink's target, for a symlink, so the link stays and its target gets the data), and a
  failed or cancelled write leaves the old file as it was.

Temporary files carry their owner's pid and start time in their names; what a killed process left
behind is removed by the next write into that directory (``sweep_leftovers``).
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from runstore import procinfo
from runstore.errors import InputError, OutputError, UsageError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

STANDARD_STREAM = "-"  # stdout for an output, stdin for an input
_STANDARD = {"/dev/stdout": 1, "/dev/stderr": 2, "/dev/stdin": 0}
# /dev/fd/N and /proc/self/fd/N: one of our own descriptors.
_DESCRIPTOR_PATH = re.compile(r"/(?:dev/fd|proc/(?P<pid>self|thread-self|\d+)/fd)/(?P<fd>\d+)")
# .NAME.runstore-PID-START.RANDOM.KIND: a temporary file and the process that owns it.
_LEFTOVER = re.compile(
    r"\..+\.runstore-(?P<pid>\d+)-(?P<start>\d+)\.[A-Za-z0-9_]+\.(?:tmp|partial)"
)
_BUFFER = 1 << 16


@dataclass(frozen=True)
class Output:
    """Where an output option writes, and how."""

    given: str  # as the user wrote it: what messages show
    fd: int | None = None  # an open descriptor of ours
    device: Path | None = None  # an existing file that is not a regular file: written in place
    file: Path | None = None  # a regular file (or none yet), symlinks resolved: replaced whole


# Standard descriptors that were closed when runstore started. /dev/null holds their numbers,
# so that no file runstore opens (the store itself) becomes its "stdout"; writing there fails.
_closed_standard: set[int] = set()


def hold_closed_standard_descriptors(closed: Sequence[int]) -> None:
    """Open /dev/null on each of ``closed`` (some of 0, 1, 2, closed now). Reading a closed
    stdin fails with an InputError, printing to a closed stdout with an OutputError; what goes
    to a closed stderr goes nowhere, as there is nowhere left to say anything."""
    for fd in sorted(closed):
        held = os.open(os.devnull, os.O_RDWR)
        if held != fd:
            os.dup2(held, fd)
            os.close(held)
        _closed_standard.add(fd)
    if 0 in closed:
        sys.stdin = io.TextIOWrapper(io.BufferedReader(_ClosedStdin()))
    if 1 in closed:
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(_ClosedStdout()), line_buffering=True)
    if 2 in closed:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - for the process's life


def closed_at_start(fd: int | None) -> bool:
    """Whether ``fd`` (0, 1 or 2) was closed when runstore started."""
    return fd in _closed_standard


class _ClosedStdin(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise InputError("cannot read standard input: it was closed when runstore started")


class _ClosedStdout(io.RawIOBase):
    """A closed stdout: the first write fails (the command's one Error: line), later ones,
    such as the flush at exit, go nowhere."""

    failed = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if not self.failed:
            self.failed = True
            raise OutputError(
                "cannot write to standard output: it was closed when runstore started"
            )
        return len(data)


def output_target(path: str | os.PathLike[str]) -> Output:
    """What ``path`` names as an output; OutputError when it can name nothing writable."""
    given = os.fspath(path)
    fd = descriptor(given)
    if closed_at_start(fd):
        raise OutputError(f"cannot write {given}: it was closed when runstore started")
    if fd is not None:
        return Output(given, fd=fd)
    try:
        info = os.stat(given)
    except FileNotFoundError:
        info = None
    except OSError as exc:  # a path under a file, a symlink loop, a directory we may not enter
        raise OutputError(f"cannot write {given}: {exc.strerror}") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise OutputError(f"cannot write {given}: it is a directory")
    if info is not None and not stat.S_ISREG(info.st_mode):
        return Output(given, device=Path(given))
    return Output(given, file=Path(os.path.realpath(given)))


def descriptor(given: str, *, reading: bool = False) -> int | None:
    """The descriptor of ours that ``given`` names (``-``, ``/dev/stdout``, ``/dev/fd/3``, or a
    symlink to one of those), else None. ``-`` is stdout, or stdin when ``reading``."""
    if given == STANDARD_STREAM:
        return 0 if reading else 1
    if given in _STANDARD:
        return _STANDARD[given]
    path = os.path.abspath(given)
    for _ in range(40):  # the kernel's own limit on symlinks followed
        match = _DESCRIPTOR_PATH.fullmatch(path)
        if match is not None and match["pid"] in (None, "self", "thread-self", str(os.getpid())):
            return int(match["fd"])
        try:
            link = os.readlink(path)
        except OSError:
            return None
        path = os.path.normpath(os.path.join(os.path.dirname(path), link))
    return None


def check_output(path: str | os.PathLike[str]) -> Output:
    """Fail early, before any work, when ``path`` could not be written later."""
    target = output_target(path)
    if target.fd is not None:
        try:
            mode = fcntl.fcntl(target.fd, fcntl.F_GETFL) & os.O_ACCMODE
        except OSError:
            raise OutputError(f"cannot write {target.given}: it is not open") from None
        if mode == os.O_RDONLY:
            raise OutputError(f"cannot write {target.given}: it is open for reading only")
        return target
    if target.device is not None:
        if not os.access(target.device, os.W_OK):
            raise OutputError(f"cannot write {target.given}: Permission denied")
        return target
    assert target.file is not None
    parent = target.file.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {target.given}: directory {parent} does not exist")
    try:  # the only sure test (permissions, read-only mounts, quotas): make a file there
        fd, probe = _temporary(target.file)
    except OSError as exc:
        raise OutputError(f"cannot write {target.given}: {exc.strerror}") from exc
    os.close(fd)
    os.unlink(probe)
    return target


@contextmanager
def open_output(path: str | os.PathLike[str], *, private: bool = False) -> Iterator[TextIO]:
    """A text file for the output ``path``: a regular file appears only when the block ends
    without an exception. A failed write raises OutputError naming ``path`` and the reason.

    ``private`` files are readable by their owner only; others get the usual umask mode.
    """
    target = output_target(path)
    if target.file is None:
        with _in_place(target) as out:
            yield out
        return
    final = target.file
    sweep_leftovers(final.parent)
    try:
        fd, tmp_name = _temporary(final)
    except OSError as exc:
        raise OutputError(f"cannot write {target.given}: {exc.strerror}") from exc
    tmp = Path(tmp_name)
    try:
        if not private:
            os.fchmod(fd, 0o666 & ~procinfo.umask())
        out = _text_file(fd, target.given)
        with out:
            yield out
            out.flush()
            _fsync(out, target.given)
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise OutputError(f"cannot write {target.given}: {exc.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def _in_place(target: Output) -> Iterator[TextIO]:
    """Write to a descriptor or device as it is: no temporary file, no rename."""
    if target.fd in (1, 2):
        stream = sys.stdout if target.fd == 1 else sys.stderr
        if stream is not None:  # None: the descriptor was closed when Python started
            if _fileno(stream) != target.fd:
                # Redirected inside this process (a test runner, contextlib.redirect_stdout):
                # the stream is where this process's "stdout" goes.
                yield stream
                stream.flush()
                return
            stream.flush()  # what Python has buffered for the descriptor goes first
    if target.fd is not None:
        try:
            fd = os.dup(target.fd)
        except OSError as exc:
            why = "it is not open" if exc.errno == errno.EBADF else exc.strerror
            raise OutputError(f"cannot write {target.given}: {why}") from None
    else:
        try:  # no O_CREAT, no O_TRUNC: a device or FIFO is written as it is
            fd = os.open(target.given, os.O_WRONLY | os.O_NOCTTY)
        except OSError as exc:
            raise OutputError(f"cannot write {target.given}: {exc.strerror}") from None
    with _text_file(fd, target.given) as out:
        yield out


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None


def _text_file(fd: int, name: str) -> TextIO:
    """A buffered UTF-8 text file on ``fd`` whose write errors are OutputErrors naming ``name``."""
    raw = _RawOutput(fd, "w", closefd=True)
    raw.label = name
    buffered = io.BufferedWriter(raw, _BUFFER)
    return io.TextIOWrapper(buffered, encoding="utf-8", newline="\n")


class _RawOutput(io.FileIO):
    """The bottom of an output file: called once per buffer, so the check costs nothing."""

    label = ""

    def write(self, data: ReadableBuffer, /) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            raise OutputError(f"cannot write {self.label}: {exc.strerror}") from None


def _fsync(out: TextIO, name: str) -> None:
    try:
        os.fsync(out.fileno())
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EROFS):  # nothing to sync on this kind of file
            raise OutputError(f"cannot write {name}: {exc.strerror}") from None


# -- temporary files, and what killed processes left -----------------------------------------


def _temporary(target: Path, kind: str = "tmp") -> tuple[int, str]:
    """A new temporary file beside ``target``, named after it and after this process."""
    prefix = f".{target.name}.runstore-{os.getpid()}-{_own_start()}."
    return tempfile.mkstemp(prefix=prefix, suffix=f".{kind}", dir=target.parent)


def temporary_path(target: Path, kind: str = "partial") -> Path:
    """A new, unused path beside ``target`` for a temporary file this process owns."""
    fd, name = _temporary(target, kind)
    os.close(fd)
    os.unlink(name)
    return Path(name)


def _own_start() -> int:
    return procinfo.process_start(os.getpid()) or 0


def is_regular_file(path: str | os.PathLike[str]) -> bool:
    """Can ``path`` be read twice (a regular file), or only once (a pipe, FIFO, terminal, ``-``)?"""
    given = os.fspath(path)
    if descriptor(given, reading=True) is not None:
        return False
    try:
        return stat.S_ISREG(os.stat(given).st_mode)
    except OSError:
        return True  # missing or unreadable: opening it will say why


def sweep_leftovers(directory: Path) -> list[Path]:
    """Remove this user's temporary files in ``directory`` whose owner is dead; what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    me = os.geteuid()
    for entry in entries:
        match = _LEFTOVER.fullmatch(entry.name)
        if match is None:
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != me:
                continue
        except OSError:
            continue
        pid, start = int(match["pid"]), int(match["start"])
        if procinfo.alive(pid, start or None):
            continue
        for leftover in (entry.path, entry.path + "-journal", entry.path + "-wal"):
            try:
                os.unlink(leftover)
                removed.append(Path(leftover))
            except OSError:
                pass
    return removed


# -- outputs that would destroy what they should not ---------------------------------------------


def identity(path: str | os.PathLike[str], *, reading: bool = False) -> tuple[object, ...]:
    """What ``path`` is, by device and inode where it exists (a hard link, a symlink, ``./`` and
    ``..`` spellings are the same file), else by its resolved name."""
    given = os.fspath(path)
    fd = descriptor(given, reading=reading)
    try:
        info = os.fstat(fd) if fd is not None else os.stat(given)
    except OSError:
        return ("fd", fd) if fd is not None else ("name", os.path.realpath(given))
    if stat.S_ISCHR(info.st_mode):  # a terminal, /dev/null: only the same descriptor clashes
        return ("fd", fd) if fd is not None else ("device", object())
    return ("file", info.st_dev, info.st_ino)


def refuse_clashes(
    outputs: Mapping[str, str | os.PathLike[str] | None],
    *,
    inputs: Mapping[str, str | os.PathLike[str] | None] | None = None,
    store_files: Sequence[tuple[str, Path]] = (),
) -> None:
    """UsageError when an output (option -> path) is the store or one of its files, an input,
    or another output. ``store_files`` pairs a description (``the store itself``) with a path."""
    stores = {identity(file): what for what, file in reversed(store_files)}
    named: dict[tuple[object, ...], str] = {}
    for name, given in (inputs or {}).items():
        if given is not None:
            named.setdefault(identity(given, reading=True), name)
    for option, output in outputs.items():
        if output is None:
            continue
        key = identity(output)
        if key in stores:
            raise UsageError(f"{option} names {stores[key]}: {os.fspath(output)}")
        if key in named:
            raise UsageError(f"{named[key]} and {option} name the same file: {os.fspath(output)}")
        named[key] = option
