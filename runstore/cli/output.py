"""Output shared by every query command: a table that fits the terminal (through a pager when it
is long), aligned text when piped, and ``--json`` / ``--jsonl`` / ``--csv`` for other tools.

Machine formats carry raw values (``duration_ms``, ISO-8601 UTC times, ``exit_code``); the
table and the text show humane durations, local times and thousands separators (``table``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shlex
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from itertools import islice
from typing import Annotated, Any, TextIO

import typer

from runstore.cli.table import (
    RIGHT_KINDS,
    SAMPLE_ROWS,
    Column,
    Row,
    call,
    cell,
    formatter,
    getter,
    plain_cell,
    render_records,
    render_table,
    terminal_width,
    too_wide,
)

__all__ = ["Column", "Format", "choose_format", "emit", "emit_record", "paged"]

JsonOption = Annotated[bool, typer.Option("--json", help="Output a JSON array.")]
JsonlOption = Annotated[bool, typer.Option("--jsonl", help="Output one JSON object per line.")]
CsvOption = Annotated[bool, typer.Option("--csv", help="Output CSV with a header row.")]
JsonObjectOption = Annotated[bool, typer.Option("--json", help="Output one JSON object.")]
WideOption = Annotated[
    bool,
    typer.Option(
        "--wide", "--no-trunc", help="At a terminal, show every column and all of its text."
    ),
]

_WIDTH_SAMPLE = 1000  # rows read before text columns are sized; the rest stream
_WIDTH_SAMPLE_CHARS = 4 << 20  # ...or fewer, when their text is this long
DEFAULT_PAGER = "less -FRX"  # as git: quit if it fits one screen, keep colours, leave it shown


class Format(str, Enum):
    TABLE = "table"
    TEXT = "text"
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"

    @property
    def machine(self) -> bool:
        return self in (Format.JSON, Format.JSONL, Format.CSV)


def choose_format(as_json: bool, as_jsonl: bool, as_csv: bool) -> Format:
    chosen = [f for f, on in ((Format.JSON, as_json), (Format.JSONL, as_jsonl),
                              (Format.CSV, as_csv)) if on]  # fmt: skip
    if len(chosen) > 1:
        raise typer.BadParameter("choose one of --json, --jsonl, --csv")
    if chosen:
        return chosen[0]
    return Format.TABLE if sys.stdout.isatty() else Format.TEXT


@contextlib.contextmanager
def paged(wanted: bool) -> Iterator[TextIO]:
    """Where a command writes: when ``wanted`` and stdout is a terminal, through a pager as
    git's output does (``$PAGER``, else ``less -FRX``, which quits at once when it fits one
    screen); anything piped goes straight to stdout."""
    pager = os.environ.get("PAGER", DEFAULT_PAGER).strip()
    if not wanted or not sys.stdout.isatty() or pager in ("", "cat"):
        yield sys.stdout
        return
    sys.stdout.flush()
    env = {**os.environ, "LESS": os.environ.get("LESS", "FRX")}
    try:
        proc = subprocess.Popen(
            shlex.split(pager), stdin=subprocess.PIPE, text=True, encoding="utf-8", env=env
        )
    except OSError:  # no such pager: the output is shown all the same
        yield sys.stdout
        return
    assert proc.stdin is not None
    try:
        yield proc.stdin  # type: ignore[misc]
    except BrokenPipeError:
        pass  # the reader quit the pager early: not an error
    finally:
        with contextlib.suppress(BrokenPipeError, OSError):
            proc.stdin.close()
        with contextlib.suppress(KeyboardInterrupt):
            proc.wait()


def raw_value(value: Any) -> Any:
    """A value as machine formats carry it: JSON has no NaN or infinity, so those are null."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return float(value) if value != value.to_integral_value() else int(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$base64": True, "encoded": _base64(value)}  # as sqlite-utils writes blobs
    return value


def _base64(value: bytes | bytearray | memoryview) -> str:
    import base64

    return base64.b64encode(value).decode("ascii")


def emit(
    rows: Iterable[Row],
    columns: Sequence[Column],
    fmt: Format,
    *,
    out: TextIO | None = None,
    wide: bool = False,
    records_when_too_wide: bool = False,
    plain: bool = False,
) -> None:
    """Write ``rows`` in ``fmt`` (to stdout, or ``out``). At a terminal the table fits its width
    (``wide``: everything); ``records_when_too_wide`` shows rows too wide to fit as records
    instead (``sql``, whose columns are the user's). ``plain``: the caller vouches that each
    row's values are text or whole numbers, never None (the fast path for millions of rows)."""
    out = out if out is not None else sys.stdout
    if fmt is Format.JSON:
        out.write("[")
        n = 0
        for n, row in enumerate(rows, 1):
            out.write("\n  " if n == 1 else ",\n  ")
            out.write(_json_object(row, columns))
        out.write("\n]\n" if n else "]\n")
    elif fmt is Format.JSONL:
        for row in rows:
            out.write(_json_object(row, columns))
            out.write("\n")
    elif fmt is Format.CSV:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([c.key for c in columns])
        values = getter(columns)
        for row in rows:
            writer.writerow([_csv_value(v) for v in values(row)])
    elif fmt is Format.TABLE:
        width = terminal_width()
        lines: Iterable[str]
        if records_when_too_wide and not wide:
            it = iter(rows)
            sample = list(islice(it, SAMPLE_ROWS))
            rows_again = _chain(sample, it)
            if too_wide(columns, sample, width):
                lines = render_records(rows_again, columns, width=width)
            else:
                lines = render_table(rows_again, columns, width=width, colour=True)
        else:
            lines = render_table(rows, columns, width=width, wide=wide, colour=True)
        _write_lines(out, lines)
    else:
        _text(rows, columns, out, plain)
    out.flush()


