"""A wrapped command's output, kept within bounds whatever the command prints.

``OutputCapture`` counts every line and byte of stdout and stderr, hands over the first
``head_lines`` lines as they complete (to be stored at once), and keeps raw chunks of the most
recent output in a ring bounded by lines and bytes, from which the last ``tail_lines`` lines are
cut when the command ends. Work per chunk is constant outside the head: no per-line Python work
for the gigabytes in the middle. Stored lines are cut to ``line_max_bytes``; memory stays under
``tail_max_bytes`` plus one chunk, whatever the command prints.

``Spool`` keeps output on disk for ``--quiet`` (shown only when the command fails): the first
``head_bytes`` and about the last ``tail_bytes``, each chunk framed with its stream.
"""

from __future__ import annotations

import struct
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from runstore.exec import HEAD_LINES, TAIL_LINES
from runstore.store.limits import storable_text

STDOUT = "stdout"
STDERR = "stderr"
STREAMS = (STDOUT, STDERR)

LINE_MAX_BYTES = 4096
# The ring of recent output holds at most this much (plus one chunk): long lines shorten the tail.
TAIL_MAX_BYTES = 8 << 20


@dataclass(frozen=True)
class Line:
    """One stored line of output (without its line ending)."""

    stream: str
    text: str
    truncated: bool = False
    ts: int = 0  # when it was read, in nanoseconds (time.time_ns): when its newline came


@dataclass
class _Chunk:
    stream: str
    data: bytes | bytearray
    newlines: int
    starts_line: bool  # the stream's previous byte was a newline, or there was none
    hidden: int = 0  # bytes of this line dropped after ``data`` (a capped partial line)
    ts: int = 0  # when it was read


class _LineBuilder:
    """The line being assembled: its first ``limit`` bytes and its full length."""

    __slots__ = ("kept", "length", "limit", "valid")

    def __init__(self, limit: int, valid: bool = True) -> None:
        self.kept = bytearray()
        self.length = 0
        self.limit = limit
        self.valid = valid  # False when the line's start was dropped from the ring

    def add(self, data: bytes | bytearray, start: int = 0, end: int | None = None) -> None:
        end = len(data) if end is None else end
        room = self.limit - len(self.kept)
        if room > 0 and end > start:
            self.kept += memoryview(data)[start : min(end, start + room)]
        self.length += end - start


