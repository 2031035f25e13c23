"""Output shared by every query command: a table on a terminal, aligned text when piped, and
``--json`` / ``--jsonl`` / ``--csv`` for other tools.

Machine formats carry raw values (``duration_ms``, ISO-8601 UTC times, ``exit_code``); the
table and the text show humane durations and local times.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Output a JSON array.")]
JsonlOption = Annotated[bool, typer.Option("--jsonl", help="Output one JSON object per line.")]
CsvOption = Annotated[bool, typer.Option("--csv", help="Output CSV with a header row.")]
JsonObjectOption = Annotated[bool, typer.Option("--json", help="Output one JSON object.")]

_WIDTH_SAMPLE = 1000  # rows read before text columns are sized; the rest stream
_WIDTH_SAMPLE_CHARS = 4 << 20  # ...or fewer, when their text is this long


class Format(str, Enum):
    TABLE = "table"
    TEXT = "text"
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"


def choose_format(as_json: bool, as_jsonl: bool, as_csv: bool) -> Format:
    chosen = [f for f, on in ((Format.JSON, as_json), (Format.JSONL, as_jsonl),
                              (Format.CSV, as_csv)) if on]  # fmt: skip
    if len(chosen) > 1:
        raise typer.BadParameter("choose one of --json, --jsonl, --csv")
    if chosen:
        return chosen[0]
    return Format.TABLE if sys.stdout.isatty() else Format.TEXT


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str = "text"  # text | time | duration | number


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


def human_value(value: Any, kind: str) -> str:
    from runstore.humanize import escape_controls, humane_duration, local_time

    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<blob {len(value):,} bytes>"
    if kind == "time" and isinstance(value, datetime):
        return local_time(value)
    if kind == "duration":
        return humane_duration(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return escape_controls(json.dumps(value, ensure_ascii=False))
    return escape_controls(str(value))


def emit(rows: Iterable[dict[str, Any]], columns: Sequence[Column], fmt: Format) -> int:
    """Write ``rows`` in ``fmt`` to stdout; returns how many were written."""
    out = sys.stdout
    count = 0
    if fmt is Format.JSON:
        out.write("[")
        for count, row in enumerate(rows, 1):
            out.write("\n  " if count == 1 else ",\n  ")
            out.write(json.dumps({c.key: raw_value(row.get(c.key)) for c in columns}, default=str))
        out.write("\n]\n" if count else "]\n")
    elif fmt is Format.JSONL:
        for row in rows:
            out.write(json.dumps({c.key: raw_value(row.get(c.key)) for c in columns}, default=str))
            out.write("\n")
            count += 1
    elif fmt is Format.CSV:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([c.key for c in columns])
        for row in rows:
            writer.writerow([_csv_value(row.get(c.key)) for c in columns])
            count += 1
    elif fmt is Format.TABLE:
        count = _table(rows, columns)
    else:
        count = _text(rows, columns)
    out.flush()
    return count


def _csv_value(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _base64(value)
    value = raw_value(value)
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def _cells(row: dict[str, Any], columns: Sequence[Column]) -> list[str]:
    return [human_value(row.get(c.key), c.kind).replace("\n", " ") for c in columns]


def _text(rows: Iterable[dict[str, Any]], columns: Sequence[Column]) -> int:
    iterator: Iterator[dict[str, Any]] = iter(rows)
    sample: list[list[str]] = []
    held = 0
    for row in iterator:
        sample.append(_cells(row, columns))
        held += sum(map(len, sample[-1]))
        if len(sample) == _WIDTH_SAMPLE or held > _WIDTH_SAMPLE_CHARS:
            break
    widths = [len(c.header) for c in columns]
    for cells in sample:
        widths = [max(w, len(v)) for w, v in zip(widths, cells)]
    right = [c.kind in ("duration", "number") for c in columns]

    def line(cells: Sequence[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(cells, widths, right)]
        return "  ".join(parts).rstrip() + "\n"

    sys.stdout.write(line([c.header for c in columns]))
    for cells in sample:
        sys.stdout.write(line(cells))
    count = len(sample)
    for row in iterator:
        sys.stdout.write(line(_cells(row, columns)))
        count += 1
    return count


def _table(rows: Iterable[dict[str, Any]], columns: Sequence[Column]) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for c in columns:
        table.add_column(c.header, justify="right" if c.kind in ("duration", "number") else "left",
                         overflow="fold")  # fmt: skip
    count = 0
    for row in rows:
        count += 1
        cells = _cells(row, columns)
        status = row.get("status")
        style = {"failed": "red", "abandoned": "red", "cancelled": "yellow",
                 "running": "cyan"}.get(status) if isinstance(status, str) else None  # fmt: skip
        table.add_row(*(Text(cell) for cell in cells), style=style)  # stored text is not markup
    Console().print(table)
    return count


def emit_record(record: dict[str, Any], fmt: Format, kinds: dict[str, str] | None = None) -> None:
    """One object: JSON formats print it whole; the table and text show ``key: value`` lines."""
    kinds = kinds or {}
    if fmt in (Format.JSON, Format.JSONL):
        sys.stdout.write(json.dumps({k: raw_value(v) for k, v in record.items()}, default=str))
        sys.stdout.write("\n")
        return
    if fmt is Format.CSV:
        emit([record], [Column(k, k) for k in record], fmt)
        return
    width = max((len(k) for k in record), default=0)
    for key, value in record.items():
        sys.stdout.write(f"{key.ljust(width)}  {human_value(value, kinds.get(key, 'text'))}\n")


def print_json(record: dict[str, Any]) -> None:
    """One report (a prune, a check) as an indented JSON object, values as machine formats
    carry them."""
    print(json.dumps(_jsonable(record), default=str, indent=2))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return raw_value(value)


def progress_bar(what: str, total: int | None = None) -> Callable[..., None] | None:
    """A progress bar on stderr, only when a person is watching: ``advance(done[, total])``,
    which removes the bar once ``done`` reaches the total."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    task = bar.add_task(what, total=total)
    bar.start()

    def advance(done: int, of: int | None = None) -> None:
        size = of if of is not None else total
        bar.update(task, completed=done, total=size)
        if size is not None and done >= size:
            bar.stop()

    return advance
