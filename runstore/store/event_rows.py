"""A run's events read fast, for the commands that stream them (run_log.json, ``show``,
``logs``, the UI): plain tuples, no per-row type conversion, in seq order or the last N."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Text, cast, select

from runstore.store import engine as engines
from runstore.store.schema import events

_SQLITE_EVENT_ROWS = (
    "SELECT seq, substr(ts, 1, 10) || 'T' || substr(ts, 12) || '+00:00', event_type, level, "
    "message, CAST(data AS TEXT) FROM events"
)


@dataclass(frozen=True)
class EventFilter:
    """Which of a run's events to read: at these levels, of these types, after a seq, output
    lines of one stream; ``tail``: only the last N of those."""

    levels: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    after_seq: int = 0
    stream: str | None = None
    tail: int | None = None


def event_rows(
    conn: Connection, run_pk: int, only: EventFilter, batch_size: int
) -> Iterator[tuple[Any, ...]]:
    """The events of run ``run_pk`` that ``only`` lets through, as tuples (seq, ISO-8601 UTC
    time, type, level, message, data JSON text), read on ``conn``: oldest first, or, with
    ``only.tail``, the last N newest first."""
    if conn.dialect.name == "sqlite":
        return _sqlite_rows(conn, run_pk, only, batch_size)
    return _server_rows(conn, run_pk, only, batch_size)


def _server_rows(
    conn: Connection, run_pk: int, only: EventFilter, batch_size: int
) -> Iterator[tuple[Any, ...]]:
    data = cast(events.c.data, Text)
    query = select(
        events.c.seq, events.c.ts, events.c.event_type, events.c.level, events.c.message, data
    ).where(events.c.run_pk == run_pk, events.c.seq > only.after_seq)
    if only.levels:
        query = query.where(events.c.level.in_(only.levels))
    if only.types:
        query = query.where(events.c.event_type.in_(only.types))
    if only.stream is not None:
        stream = events.c.data["stream"].as_string()
        query = query.where(events.c.event_type == "output", stream == only.stream)
    if only.tail is None:
        query = query.order_by(events.c.seq)
    else:
        query = query.order_by(events.c.seq.desc()).limit(only.tail)
    result = conn.execution_options(yield_per=batch_size).execute(query)
    for seq, moment, etype, level, message, text in result:
        yield seq, moment.isoformat(timespec="microseconds"), etype, level, message, text


def _sqlite_rows(
    conn: Connection, run_pk: int, only: EventFilter, batch_size: int
) -> Iterator[tuple[Any, ...]]:
    # The driver's own cursor on a pooled connection: rows arrive as plain tuples, and SQLite
    # turns its "YYYY-MM-DD HH:MM:SS.ffffff" (UTC) into ISO-8601 by string surgery. One
    # SELECT reads one consistent snapshot.
    where = ["run_pk = ?", "seq > ?"]
    params: list[Any] = [run_pk, only.after_seq]
    if only.levels:
        where.append(f"level IN ({', '.join('?' * len(only.levels))})")
        params += only.levels
    if only.types:
        where.append(f"event_type IN ({', '.join('?' * len(only.types))})")
        params += only.types
    if only.stream is not None:
        where.append("event_type = 'output' AND json_extract(data, '$.stream') = ?")
        params.append(only.stream)
    order = "ORDER BY seq" if only.tail is None else f"ORDER BY seq DESC LIMIT {only.tail:d}"
    sql = f"{_SQLITE_EVENT_ROWS} WHERE {' AND '.join(where)} {order}"
    cursor = engines.driver_connection(conn).cursor()
    try:
        cursor.arraysize = batch_size
        yield from cursor.execute(sql, params)
    finally:
        cursor.close()
