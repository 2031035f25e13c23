"""Searching what runs said (``history --grep``): output lines and event messages, through an
index, not a scan. On SQLite an FTS5 table with the trigram tokenizer (any substring of three
characters or more, whatever the case), kept by triggers on ``events``; on PostgreSQL a pg_trgm
GIN index on the same text (migration 0004 creates both; where pg_trgm cannot be installed the
query still answers, by a scan). Only events that carry text are indexed: an ``item_processed``
event costs the triggers one test, not an index entry."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text

from runstore.errors import UsageError
from runstore.store.schema import events

MIN_LENGTH = 3  # a trigram index finds nothing shorter

# The text indexed for an event (migration 0004 indexes this very expression). An output line's
# text is read from its data unless the JSON holds an escaped NUL, which PostgreSQL refuses to
# turn into text (one such event would fail its whole batch).
_PG_TEXT = (
    "(coalesce(message, '') || ' ' || CASE WHEN event_type = 'output' "
    "AND strpos(data::text, '\\u0000') = 0 THEN coalesce(data->>'line', '') ELSE '' END)"
)


def matching_runs(text_: str, *, sqlite: bool) -> Any:
    """A SELECT of the run keys whose output or messages contain ``text_``."""
    wanted = text_.strip()
    if len(wanted) < MIN_LENGTH:
        raise UsageError(f"give at least {MIN_LENGTH} characters to search for", field="grep")
    if sqlite:
        phrase = '"' + wanted.replace('"', '""') + '"'
        return (
            select(events.c.run_pk)
            .select_from(events)
            .join(text("events_search"), text("events_search.rowid = events.id"))
            .where(text("events_search MATCH :phrase").bindparams(phrase=phrase))
        )
    escaped = wanted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return select(events.c.run_pk).where(
        text("(message IS NOT NULL OR event_type = 'output')"),
        text(f"{_PG_TEXT} ILIKE :pattern").bindparams(pattern=f"%{escaped}%"),
    )
