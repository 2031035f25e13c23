"""Searching what runs said (``history --grep``): output lines and event messages, through an
index, not a scan. On SQLite an FTS5 table with the trigram tokenizer (any substring of three
characters or more; ASCII letters in any case), kept by triggers on ``events``; on PostgreSQL a
pg_trgm GIN index on the same text (migration 0004 creates both; where pg_trgm cannot be
installed the query still answers, by a scan). Only events that carry text are indexed: an
``item_processed`` event costs the triggers one test, not an index entry."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, or_, select, text

from runstore.errors import UsageError
from runstore.store.schema import events

MIN_LENGTH = 3  # a trigram index finds nothing shorter
MAX_TRIGRAMS = 24

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
    escaped = wanted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    if sqlite:
        # The index keeps which events hold each trigram, not where (detail=none: a quarter of
        # the size), so it finds the events holding all of the text's trigrams, and each is
        # checked for the text itself.
        line = func.json_extract(events.c.data, "$.line")
        return (
            select(events.c.run_pk)
            .select_from(events)
            .join(text("events_search"), text("events_search.rowid = events.id"))
            .where(text("events_search MATCH :trigrams").bindparams(trigrams=_trigrams(wanted)))
            .where(
                or_(
                    events.c.message.like(pattern, escape="\\"),
                    and_(events.c.event_type == "output", line.like(pattern, escape="\\")),
                )
            )
        )
    return select(events.c.run_pk).where(
        text("(message IS NOT NULL OR event_type = 'output')"),
        text(f"{_PG_TEXT} ILIKE :pattern").bindparams(pattern=pattern),
    )


def _trigrams(wanted: str) -> str:
    """An FTS5 query for the events whose text holds every trigram of ``wanted`` (at most
    MAX_TRIGRAMS of them, spread over it: enough to leave few events to check)."""
    grams = list(dict.fromkeys(wanted[i : i + 3] for i in range(len(wanted) - 2)))
    if len(grams) > MAX_TRIGRAMS:
        step = len(grams) / MAX_TRIGRAMS
        grams = [grams[int(i * step)] for i in range(MAX_TRIGRAMS)]
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)