class OutputCapture:
    """Counts, head lines and a bounded tail of a command's stdout and stderr."""

    def __init__(
        self,
        head_lines: int = HEAD_LINES,
        tail_lines: int = TAIL_LINES,
        *,
        line_max_bytes: int = LINE_MAX_BYTES,
        tail_max_bytes: int = TAIL_MAX_BYTES,
    ) -> None:
        self.head_lines = max(0, head_lines)
        self.tail_lines = max(0, tail_lines)
        self.line_max_bytes = max(1, line_max_bytes)
        self.tail_max_bytes = tail_max_bytes
        self.lines = dict.fromkeys(STREAMS, 0)
        self.bytes = dict.fromkeys(STREAMS, 0)
        self.head_count = 0
        self.stored_bytes = 0  # output bytes (line endings included) that stored lines hold
        self._in_head = self.head_lines > 0
        # Each stream's unfinished line (its first line_max_bytes) lives here, outside the ring,
        # so a line still being written is never lost when the ring moves on.
        self._partial = {s: _LineBuilder(self.line_max_bytes) for s in STREAMS}
        # Recent output of finished lines: every chunk ends with a newline, except an unfinished
        # line's start that the next chunk of its stream completes.
        self._ring: deque[_Chunk] = deque()
        self._ring_newlines = 0
        self._ring_bytes = 0
        self._ends_without_newline = dict.fromkeys(STREAMS, False)
        self._last_read = dict.fromkeys(STREAMS, 0)

    @property
    def in_head(self) -> bool:
        """Whether lines are still handed over as they complete (the first ``head_lines``)."""
        return self._in_head

    # -- feeding ---------------------------------------------------------------------------------

    def feed(
        self, stream: str, data: bytes | bytearray, size: int | None = None, ts: int = 0
    ) -> list[Line]:
        """Account for ``data[:size]`` of ``stream``, read at ``ts`` (nanoseconds); return the
        head lines it completes.

        ``data`` may be a buffer the caller reuses: whatever is kept is copied.
        """
        end = len(data) if size is None else size
        if end == 0:
            return []
        newlines = data.count(b"\n", 0, end)
        self.lines[stream] += newlines
        self.bytes[stream] += end
        self._ends_without_newline[stream] = data[end - 1] != 10  # b"\n"
        self._last_read[stream] = ts
        if self._in_head:
            return self._feed_head(stream, data, end, newlines, ts)
        self._feed_tail(stream, data, 0, end, newlines, ts)
        return []

    def _feed_head(
        self, stream: str, data: bytes | bytearray, end: int, newlines: int, ts: int
    ) -> list[Line]:
        partial = self._partial[stream]
        out: list[Line] = []
        pos = 0
        for _ in range(min(newlines, self.head_lines - self.head_count)):
            line_end = data.index(b"\n", pos, end)
            partial.add(data, pos, line_end)
            out.append(self._store(stream, partial, newline=True, ts=ts))
            partial = self._partial[stream] = _LineBuilder(self.line_max_bytes)
            pos = line_end + 1
        if self.head_count < self.head_lines:
            partial.add(data, pos, end)
        else:
            self._in_head = False  # from here on, output goes to the ring
            self._feed_tail(stream, data, pos, end, newlines - len(out), ts)
        return out

    def _feed_tail(
        self, stream: str, data: bytes | bytearray, start: int, end: int, newlines: int, ts: int
    ) -> None:
        partial = self._partial[stream]
        if newlines == 0:
            partial.add(data, start, end)
            return
        last = data.rindex(b"\n", start, end)
        if newlines > self.tail_lines:
            # All that came before this chunk's last lines leaves the ring at once: keep only
            # those lines (no per-line work, and a copy of a few KiB, not of the chunk).
            start = _nth_newline_from_end(data, self.tail_lines + 1, start, last + 1) + 1
            newlines = self.tail_lines
            self._partial[stream] = partial = _LineBuilder(self.line_max_bytes)
        elif partial.length:
            hidden = partial.length - len(partial.kept)
            self._append(_Chunk(stream, bytes(partial.kept), 0, True, hidden, ts))
        if newlines:
            finished = bytes(memoryview(data)[start : last + 1])
            self._append(_Chunk(stream, finished, newlines, not partial.length, ts=ts))
        partial = self._partial[stream] = _LineBuilder(self.line_max_bytes)
        partial.add(data, last + 1, end)

    def _append(self, chunk: _Chunk) -> None:
        ring = self._ring
        ring.append(chunk)
        self._ring_newlines += chunk.newlines
        self._ring_bytes += len(chunk.data)
        while len(ring) > 1:
            first = ring[0]
            if (
                self._ring_newlines - first.newlines > self.tail_lines
                or self._ring_bytes - len(first.data) >= self.tail_max_bytes
            ):
                ring.popleft()
                self._ring_newlines -= first.newlines
                self._ring_bytes -= len(first.data)
            else:
                break

    def _store(self, stream: str, line: _LineBuilder, *, newline: bool, ts: int) -> Line:
        self.head_count += 1
        self.stored_bytes += len(line.kept) + (1 if newline else 0)
        return Line(stream, _text(line.kept), line.length > len(line.kept), ts)

    # -- the end ---------------------------------------------------------------------------------

    def tail(self) -> list[Line]:
        """The lines after the head, at most ``tail_lines``: call once, when output has ended.

        Unfinished lines (no final newline) end the output, stdout's first. Lines longer than
        ``tail_max_bytes`` in all can leave fewer than ``tail_lines`` lines in the ring.
        """
        lines: list[Line] = []
        if self._in_head:  # a short output: its unfinished lines may still belong to the head
            self._in_head = False
            for stream in STREAMS:
                pending = self._partial[stream]
                if pending.length and self.head_count < self.head_lines:
                    lines.append(
                        self._store(stream, pending, newline=False, ts=self._last_read[stream])
                    )
                    self._partial[stream] = _LineBuilder(self.line_max_bytes)
        if self.tail_lines == 0:
            return lines
        limit = self.line_max_bytes
        builders: dict[str, _LineBuilder | None] = dict.fromkeys(STREAMS)
        found: deque[tuple[str, _LineBuilder, bool, int]] = deque(maxlen=self.tail_lines)
        newlines_after = self._ring_newlines
        for chunk in self._ring:
            newlines_after -= chunk.newlines
            current = builders[chunk.stream]
            if chunk.starts_line or current is None:
                current = _LineBuilder(limit, valid=chunk.starts_line)
            data = chunk.data
            # Only the lines among the last ``tail_lines`` need to be built.
            wanted = min(chunk.newlines, max(0, self.tail_lines - newlines_after))
            pos = 0
            if wanted < chunk.newlines:
                pos = _nth_newline_from_end(data, wanted + 1) + 1
                current = _LineBuilder(limit)
            for _ in range(wanted):
                end = data.index(b"\n", pos)
                current.add(data, pos, end)
                found.append((chunk.stream, current, True, chunk.ts))
                current = _LineBuilder(limit)
                pos = end + 1
            current.add(data, pos)
            current.length += chunk.hidden
            builders[chunk.stream] = current
        for stream in STREAMS:
            pending = self._partial[stream]
            if pending.length:
                found.append((stream, pending, False, self._last_read[stream]))
        for stream, builder, newline, ts in found:
            if builder.valid:
                self.stored_bytes += len(builder.kept) + (1 if newline else 0)
                cut = builder.length > len(builder.kept)
                lines.append(Line(stream, _text(builder.kept), cut, ts))
        return lines

    @property
    def held_bytes(self) -> int:
        """Output bytes this capture holds in memory right now (its bound: tail_max_bytes plus
        one chunk, and each stream's unfinished line up to line_max_bytes)."""
        partial = sum(len(builder.kept) for builder in self._partial.values())
        return self._ring_bytes + partial

    @property
    def held_chunks(self) -> int:
        """Pieces of output held for the tail: work at the end is bounded by these."""
        return len(self._ring)

    def totals(self) -> dict[str, int]:
        """Line and byte counts per stream; a last line without a newline counts as a line."""
        out: dict[str, int] = {}
        for stream in STREAMS:
            out[f"{stream}_lines"] = self.lines[stream] + self._ends_without_newline[stream]
            out[f"{stream}_bytes"] = self.bytes[stream]
        return out


