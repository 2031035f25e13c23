"""Tables that fit the terminal.

Identifiers, statuses, times and numbers are never cut or wrapped; free text (a message, data, an
error summary, a command) is cut with ``…`` to the space left. When even that does not fit,
times take their short form and the least needed columns are left out, in the order each column
says. ``wide`` turns all of that off: everything, whatever the width. A table whose rows cannot
fit at all is shown as records instead, one ``column | value`` line each (as ``psql \\x`` does).

Column widths come from the first rows (a sample); the rest stream through the same layout.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

SAMPLE_ROWS = 200
MIN_TEXT = 12  # free text is not cut narrower than this
GAP = "  "
ELLIPSIS = "…"
# Kinds of column: free text may be cut; the rest never is.
FIXED_KINDS = ("id", "status", "time", "time_ms", "duration", "number", "count")
RIGHT_KINDS = ("duration", "number", "count")
# Statuses and levels a terminal shows in colour.
STATUS_COLOURS = {"failed": "31", "abandoned": "31", "error": "31", "cancelled": "33",
                  "warning": "33", "running": "36"}  # fmt: skip


@dataclass(frozen=True)
class Column:
    """One column: the row's ``key``, its ``header``, its ``kind`` (see FIXED_KINDS; ``text``
    for free text) and ``drop``: 0 to always show it, else the higher, the sooner it is left out
    of a narrow table."""

    key: str
    header: str
    kind: str = "text"
    drop: int = 0


def terminal_width() -> int:
    return shutil.get_terminal_size((100, 24)).columns


def cell(value: Any, kind: str, *, short: bool = False) -> str:
    """A value as a person reads it in a table: local times, humane durations, thousands
    separators in counts, stored text with its control characters escaped, on one line."""
    return formatter(kind, short=short)(value)


def formatter(kind: str, *, short: bool = False) -> Callable[[Any], str]:
    """The function that turns a value of a ``kind`` of column into its cell: chosen once per
    column, as a table of millions of rows calls it for every value."""
    if kind in ("time", "time_ms"):
        return _TimeCells(kind == "time_ms", short)
    if kind == "duration":
        from runstore.humanize import humane_duration

        def duration(value: Any) -> str:
            return humane_duration(value) if isinstance(value, (int, float)) else _plain(value)

        return duration
    if kind == "count":
        return lambda value: f"{value:,}" if type(value) is int else _plain(value)
    return _plain


def _plain(value: Any) -> str:
    from runstore.humanize import escape_controls

    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        return f"<blob {len(value):,} bytes>"
    elif isinstance(value, datetime):
        return value.isoformat()
    elif isinstance(value, (dict, list)):
        import json

        text = json.dumps(value, ensure_ascii=False)
    else:
        return str(value)
    if text.isprintable():
        return text
    return escape_controls(text).replace("\n", "\\n").replace("\t", "\\t")


class _TimeCells:
    """Times in local time: ``2026-12-02 14:03:07`` (``short``: ``12-02 14:03``); with
    milliseconds, ``2026-12-02 14:03:07.250`` (``short``: ``14:03:07.250``). Stored times come
    as datetimes or as ISO-8601 text; the text of the last few thousand seconds is cached, as a
    run's events share their seconds."""

    CACHE = 4096

    def __init__(self, millis: bool, short: bool) -> None:
        self.millis = millis
        if millis:
            self.pattern = "%H:%M:%S" if short else "%Y-%m-%d %H:%M:%S"
        else:
            self.pattern = "%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S"
        self.seen: dict[str, str] = {}

    def __call__(self, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            text = value.astimezone().strftime(self.pattern)
            return f"{text}.{value.microsecond // 1000:03d}" if self.millis else text
        if not isinstance(value, str) or len(value) < 19:
            return _plain(value)
        fraction = value[19:26] if value[19:20] == "." else ""
        second = value[:19] + value[19 + len(fraction) :]  # the whole second and its offset
        known = self.seen.get(second)
        if known is None:
            try:
                moment = datetime.fromisoformat(second)
            except ValueError:
                return _plain(value)
            if len(self.seen) >= self.CACHE:
                self.seen.clear()
            known = self.seen[second] = moment.astimezone().strftime(self.pattern)
        text = known
        if self.millis:
            return f"{text}.{(fraction[1:] + '000')[:3]}" if fraction else f"{text}.000"
        return text


@dataclass
class Layout:
    columns: list[Column]
    widths: list[int]
    short_times: bool

    def __post_init__(self) -> None:
        self.formatters = [formatter(c.kind, short=self.short_times) for c in self.columns]

    def line(self, cells: Sequence[str], colour: bool = False) -> str:
        parts = []
        for column, text, width in zip(self.columns, cells, self.widths):
            if column.kind not in FIXED_KINDS and len(text) > width:
                text = text[: max(0, width - 1)] + ELLIPSIS
            padded = text.rjust(width) if column.kind in RIGHT_KINDS else text.ljust(width)
            if colour and column.kind == "status" and text:
                code = STATUS_COLOURS.get(text.split()[0])
                padded = f"\x1b[{code}m{padded}\x1b[0m" if code else padded
            parts.append(padded)
        return GAP.join(parts).rstrip()

    def cells(self, row: dict[str, Any]) -> list[str]:
        return [f(row.get(c.key)) for c, f in zip(self.columns, self.formatters)]


def fit(
    columns: Sequence[Column], sample: Sequence[dict[str, Any]], width: int, *, wide: bool = False
) -> Layout:
    """The columns, their widths and time form that make ``sample``'s rows fit ``width``: all
    of it if it fits; else times in their short form, then free text cut, then the least needed
    columns left out, one by one."""
    kept = list(columns)
    widths = _natural(kept, sample, short=False)
    if wide or _total(widths) <= width:
        return Layout(kept, widths, short_times=False)
    while True:
        widths = _natural(kept, sample, short=True)
        if _total(widths) <= width:
            return Layout(kept, widths, short_times=True)
        squeezed = _squeeze(kept, widths, width)
        if squeezed is not None:
            return Layout(kept, squeezed, short_times=True)
        droppable = [c for c in kept if c.drop]
        if not droppable:
            return Layout(kept, widths, short_times=True)  # as narrow as it gets: it overflows
        kept.remove(max(droppable, key=lambda c: c.drop))


def _natural(
    columns: Sequence[Column], sample: Sequence[dict[str, Any]], *, short: bool
) -> list[int]:
    widths = [len(c.header) for c in columns]
    for i, c in enumerate(columns):
        shown = formatter(c.kind, short=short)
        widths[i] = max([widths[i], *(len(shown(row.get(c.key))) for row in sample)])
    return widths


def _total(widths: Sequence[int]) -> int:
    return sum(widths) + len(GAP) * max(0, len(widths) - 1)


def _squeeze(columns: Sequence[Column], widths: list[int], width: int) -> list[int] | None:
    """Cut the free-text columns to what is left of ``width``, the leftmost served first (a
    message before its data); None when they cannot each have ``MIN_TEXT``."""
    free = [i for i, c in enumerate(columns) if c.kind not in FIXED_KINDS]
    if not free:
        return None
    fixed = _total([w for i, w in enumerate(widths) if i not in free]) + len(GAP) * len(free)
    room = width - fixed
    if room < MIN_TEXT * len(free):
        return None
    squeezed = list(widths)
    for n, i in enumerate(free):
        later = sum(min(MIN_TEXT, widths[j]) for j in free[n + 1 :])  # kept for those after
        squeezed[i] = max(min(MIN_TEXT, widths[i]), min(widths[i], room - later))
        room -= squeezed[i]
    return squeezed


def render_table(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[Column],
    *,
    width: int,
    wide: bool = False,
    colour: bool = False,
) -> Iterator[str]:
    """The lines of a table of ``rows`` (a header first), laid out to fit ``width``."""
    it = iter(rows)
    sample = list(islice(it, SAMPLE_ROWS))
    layout = fit(columns, sample, width, wide=wide)
    header = layout.line([c.header for c in layout.columns])
    yield f"\x1b[1m{header}\x1b[0m" if colour else header
    for row in sample:
        yield layout.line(layout.cells(row), colour)
    for row in it:
        yield layout.line(layout.cells(row), colour)


def too_wide(columns: Sequence[Column], sample: Sequence[dict[str, Any]], width: int) -> bool:
    """Whether the sample's rows, whole, are wider than ``width``."""
    return _total(_natural(columns, sample, short=False)) > width


def render_records(
    rows: Iterable[dict[str, Any]], columns: Sequence[Column], *, width: int, wide: bool = False
) -> Iterator[str]:
    """Each row as a record: a ``-[ RECORD n ]-`` line, then ``column | value`` lines, values
    cut to the width (unless ``wide``)."""
    name_width = max((len(c.header) for c in columns), default=0)
    room = max(MIN_TEXT, width - name_width - 3)
    shown = [formatter(c.kind) for c in columns]
    for n, row in enumerate(rows, 1):
        title = f"-[ RECORD {n} ]"
        yield title + "-" * max(0, min(width, name_width + 3 + 20) - len(title))
        for column, show in zip(columns, shown):
            text = show(row.get(column.key))
            if not wide and len(text) > room:
                text = text[: room - 1] + ELLIPSIS
            yield f"{column.header.ljust(name_width)} | {text}".rstrip()
