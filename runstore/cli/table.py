"""Tables that fit the terminal.

Identifiers, statuses, times and numbers are never cut or wrapped; free text (a message, data, an
error summary, a command) is cut with ``…`` to the space left. When even that does not fit,
times take their short form and the least needed columns are left out, in the order each column
says. ``wide`` turns all of that off: everything, whatever the width. A table whose rows cannot
fit at all is shown as records instead, one ``column | value`` line each (as ``psql \\x`` does).

Column widths come from the first rows (a sample); the rest stream through the same layout.
"""

from __future__ import annotations

import operator
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

from runstore.humanize import escape_controls

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


# f(value) without a Python frame per call (operator.call, Python 3.11+), for millions of cells.
call: Callable[[Callable[[Any], str], Any], str] = getattr(
    operator, "call", lambda function, value: function(value)
)

# A row: a mapping of column keys to values, or a tuple of the values in the columns' order
# (the fast form, for millions of rows).
Row = Mapping[str, Any] | tuple[Any, ...]


def getter(
    columns: Sequence[Column], of: Sequence[Column] | None = None
) -> Callable[[Row], Sequence[Any]]:
    """A row's values for ``columns``, in order, fetched in C: from a mapping by key (None when
    missing), from a tuple by position among ``of`` (the columns the tuple follows; by default
    ``columns`` themselves)."""
    keys = [c.key for c in columns]
    full = list(of) if of is not None else list(columns)
    positions = [full.index(c) for c in columns]
    by_key = operator.itemgetter(*keys) if keys else None
    by_position = operator.itemgetter(*positions) if positions else None
    one = len(keys) == 1

    def values(row: Row) -> Sequence[Any]:
        if not keys:
            return ()
        if type(row) is tuple:
            if positions == list(range(len(full))):
                return row
            picked = by_position(row)  # type: ignore[misc]
        else:
            try:
                picked = by_key(row)  # type: ignore[misc]
            except KeyError:
                return [row.get(key) for key in keys]  # type: ignore[union-attr]
        return (picked,) if one else picked

    return values


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
        return _TimeCells(kind == "time_ms", short).cell
    if kind == "duration":
        from runstore.humanize import humane_duration

        def duration(value: Any) -> str:
            return humane_duration(value) if isinstance(value, (int, float)) else plain_cell(value)

        return duration
    if kind == "count":
        return lambda value: f"{value:,}" if type(value) is int else plain_cell(value)
    return plain_cell


def plain_cell(value: Any) -> str:
    kind = type(value)
    if kind is str:  # the common case first: most cells are text that needs nothing done
        return value if value.isprintable() else _escaped(value)
    if value is None:
        return ""
    if kind is int:
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<blob {len(value):,} bytes>"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        import json

        return plain_cell(json.dumps(value, ensure_ascii=False))
    if isinstance(value, str):
        return plain_cell(str(value))
    return str(value)


def _escaped(text: str) -> str:
    """Text on one line, its control characters (newlines and tabs too) written out."""
    return escape_controls(text).replace("\n", "\\n").replace("\t", "\\t")