def _nth_newline_from_end(
    data: bytes | bytearray, n: int, start: int = 0, end: int | None = None
) -> int:
    """Where the ``n``-th newline from the end of ``data[start:end]`` is; -1 if it has fewer."""
    pos = len(data) if end is None else end
    for _ in range(n):
        pos = data.rfind(b"\n", start, pos)
        if pos < start:
            return start - 1
    return pos


def _text(raw: bytes | bytearray) -> str:
    text = raw.decode("utf-8", "replace")
    if text.endswith("\r"):
        text = text[:-1]
    return storable_text(text)


# -- --quiet ---------------------------------------------------------------------------------------

_FRAME = struct.Struct(">BI")
SPOOL_HEAD_BYTES = 16 << 20
SPOOL_TAIL_BYTES = 32 << 20


class Spool:
    """Output held on disk until we know whether to show it: bounded, streams kept apart."""

    def __init__(
        self,
        head_bytes: int = SPOOL_HEAD_BYTES,
        tail_bytes: int = SPOOL_TAIL_BYTES,
        directory: str | None = None,
    ) -> None:
        self.head_bytes = head_bytes
        self.half_tail = max(1, tail_bytes // 2)
        self._dir = directory
        self._head: IO[bytes] = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115
        self._head_size = 0
        self._tails: list[IO[bytes]] = []  # at most two: older, newer
        self._tail_size = 0
        self.omitted = 0

    def write(self, fd_index: int, data: bytes | memoryview) -> None:
        header = _FRAME.pack(fd_index, len(data))
        if self._head_size < self.head_bytes:
            self._head.write(header)
            self._head.write(data)
            self._head_size += len(data)
            return
        if not self._tails or self._tail_size >= self.half_tail:
            if len(self._tails) == 2:
                older = self._tails.pop(0)
                self.omitted += _payload_size(older)
                older.close()
            self._tails.append(tempfile.TemporaryFile(dir=self._dir))  # noqa: SIM115
            self._tail_size = 0
        self._tails[-1].write(header)
        self._tails[-1].write(data)
        self._tail_size += len(data)

    def replay(self, write: Callable[[int, bytes], None], note: Callable[[int], None]) -> None:
        """Write everything kept, in order; ``note(n)`` stands for ``n`` bytes left out."""
        _replay(self._head, write)
        if self.omitted:
            note(self.omitted)
        for part in self._tails:
            _replay(part, write)

    def close(self) -> None:
        self._head.close()
        for part in self._tails:
            part.close()


def _payload_size(f: IO[bytes]) -> int:
    total = 0
    f.seek(0)
    while header := f.read(_FRAME.size):
        _, size = _FRAME.unpack(header)
        total += size
        f.seek(size, 1)
    return total


def _replay(f: IO[bytes], write: Callable[[int, bytes], None]) -> None:
    f.flush()
    f.seek(0)
    while header := f.read(_FRAME.size):
        fd_index, size = _FRAME.unpack(header)
        write(fd_index, f.read(size))
