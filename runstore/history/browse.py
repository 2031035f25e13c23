"""What the pages of ``runstore ui`` ask, each answered by an index and bounded by a limit,
whatever the store's size: the job names (a skip scan, not a scan), a job's newest runs, the
runs running now, the history a page at a time by keyset (never OFFSET), a run's events a page at
a time, a job's daily outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from itertools import islice
from typing import Any

from sqlalchemy import and_, case, func, literal, literal_column, select, text, tuple_

from runstore.history.queries import HistoryFilter, store_history_query
from runstore.store.event_rows import EventFilter
from runstore.store.schema import NEWEST_FIRST, NOT_COMPLETED_STATUSES, RunStatus, runs
from runstore.store.store import Store

RUN_FIELDS = (runs.c.id, runs.c.run_id, runs.c.job, runs.c.status, runs.c.started_at,
              runs.c.finished_at, runs.c.duration_ms, runs.c.exit_code, runs.c.error_summary,
              runs.c.host, runs.c.items_total, runs.c.warning_count, runs.c.error_count,
              runs.c.event_count)  # fmt: skip

# Every distinct job by walking the (job, started_at) index: one seek per job, not one row read
# per run (a DISTINCT reads the whole index: a million entries for a million runs).
_JOB_NAMES = text(
    """
WITH RECURSIVE names(job) AS (
    SELECT MIN(job) FROM runs
    UNION ALL
    SELECT (SELECT MIN(r.job) FROM runs AS r WHERE r.job > names.job) FROM names
    WHERE names.job IS NOT NULL
)
SELECT job FROM names WHERE job IS NOT NULL
"""
)


def job_names(store: Store) -> list[str]:
    with store.read() as conn:
        return [row[0] for row in conn.execute(_JOB_NAMES)]


# What a job's recent runs are judged and drawn by: few columns, as an overview reads them for
# every job at once.
BRIEF_FIELDS = (runs.c.run_id, runs.c.status, runs.c.started_at, runs.c.finished_at,
                runs.c.duration_ms, runs.c.error_summary)  # fmt: skip


def recent_runs(
    store: Store, job: str, limit: int, fields: Sequence[Any] = RUN_FIELDS
) -> list[dict[str, Any]]:
    """A job's newest ``limit`` runs, newest first (``fields``: BRIEF_FIELDS for less)."""
    query = select(*fields).where(runs.c.job == job).order_by(*NEWEST_FIRST).limit(limit)
    names = [column.name for column in fields]
    with store.read() as conn:
        return [dict(zip(names, row)) for row in conn.execute(query)]


def running(store: Store) -> list[dict[str, Any]]:
    """The runs running now, the oldest first (the partial index on running runs)."""
    query = (
        select(*RUN_FIELDS)
        .where(runs.c.status == RunStatus.RUNNING.value)
        .order_by(runs.c.started_at, runs.c.id)
    )
    with store.read() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


@dataclass(frozen=True)
class Page:
    """Rows of a page, and the cursor of the next one (None on the last)."""

    rows: list[dict[str, Any]]
    next_cursor: tuple[datetime, int] | None


def runs_page(
    store: Store, flt: HistoryFilter, *, before: tuple[datetime, int] | None, size: int
) -> Page:
    """A page of ``flt``'s runs, newest first, after ``before`` (the last row of the previous
    page: its start and id) by keyset, so a deep page costs what the first does."""
    page = replace(flt, limit=size + 1, offset=0)
    query = store_history_query(store, page).with_only_columns(*RUN_FIELDS)
    if before is not None:
        query = query.where(_before(*before))
    with store.read() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, (rows[-1]["started_at"], rows[-1]["id"]) if more else None)


def events_page(
    store: Store, run_pk: int, *, after_seq: int = 0, size: int, only: EventFilter | None = None
) -> list[tuple[Any, ...]]:
    """Up to ``size`` of a run's events after ``after_seq``, in order, as
    ``Store.iter_event_rows`` gives them; reading stops there, however big the run."""
    wanted = replace(only or EventFilter(), after_seq=after_seq)
    rows = store.iter_event_rows(run_pk, wanted, batch_size=min(size, 5000))
    try:
        return list(islice(rows, size))
    finally:
        rows.close()  # type: ignore[attr-defined]


def daily_outcomes(store: Store, job: str, since: datetime) -> dict[date, tuple[int, int]]:
    """Runs of ``job`` per day (UTC) since ``since``: (completed, not completed), running ones
    left out."""
    if store.is_sqlite:
        day: Any = func.date(runs.c.started_at)
    else:
        day = func.date(func.timezone(literal_column("'UTC'"), runs.c.started_at))
    bad = case((runs.c.status.in_(NOT_COMPLETED_STATUSES), 1), else_=0)
    query = (
        select(day.label("day"), func.count(), func.sum(bad))
        .where(
            and_(runs.c.job == job, runs.c.started_at >= since),
            runs.c.status != RunStatus.RUNNING.value,
        )
        .group_by(day)
    )
    found: dict[date, tuple[int, int]] = {}
    with store.read() as conn:
        for when, total, failed in conn.execute(query):
            when = date.fromisoformat(when) if isinstance(when, str) else when
            found[when] = (int(total) - int(failed or 0), int(failed or 0))
    return found


def _before(started_at: datetime, run_pk: int) -> Any:
    """Runs older than the one that started at ``started_at`` with key ``run_pk``, in the
    history's order (by start, then by key): a keyset condition the (started_at) index serves."""
    return tuple_(runs.c.started_at, runs.c.id) < tuple_(
        literal(started_at, runs.c.started_at.type), literal(run_pk, runs.c.id.type)
    )


def run_by_id(store: Store, run_id: str) -> dict[str, Any]:
    """A run by its whole id (pages and links name runs whole; a prefix is the CLI's)."""
    from runstore.errors import RunNotFound
    from runstore.store.schema import runs as table

    with store.read() as conn:
        row = conn.execute(select(table).where(table.c.run_id == run_id)).mappings().first()
    if row is None:
        raise RunNotFound(run_id)
    return dict(row)


def last_completed_before(store: Store, job: str, run: dict[str, Any]) -> dict[str, Any] | None:
    """The job's last completed run before ``run``: what the compare page holds it against."""
    query = (
        select(*RUN_FIELDS)
        .where(
            runs.c.job == job,
            runs.c.status == RunStatus.COMPLETED.value,
            _before(run["started_at"], run["id"]),
        )
        .order_by(*NEWEST_FIRST)
        .limit(1)
    )
    with store.read() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row is not None else None