def _json_object(row: Row, columns: Sequence[Column]) -> str:
    values = zip(columns, getter(columns)(row))
    return json.dumps({c.key: raw_value(v) for c, v in values}, default=str)


def _chain(first: list[Row], rest: Iterator[Row]) -> Iterator[Row]:
    yield from first
    yield from rest


def _write_lines(out: TextIO, lines: Iterable[str]) -> None:
    for line in lines:
        out.write(line)
        out.write("\n")


def _csv_value(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _base64(value)
    value = raw_value(value)
    return json.dumps(value) if isinstance(value, (dict, list)) else value


_PLAIN_TYPES = frozenset((str, int, type(None)))


def _text(rows: Iterable[Row], columns: Sequence[Column], out: TextIO, plain: bool) -> None:
    """Aligned plain text for a pipe: every column, nothing cut, widths from the first rows.
    ``plain``: see ``emit``."""
    iterator: Iterator[Row] = iter(rows)
    shown = [formatter(c.kind) for c in columns]
    values = getter(columns)

    def cells(row: Row) -> list[str]:
        return list(map(call, shown, values(row)))

    sample: list[list[str]] = []
    held = 0
    for row in iterator:
        sample.append(cells(row))
        held += sum(map(len, sample[-1]))
        if len(sample) == _WIDTH_SAMPLE or held > _WIDTH_SAMPLE_CHARS:
            break
    widths = [len(c.header) for c in columns]
    for shown_row in sample:
        widths = [max(w, len(v)) for w, v in zip(widths, shown_row)]
    # One format for the whole line: it pads (never cuts) each cell to its column's width.
    layout = "  ".join(
        f"{{:{'>' if c.kind in RIGHT_KINDS else '<'}{w}}}" for c, w in zip(columns, widths)
    )

    def line(texts: Sequence[str]) -> str:
        return layout.format(*texts).rstrip() + "\n"

    out.write(line([c.header for c in columns]))
    for shown_row in sample:
        out.write(line(shown_row))
    # The rest stream. A row whose values are all plain text, whole numbers or nothing (most
    # of them) skips the formatters of its plain columns, and is checked for control
    # characters once, as a line; any other row goes cell by cell.
    special = [(i, f) for i, f in enumerate(shown) if f is not plain_cell]
    write = out.write
    for row in iterator:
        fast = list(row) if type(row) is tuple else list(values(row))
        for i, f in special:
            fast[i] = f(fast[i])
        if plain or _PLAIN_TYPES.issuperset(map(type, fast)):
            if not plain and None in fast:
                fast = ["" if v is None else v for v in fast]
            text = layout.format(*fast)
            if text.isprintable():
                write(text.rstrip() + "\n")
                continue
        write(line(cells(row)))


def emit_record(
    record: dict[str, Any],
    fmt: Format,
    kinds: dict[str, str] | None = None,
    *,
    out: TextIO | None = None,
    wide: bool = False,
) -> None:
    """One object: JSON formats print it whole; the table and text show ``key  value`` lines,
    values cut to a terminal's width (unless ``wide``)."""
    out = out if out is not None else sys.stdout
    kinds = kinds or {}
    if fmt in (Format.JSON, Format.JSONL):
        out.write(json.dumps({k: raw_value(v) for k, v in record.items()}, default=str))
        out.write("\n")
        return
    if fmt is Format.CSV:
        emit([record], [Column(k, k) for k in record], fmt, out=out)
        return
    width = max((len(k) for k in record), default=0)
    room = terminal_width() - width - 2 if fmt is Format.TABLE and not wide else None
    for key, value in record.items():
        text = cell(value, kinds.get(key, "text"))
        if room is not None and len(text) > room:
            text = text[: max(1, room - 1)] + "…"
        out.write(f"{key.ljust(width)}  {text}\n")


def print_json(record: dict[str, Any]) -> None:
    """One report (a prune, a check) as an indented JSON object, values as machine formats
    carry them."""
    print(json.dumps(_jsonable(record), default=str, indent=2))


def print_list(records: list[dict[str, Any]]) -> None:
    """A list of reports as an indented JSON array."""
    print(json.dumps(_jsonable(records), default=str, indent=2))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return raw_value(value)


class ProgressBar:
    """A progress bar on stderr: ``bar(done[, total])`` moves it, and it goes once ``done``
    reaches the total, or at ``stop`` (whatever ended the work: a bar must never be redrawn
    over what is printed after it)."""

    def __init__(self, what: str, total: int | None) -> None:
        from rich.console import Console
        from rich.progress import Progress

        self.total = total
        self._bar = Progress(console=Console(stderr=True), transient=True)
        self._task = self._bar.add_task(what, total=total)
        self._bar.start()

    def __call__(self, done: int, of: int | None = None) -> None:
        size = of if of is not None else self.total
        self._bar.update(self._task, completed=done, total=size)
        if size is not None and done >= size:
            self.stop()

    def stop(self) -> None:
        self._bar.stop()


def progress_bar(what: str, total: int | None = None) -> ProgressBar | None:
    """A progress bar, only when a person is watching stderr."""
    return ProgressBar(what, total) if sys.stderr.isatty() else None
