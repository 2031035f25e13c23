"""The events channel: how a command under ``runstore exec`` records events without a process
start or a store write of its own, in the manner of GitHub Actions' ``$GITHUB_OUTPUT``.

``runstore exec`` gives its command a FIFO named by ``RUNSTORE_EVENTS`` and reads it alongside
the command's output, so an event lands in the run's timeline in the order it was written
among the output lines, with the time it was read::

    echo '{"type": "rows_loaded", "rows": 120}' >> "$RUNSTORE_EVENTS"

One event per line, a JSON object: ``type`` (default ``log``), ``level`` (debug, info, warning,
error; default info) and ``message`` (text) are the event's own fields, and every other key is
its data. A metric is a line of type ``metric`` with its ``name``, ``value`` (a number) and
``step`` (a whole number, optional): ``{"type": "metric", "name": "rows_loaded", "value": 120}``.
A line that is not such an object is recorded as a ``malformed_event`` warning, never
dropped silently. A line up to ``ATOMIC_BYTES`` long is written by one ``write`` and cannot mix
with another writer's.

``runstore event`` inside exec writes to the channel (``send_event``) and loads nothing else:
no Typer, no SQLAlchemy, no store. This module imports only the standard library.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os

from runstore import TYPE_CHECKING, env
from runstore.store.limits import LEVELS, MAX_EVENT_TYPE, metric_problem, storable_text

if TYPE_CHECKING:
    from typing import Any

# What one write to a FIFO delivers whole, whatever other writers do (POSIX PIPE_BUF).
ATOMIC_BYTES = 4096
# A line longer than this is not read as an event (a runaway writer cannot take the memory).
MAX_LINE_BYTES = 1 << 20
# What stands for the rest of a line too long to read (its first 1,000 bytes are kept).
OVERLONG = b"\xe2\x80\xa6 (line too long)"
OWN_FIELDS = ("type", "level", "message")
MALFORMED = "malformed_event"
METRIC = "metric"


class ChannelEvent:
    """An event as a channel line gives it. (A plain class: ``dataclasses`` costs more to
    import than this module is allowed.)"""

    __slots__ = ("data", "event_type", "level", "message")

    def __init__(
        self, event_type: str, level: str, message: str | None, data: dict[str, Any]
    ) -> None:
        self.event_type = event_type
        self.level = level
        self.message = message
        self.data = data


def default_event_type(level: str) -> str:
    """The event type of a log line or ``runstore event``: ``warning``, ``error`` or ``log``."""
    return level if level in ("warning", "error") else "log"


def encode(event_type: str, level: str, message: str | None, data: dict[str, Any]) -> bytes:
    """One channel line (with its newline) for an event; ``data`` must not use OWN_FIELDS."""
    line: dict[str, Any] = {"type": event_type, "level": level}
    if message is not None:
        line["message"] = message
    line.update(data)
    return json.dumps(line, ensure_ascii=False, default=str).encode() + b"\n"


def metric_fields(name: str, value: float, step: int | None = None) -> dict[str, Any]:
    """A metric's fields on the channel (with type ``metric``), a whole number kept whole
    (``120``, not ``120.0``); the caller has checked them."""
    whole = float(value).is_integer() and abs(value) < 2**53
    fields: dict[str, Any] = {"name": name, "value": int(value) if whole else value}
    if step is not None:
        fields["step"] = step
    return fields


def decode(raw: bytes) -> ChannelEvent:
    """The event a channel line (without its newline) records: the one it describes, or a
    ``malformed_event`` warning that says what was wrong and keeps the start of the line."""
    text = raw.decode("utf-8", "replace").rstrip("\r")
    if raw.endswith(OVERLONG):
        return _malformed(text, f"longer than {MAX_LINE_BYTES:,} bytes")
    try:
        fields = json.loads(text)
    except ValueError as exc:
        return _malformed(text, f"not JSON: {exc}")
    if not isinstance(fields, dict):
        return _malformed(text, "not a JSON object")
    event_type = fields.pop("type", "log")
    level = fields.pop("level", "info")
    message = fields.get("message")
    if not isinstance(event_type, str) or not 0 < len(event_type) <= MAX_EVENT_TYPE:
        return _malformed(text, f"type must be text of 1 to {MAX_EVENT_TYPE} characters")
    if level not in LEVELS:
        return _malformed(text, f"level must be one of {', '.join(LEVELS)}")
    if message is not None and not isinstance(message, str):
        message = json.dumps(message)
    if event_type == METRIC:
        name, value = fields.get("name"), fields.get("value")
        problem = metric_problem(name, value, fields.get("step"))
        if problem is not None:
            return _malformed(text, problem)
        message = message if message is not None else f"{name} = {value}"
    return ChannelEvent(
        event_type, level, storable_text(message) if message is not None else None, fields
    )


def _malformed(text: str, problem: str) -> ChannelEvent:
    shown = text if len(text) <= 1100 else text[:1000] + "…"
    message = f"a line on RUNSTORE_EVENTS is not an event: {problem}"
    return ChannelEvent(MALFORMED, "warning", message, {"line": shown, "problem": problem})


def send(line: bytes, path: str | None = None) -> bool:
    """Write one encoded event line to the channel (``RUNSTORE_EVENTS`` by default); False when
    there is no channel to take it whole (none named, no reader left, a line too long to be
    written atomically): the caller records the event some other way."""
    path = path if path is not None else os.environ.get(env.EVENTS)
    if not path or len(line) > ATOMIC_BYTES:
        return False
    try:
        # Non-blocking to open: with no reader left (the run is over) this fails at once
        # instead of waiting for one.
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not _is_fifo(fd):
            return False
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)  # a full FIFO: wait for room
        try:
            return os.write(fd, line) == len(line)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                return False  # the reader left meanwhile
            raise
    finally:
        os.close(fd)


def _is_fifo(fd: int) -> bool:
    import stat

    return stat.S_ISFIFO(os.fstat(fd).st_mode)


class LineSplitter:
    """Complete lines out of chunks read from a channel; a line longer than MAX_LINE_BYTES is
    reported (its start) instead of held."""

    def __init__(self) -> None:
        self._partial = bytearray()
        self._overlong = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        chunk = bytes(data)
        lines: list[bytes] = []
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            piece = chunk[start:end]
            if self._overlong:
                self._overlong = False  # the rest of a line already reported
            else:
                lines.append(bytes(self._partial) + piece)
            self._partial.clear()
            start = end + 1
        if not self._overlong:
            self._partial += chunk[start:]
            if len(self._partial) > MAX_LINE_BYTES:
                lines.append(bytes(self._partial[:1000]) + OVERLONG)
                self._partial.clear()
                self._overlong = True
        return [line for line in lines if line.strip()]

    def rest(self) -> list[bytes]:
        """An unfinished last line, once the channel is done."""
        rest, self._partial = bytes(self._partial), bytearray()
        return [rest] if rest.strip() and not self._overlong else []


class Channel:
    """The reading end, for ``runstore exec``: a FIFO in a directory of its own (readable by
    this user only), opened without blocking. A write end is held open too, so the reader
    never sees end-of-file when a writer closes, and a writer never waits for a reader."""

    def __init__(self) -> None:
        import tempfile

        self.directory = tempfile.mkdtemp(prefix="runstore-events-")
        self.path = os.path.join(self.directory, "events")
        try:
            os.mkfifo(self.path, 0o600)
            self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self._writer = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self.close()
            raise

    def read_all(self, size: int = 1 << 16) -> bytes:
        """What the FIFO holds right now (after the command ended: the last events)."""
        chunks = []
        while True:
            try:
                chunk = os.read(self.fd, size)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Close both ends and remove the FIFO: a late writer finds no channel, and records
        its event another way."""
        import contextlib
        import shutil

        for name in ("fd", "_writer"):
            fd = getattr(self, name, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, None)
        shutil.rmtree(self.directory, ignore_errors=True)
