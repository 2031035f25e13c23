"""``runstore prune``: delete old runs and their events, in short batches that never hold the
write lock for long, then give the space back to the disk."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, func, or_, select
from sqlalchemy.exc import DBAPIError

from runstore.errors import StoreError, UsageError, first_line
from runstore.store import sqlite_file
from runstore.store.schema import (
    FINISHED_STATUSES,
    NEWEST_FIRST,
    OLDEST_FIRST,
    RunStatus,
    events,
    runs,
)
from runstore.store.store import Store

# A prune deletes at most this many runs per transaction...
PRUNE_BATCH_RUNS = 500
# ...and stops a batch early past this many events, so the write lock is never held for long.
PRUNE_BATCH_EVENTS = 50_000
# Between batches on SQLite, pause about as long as the batch held the lock (capped), so that
# loggers waiting in their busy handler get the lock instead of being starved by the prune.
PRUNE_PAUSE_CAP_S = 0.25


@dataclass
class PruneResult:
    """What a prune removed (or, with ``dry_run``, would remove)."""

    cutoff: datetime
    dry_run: bool
    runs: int = 0
    events: int = 0
    by_job: dict[str, int] = field(default_factory=dict)
    # Runs started before the cutoff that stay: running, or protected by keep_last/keep_failed.
    kept_older: int = 0
    vacuumed: bool = False
    vacuum_error: str | None = None
    # SQLite only: the store file plus its WAL, before and after; free pages left inside it.
    size_before: int | None = None
    size_after: int | None = None
    free_bytes: int | None = None

    @property
    def bytes_freed(self) -> int | None:
        if self.size_before is None or self.size_after is None or self.dry_run:
            return None
        return max(0, self.size_before - self.size_after)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bytes_freed"] = self.bytes_freed
        return out


def prune(
    store: Store,
    older_than_s: float,
    *,
    keep_last: int = 0,
    keep_failed: bool = False,
    jobs: Sequence[str] = (),
    dry_run: bool = False,
    vacuum: bool = True,
    now: datetime | None = None,
    batch_size: int = PRUNE_BATCH_RUNS,
    progress: Callable[[int, int], None] | None = None,
) -> PruneResult:
    """Delete runs (and their events) started more than ``older_than_s`` seconds ago.

    A running run is never deleted. ``keep_last`` keeps each job's newest N runs whatever their
    age; ``keep_failed`` keeps runs that did not complete (failed, cancelled, abandoned); ``jobs``
    limits the prune to those jobs. Deletes go in batches of short transactions, then (unless
    ``vacuum`` is false) SQLite checkpoints its WAL and VACUUMs, PostgreSQL runs VACUUM ANALYZE.
    ``progress(runs, events)`` is called after each batch.
    """
    if older_than_s < 0:
        raise UsageError("must not be negative", field="older_than")
    if keep_last < 0:
        raise UsageError("must not be negative", field="keep_last")
    now = now or datetime.now(timezone.utc)
    try:
        cutoff = now - timedelta(seconds=older_than_s)
    except OverflowError:
        raise UsageError(
            "reaches before year 1; choose a shorter age", field="older_than"
        ) from None
    result = PruneResult(cutoff=cutoff, dry_run=dry_run)
    in_scope = [runs.c.started_at < cutoff, *([runs.c.job.in_(list(jobs))] if jobs else [])]
    completed = (RunStatus.COMPLETED.value,)
    statuses = completed if keep_failed else FINISHED_STATUSES  # never a running run
    if store.path is not None:
        result.size_before = sqlite_file.file_bytes(store.path)
    with store.read() as conn:
        protected = _newest_per_job(conn, in_scope, keep_last) if keep_last else set()
    batches = _Batches(store, [*in_scope, runs.c.status.in_(statuses)], protected, batch_size)
    batches.run(result, dry_run, progress)
    with store.read() as conn:
        result.kept_older = _count_runs(conn, in_scope) - (result.runs if dry_run else 0)
    if not dry_run:
        _give_space_back(store, result, vacuum)
    return result


@dataclass
class _Batch:
    """One batch of a prune: the runs it removed and how far it looked."""

    last: tuple[datetime, int] | None
    done: bool
    ids: list[int] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    events: int = 0


@dataclass
class _Batches:
    """The prunable runs, a batch at a time: keyset paging through (started_at, id), each batch
    capped by runs and by events, protected runs skipped."""

    store: Store
    prunable: list[ColumnElement[bool]]
    protected: set[int]
    batch_size: int

    def run(
        self, result: PruneResult, dry_run: bool, progress: Callable[[int, int], None] | None
    ) -> None:
        after: tuple[datetime, int] | None = None
        # A dry run reads one snapshot; a real one writes each batch in its own transaction.
        with self.store.read() if dry_run else contextlib.nullcontext() as reader:
            while True:
                began = time.monotonic()
                if reader is not None:
                    batch = self.next(reader, after, delete_it=False)
                else:
                    batch = self.store.write(functools.partial(self.next, after=after))
                if batch.done:
                    break
                after = batch.last
                result.runs += len(batch.jobs)
                result.events += batch.events
                for job in batch.jobs:
                    result.by_job[job] = result.by_job.get(job, 0) + 1
                if batch.jobs and progress is not None:
                    progress(result.runs, result.events)
                if batch.jobs and not dry_run and self.store.is_sqlite:
                    time.sleep(min(PRUNE_PAUSE_CAP_S, time.monotonic() - began))
        result.by_job = dict(sorted(result.by_job.items()))

    def next(
        self, conn: Connection, after: tuple[datetime, int] | None, *, delete_it: bool = True
    ) -> _Batch:
        query = select(runs.c.id, runs.c.job, runs.c.started_at, runs.c.event_count)
        query = query.where(*self.prunable)
        if after is not None:  # keyset paging: past the runs already looked at
            query = query.where(
                runs.c.started_at >= after[0],
                or_(runs.c.started_at > after[0], runs.c.id > after[1]),
            )
        query = query.order_by(*OLDEST_FIRST).limit(self.batch_size)
        batch = _Batch(last=after, done=False)
        rows = conn.execute(query).all()
        batch.done = not rows
        batch_events = 0
        for run_pk, job, started_at, event_count in rows:
            if batch.ids and batch_events + (event_count or 0) > PRUNE_BATCH_EVENTS:
                break
            batch.last = (started_at, run_pk)
            if run_pk not in self.protected:
                batch.ids.append(run_pk)
                batch.jobs.append(job)
                batch_events += event_count or 0
        if batch.ids:
            batch.events = _count_events(conn, batch.ids)
            if delete_it:
                batch.jobs = self._delete(conn, batch.ids)
        return batch

    def _delete(self, conn: Connection, ids: list[int]) -> list[str]:
        jobs = list(
            conn.execute(
                delete(runs)
                # Not `status IN (...)`: SQLite would scan the status index instead of the ids.
                .where(runs.c.id.in_(ids), runs.c.status != RunStatus.RUNNING.value)
                .returning(runs.c.job)
            ).scalars()
        )
        # Events go with their runs through ON DELETE CASCADE. SQLite enforces it only on a
        # connection with foreign_keys=ON (PostgreSQL always): make sure they really did go.
        left = _count_events(conn, ids) if self.store.is_sqlite else 0
        if left:
            raise StoreError(
                f"{left} events stayed behind when their runs were deleted (are foreign keys "
                "off?); nothing was removed"
            )
        return jobs


def _give_space_back(store: Store, result: PruneResult, vacuum: bool) -> None:
    if store.path is not None:
        if vacuum and (result.runs or sqlite_file.free_bytes(store.engine)):
            result.vacuum_error = sqlite_file.vacuum(store.engine)
            result.vacuumed = result.vacuum_error is None
        result.size_after = sqlite_file.file_bytes(store.path)
        result.free_bytes = sqlite_file.free_bytes(store.engine)
    elif vacuum and result.runs:
        result.vacuum_error = _vacuum_postgresql(store)
        result.vacuumed = result.vacuum_error is None


def _newest_per_job(
    conn: Connection, in_scope: Sequence[ColumnElement[bool]], keep_last: int
) -> set[int]:
    """The newest ``keep_last`` runs (any status, any age) of each job that has runs in scope.

    A few indexed LIMIT queries up front, rather than a window or a correlated subquery per
    candidate, keep a prune of a million runs linear.
    """
    names = conn.execute(select(runs.c.job).where(*in_scope).distinct()).scalars().all()
    protected: set[int] = set()
    for job in names:
        newest = select(runs.c.id).where(runs.c.job == job).order_by(*NEWEST_FIRST).limit(keep_last)
        protected.update(conn.execute(newest).scalars())
    return protected


def _count_events(conn: Connection, run_pks: Any) -> int:
    query = select(func.count()).select_from(events).where(events.c.run_pk.in_(run_pks))
    return int(conn.execute(query).scalar_one())


def _count_runs(conn: Connection, conditions: Sequence[ColumnElement[bool]]) -> int:
    return int(conn.execute(select(func.count()).select_from(runs).where(*conditions)).scalar_one())


def _vacuum_postgresql(store: Store) -> str | None:
    """Plain VACUUM makes the space reusable without locking out writers; it needs autocommit."""
    try:
        with store.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql(f"VACUUM (ANALYZE) {runs.name}, {events.name}")
    except DBAPIError as exc:
        return f"VACUUM failed: {first_line(exc)}"
    return None