_FRACTION = re.compile(r"\.\d+")


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

        self.cell = self._fast_cell()

    def _fast_cell(self) -> Callable[[Any], str]:
        """The cell function: a closure (cheaper to call than a method, millions of times)
        with the store's own form, 2026-12-02T14:03:07.250123+00:00, on its fast path."""
        seen, slowly = self.seen, self._slowly
        if self.millis:

            def cell(value: Any) -> str:
                if type(value) is str and len(value) == 32 and value.endswith("+00:00"):
                    known = seen.get(value[:19])
                    if known is not None:
                        return f"{known}.{value[20:23]}"
                return slowly(value)

        else:

            def cell(value: Any) -> str:
                if type(value) is str and len(value) == 32 and value.endswith("+00:00"):
                    known = seen.get(value[:19])
                    if known is not None:
                        return known
                return slowly(value)

        return cell

    def _slowly(self, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            text = value.astimezone().strftime(self.pattern)
            return f"{text}.{value.microsecond // 1000:03d}" if self.millis else text
        if not isinstance(value, str) or len(value) < 19:
            return plain_cell(value)
        found = _FRACTION.match(value, 19)
        fraction = found.group() if found else ""
        offset = value[19 + len(fraction) :]
        second = value[:19] + offset  # the whole second, and its offset
        utc = offset == "+00:00"  # cached under the second alone, for the fast path
        known = self.seen.get(value[:19] if utc else second)
        if known is None:
            try:
                moment = datetime.fromisoformat(second)
            except ValueError:
                return plain_cell(value)
            if len(self.seen) >= self.CACHE:
                self.seen.clear()
            known = moment.astimezone().strftime(self.pattern)
            self.seen[value[:19] if utc else second] = known
        text = known
        if self.millis:
            return f"{text}.{(fraction[1:] + '000')[:3]}" if fraction else f"{text}.000"
        return text


@dataclass
class Layout:
    columns: list[Column]
    widths: list[int]
    short_times: bool
    of: Sequence[Column] | None = None  # the columns tuple rows follow

    def __post_init__(self) -> None:
        self.formatters = [formatter(c.kind, short=self.short_times) for c in self.columns]
        self._values = getter(self.columns, self.of)

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

    def cells(self, row: Row) -> list[str]:
        return list(map(call, self.formatters, self._values(row)))


def fit(
    columns: Sequence[Column], sample: Sequence[Row], width: int, *, wide: bool = False
) -> Layout:
    """The columns, their widths and time form that make ``sample``'s rows fit ``width``: all
    of it if it fits; else times in their short form, then free text cut, then the least needed
    columns left out, one by one."""
    kept = list(columns)
    widths = _natural(kept, sample, columns, short=False)
    if wide or _total(widths) <= width:
        return Layout(kept, widths, False, columns)
    while True:
        widths = _natural(kept, sample, columns, short=True)
        if _total(widths) <= width:
            return Layout(kept, widths, True, columns)
        squeezed = _squeeze(kept, widths, width)
        if squeezed is not None:
            return Layout(kept, squeezed, True, columns)
        droppable = [c for c in kept if c.drop]
        if not droppable:
            return Layout(kept, widths, True, columns)  # as narrow as it gets: it overflows
        kept.remove(max(droppable, key=lambda c: c.drop))


def _natural(
    columns: Sequence[Column], sample: Sequence[Row], of: Sequence[Column], *, short: bool
) -> list[int]:
    widths = [len(c.header) for c in columns]
    shown = [formatter(c.kind, short=short) for c in columns]
    values = getter(columns, of)
    for row in sample:
        widths = [max(w, len(f(v))) for w, f, v in zip(widths, shown, values(row))]
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
    rows: Iterable[Row],
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


def too_wide(columns: Sequence[Column], sample: Sequence[Row], width: int) -> bool:
    """Whether the sample's rows, whole, are wider than ``width``."""
    return _total(_natural(columns, sample, columns, short=False)) > width


def render_records(
    rows: Iterable[Row], columns: Sequence[Column], *, width: int, wide: bool = False
) -> Iterator[str]:
    """Each row as a record: a ``-[ RECORD n ]-`` line, then ``column | value`` lines, values
    cut to the width (unless ``wide``)."""
    name_width = max((len(c.header) for c in columns), default=0)
    room = max(MIN_TEXT, width - name_width - 3)
    shown = [formatter(c.kind) for c in columns]
    values = getter(columns)
    for n, row in enumerate(rows, 1):
        title = f"-[ RECORD {n} ]"
        yield title + "-" * max(0, min(width, name_width + 3 + 20) - len(title))
        for column, show, value in zip(columns, shown, values(row)):
            text = show(value)
            if not wide and len(text) > room:
                text = text[: room - 1] + ELLIPSIS
            yield f"{column.header.ljust(name_width)} | {text}".rstrip()
