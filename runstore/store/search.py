"""Searching what runs said (``history --grep``): output lines and event messages.

Every store can search, by reading the events. A store may also keep a search index (``runstore
db search on``), so that a search reads the index instead: on SQLite an FTS5 table with the
trigram tokenizer, kept by triggers on ``events``; on PostgreSQL a pg_trgm GIN index. The index is
per store and off by default because it costs at ingestion: an indexed output line or message is
written at about a fifth of the speed of one that is not (``benchmarks/RESULTS.md``), and the
store grows by about 40% for output-heavy runs. Only events that carry text are indexed: an
``item_processed`` event costs the triggers one test, not an index entry.

Both ways give the same answer: any substring of at least three characters, ASCII letters in any
case.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, text

from runstore.errors import UsageError
from runstore.store.schema import events

MIN_LENGTH = 3  # a trigram index finds nothing shorter
MAX_TRIGRAMS = 24

# The index keeps which events hold each trigram, not where (detail=none: a quarter of the size of
# one with positions), so a search finds the events holding every trigram of its text, and checks
# each of them for the text itself.
_SQLITE_INDEX = [
    "CREATE VIRTUAL TABLE events_search USING fts5(message, line, content='', "
    "tokenize='trigram', detail='none')",
    """CREATE TRIGGER events_search_insert AFTER INSERT ON events
WHEN new.message IS NOT NULL OR new.event_type = 'output'
BEGIN
    INSERT INTO events_search (rowid, message, line) VALUES (new.id, new.message,
        CASE WHEN new.event_type = 'output' THEN json_extract(new.data, '$.line') END);
END""",
    """CREATE TRIGGER events_search_delete AFTER DELETE ON events
WHEN old.message IS NOT NULL OR old.event_type = 'output'
BEGIN
    INSERT INTO events_search (events_search, rowid, message, line) VALUES ('delete', old.id,
        old.message, CASE WHEN old.event_type = 'output' THEN json_extract(old.data, '$.line') END);
END""",
    """INSERT INTO events_search (rowid, message, line)
SELECT id, message, CASE WHEN event_type = 'output' THEN json_extract(data, '$.line') END
FROM events WHERE message IS NOT NULL OR event_type = 'output'""",
]
_SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS events_search_delete",
    "DROP TRIGGER IF EXISTS events_search_insert",
    "DROP TABLE IF EXISTS events_search",
]
# The text searched for an event, on PostgreSQL (the index is on this very expression). An output
# line's text is read from its data unless the JSON holds an escaped NUL, which PostgreSQL refuses
# to turn into text (one such event would fail its whole batch).
_PG_TEXT = (
    "(coalesce(message, '') || ' ' || CASE WHEN event_type = 'output' "
    "AND strpos(data::text, '\\u0000') = 0 THEN coalesce(data->>'line', '') ELSE '' END)"
)
_PG_WHERE = "(message IS NOT NULL OR event_type = 'output')"
_PG_INDEX = f"CREATE INDEX ix_events_search ON events USING gin ({_PG_TEXT} gin_trgm_ops) " \
    f"WHERE {_PG_WHERE}"  # fmt: skip


def has_index(conn: Connection) -> bool:
    """Whether the store keeps a search index."""
    if conn.dialect.name == "sqlite":
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events_search'"
    else:
        query = "SELECT 1 FROM pg_indexes WHERE indexname = 'ix_events_search'"
    return conn.exec_driver_sql(query).first() is not None


def create_index(conn: Connection) -> None:
    """Index every event that carries text, and every one written from now on. On PostgreSQL
    this needs the pg_trgm extension (trusted: a database owner may create it)."""
    if conn.dialect.name == "sqlite":
        for statement in _SQLITE_INDEX:
            conn.exec_driver_sql(statement)
        return
    conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    conn.exec_driver_sql(_PG_INDEX)


def drop_index(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        for statement in _SQLITE_DROP:
            conn.exec_driver_sql(statement)
    else:
        conn.exec_driver_sql("DROP INDEX IF EXISTS ix_events_search")


def matching_runs(text_: str, *, sqlite: bool, indexed: bool) -> Any:
    """A SELECT of the run keys whose output or messages contain ``text_``: through the search
    index when the store keeps one (``indexed``), else by reading the events."""
    wanted = text_.strip()
    if len(wanted) < MIN_LENGTH:
        raise UsageError(f"give at least {MIN_LENGTH} characters to search for", field="grep")
    escaped = wanted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    if not sqlite:
        return select(events.c.run_pk).where(
            text(_PG_WHERE), text(f"{_PG_TEXT} ILIKE :pattern").bindparams(pattern=pattern)
        )
    line = func.json_extract(events.c.data, "$.line")
    said = or_(
        events.c.message.like(pattern, escape="\\"),
        and_(events.c.event_type == "output", line.like(pattern, escape="\\")),
    )
    if not indexed:
        return select(events.c.run_pk).where(said)
    return (
        select(events.c.run_pk)
        .select_from(events)
        .join(text("events_search"), text("events_search.rowid = events.id"))
        .where(text("events_search MATCH :trigrams").bindparams(trigrams=_trigrams(wanted)))
        .where(said)
    )


def _trigrams(wanted: str) -> str:
    """An FTS5 query for the events whose text holds every trigram of ``wanted`` (at most
    MAX_TRIGRAMS of them, spread over it: enough to leave few events to check)."""
    grams = list(dict.fromkeys(wanted[i : i + 3] for i in range(len(wanted) - 2)))
    if len(grams) > MAX_TRIGRAMS:
        step = len(grams) / MAX_TRIGRAMS
        grams = [grams[int(i * step)] for i in range(MAX_TRIGRAMS)]
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)
