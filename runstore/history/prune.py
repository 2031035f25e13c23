"""Keeping a store healthy: prune old runs, back the store up, check it.

Library functions that return plain data (dataclasses with ``as_dict``); the CLI formats them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, func, or_, select
from sqlalchemy.exc import DBAPIError

from runstore.errors import RunstoreError, StoreError, UsageError, first_line
from runstore.store.location import display, resolve_db, sqlite_path
from runstore.store.schema import (
    FINISHED_STATUSES,
    NOT_COMPLETED_STATUSES,
    SCHEMA_REVISION,
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
# Integrity findings listed in a check report (SQLite itself stops at 100); the rest are counted.
MAX_INTEGRITY_MESSAGES = 10

COMPLETED_ONLY = tuple(s for s in FINISHED_STATUSES if s not in NOT_COMPLETED_STATUSES)


# -- prune ---------------------------------------------------------------------------------------


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
        raise UsageError("--older-than must not be negative")
    if keep_last < 0:
        raise UsageError("--keep-last must not be negative")
    now = now or datetime.now(timezone.utc)
    try:
        cutoff = now - timedelta(seconds=older_than_s)
    except OverflowError:
        raise UsageError("--older-than reaches before year 1; choose a shorter age") from None
    result = PruneResult(cutoff=cutoff, dry_run=dry_run)
    in_scope = [runs.c.started_at < cutoff, *([runs.c.job.in_(list(jobs))] if jobs else [])]
    statuses = COMPLETED_ONLY if keep_failed else FINISHED_STATUSES  # never a running run
    prunable = [*in_scope, runs.c.status.in_(statuses)]
    if store.path is not None:
        result.size_before = _file_bytes(store.path)
    with store.read() as conn:
        protected = _newest_per_job(conn, in_scope, keep_last) if keep_last else set()

    def one_batch(conn: Connection, after: tuple[datetime, int] | None) -> _Batch:
        query = select(runs.c.id, runs.c.job, runs.c.started_at, runs.c.event_count)
        query = query.where(*prunable)
        if after is not None:  # keyset paging: past the runs already looked at
            query = query.where(
                runs.c.started_at >= after[0],
                or_(runs.c.started_at > after[0], runs.c.id > after[1]),
            )
        rows = conn.execute(query.order_by(runs.c.started_at, runs.c.id).limit(batch_size)).all()
        batch = _Batch(last=after, done=not rows)
        batch_events = 0
        for run_pk, job, started_at, event_count in rows:
            if batch.ids and batch_events + (event_count or 0) > PRUNE_BATCH_EVENTS:
                break
            batch.last = (started_at, run_pk)
            if run_pk not in protected:
                batch.ids.append(run_pk)
                batch.jobs.append(job)
                batch_events += event_count or 0
        if not batch.ids:
            return batch
        batch.events = _count_events(conn, batch.ids)
        if dry_run:
            return batch
        batch.jobs = list(
            conn.execute(
                delete(runs)
                # Not `status IN (...)`: SQLite would scan the status index instead of the ids.
                .where(runs.c.id.in_(batch.ids), runs.c.status != RunStatus.RUNNING.value)
                .returning(runs.c.job)
            ).scalars()
        )
        # Events go with their runs through ON DELETE CASCADE. SQLite enforces it only on a
        # connection with foreign_keys=ON (PostgreSQL always): make sure they really did go.
        left = _count_events(conn, batch.ids) if store.dialect == "sqlite" else 0
        if left:
            raise StoreError(
                f"{left} events stayed behind when their runs were deleted (are foreign keys "
                "off?); nothing was removed"
            )
        return batch

    after: tuple[datetime, int] | None = None
    # A dry run reads one snapshot; a real one writes each batch in its own short transaction.
    with store.read() if dry_run else contextlib.nullcontext() as reader:
        while True:
            began = time.monotonic()
            if reader is not None:
                batch = one_batch(reader, after)
            else:
                batch = store.write(functools.partial(one_batch, after=after))
            if batch.done:
                break
            after = batch.last
            result.runs += len(batch.jobs)
            result.events += batch.events
            for job in batch.jobs:
                result.by_job[job] = result.by_job.get(job, 0) + 1
            if batch.jobs and progress is not None:
                progress(result.runs, result.events)
            if batch.jobs and not dry_run and store.dialect == "sqlite":
                time.sleep(min(PRUNE_PAUSE_CAP_S, time.monotonic() - began))
    result.by_job = dict(sorted(result.by_job.items()))
    with store.read() as conn:
        result.kept_older = _count_runs(conn, in_scope) - (result.runs if dry_run else 0)
    if dry_run:
        return result

    if store.path is not None:
        if vacuum and (result.runs or _free_bytes(store)):
            result.vacuum_error = _vacuum_sqlite(store)
            result.vacuumed = result.vacuum_error is None
        result.size_after = _file_bytes(store.path)
        result.free_bytes = _free_bytes(store)
    elif vacuum and result.runs:
        result.vacuum_error = _vacuum_postgresql(store)
        result.vacuumed = result.vacuum_error is None
    return result


@dataclass
class _Batch:
    """One batch of a prune: the runs it removed and how far it looked."""

    last: tuple[datetime, int] | None
    done: bool
    ids: list[int] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    events: int = 0


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
        newest = (
            select(runs.c.id)
            .where(runs.c.job == job)
            .order_by(runs.c.started_at.desc(), runs.c.id.desc())
            .limit(keep_last)
        )
        protected.update(conn.execute(newest).scalars())
    return protected


def _count_events(conn: Connection, run_pks: Any) -> int:
    query = select(func.count()).select_from(events).where(events.c.run_pk.in_(run_pks))
    return int(conn.execute(query).scalar_one())


def _count_runs(conn: Connection, conditions: Sequence[ColumnElement[bool]]) -> int:
    return int(conn.execute(select(func.count()).select_from(runs).where(*conditions)).scalar_one())


def _file_bytes(path: Path) -> int:
    total = 0
    for part in (path, path.with_name(path.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += part.stat().st_size
    return total


def _free_bytes(store: Store) -> int:
    """Bytes of free pages inside a SQLite file: what VACUUM would give back to the disk."""
    with store.read() as conn:
        pages = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
        page_size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
    return int(pages) * int(page_size)


def _vacuum_sqlite(store: Store) -> str | None:
    """Checkpoint, VACUUM, checkpoint again: the rewritten file lands in the WAL first."""
    with store.engine.connect() as conn:
        # VACUUM refuses to run inside a transaction, so bypass SQLAlchemy's BEGIN.
        raw = conn.connection.driver_connection
        assert raw is not None
        try:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            raw.execute("VACUUM")
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            return f"VACUUM failed: {exc}"
    return None


def _vacuum_postgresql(store: Store) -> str | None:
    """Plain VACUUM makes the space reusable without locking out writers; it needs autocommit."""
    try:
        with store.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql(f"VACUUM (ANALYZE) {runs.name}, {events.name}")
    except DBAPIError as exc:
        return f"VACUUM failed: {first_line(exc)}"
    return None


# -- backup --------------------------------------------------------------------------------------


@dataclass
class BackupResult:
    source: str
    target: str
    bytes: int
    runs: int
    schema_revision: str | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def backup(
    db: str | os.PathLike[str] | None, target: str | os.PathLike[str], *, force: bool = False
) -> BackupResult:
    """Copy a SQLite store to ``target`` with SQLite's online backup, safe while runs write.

    The copy is written beside ``target``, checked (``PRAGMA integrity_check``) and renamed into
    place, so ``target`` is never left half-written; it is readable by its owner only. An
    existing ``target`` is replaced only with ``force``, and so are a ``-wal`` or ``-journal``
    left at its name (SQLite would read them with the copy). ``-`` (or a device or FIFO) gets
    the checked copy written to it. PostgreSQL stores are backed up with pg_dump, not here.
    """
    from runstore.files import output_target, refuse_clashes
    from runstore.store.location import store_files
    from runstore.store.sqlite_file import backup_file, backup_stream, stale_companions
    from runstore.store.store import schema_state

    url = resolve_db(db)
    source = sqlite_path(url)
    if source is None:
        raise RunstoreError(
            f"{display(url)} is not a SQLite file; back up a PostgreSQL store with pg_dump "
            "(for example: pg_dump --format=custom --file=runstore.dump DBNAME)"
        )
    if not source.is_file():
        raise StoreError(f"there is no store at {source} to back up")
    refuse_clashes({"FILE": target}, store_files=store_files(url))
    out = output_target(target)
    if out.file is not None:
        if not out.file.parent.is_dir():
            raise StoreError(f"cannot write {out.given}: its directory does not exist")
        if out.file.exists() and not force:
            raise RunstoreError(f"{out.given} already exists; use --force to replace it")
        stale = stale_companions(out.file)
        if stale and not force:
            raise RunstoreError(
                f"{stale[0]} is left over from another database, and SQLite would read it "
                "together with the backup; remove it, or use --force to replace it too"
            )
    revision, _ = schema_state(url)
    if revision is None:
        raise StoreError(f"{source} holds no runstore store yet; nothing to back up")

    began = time.monotonic()
    if out.file is not None:
        checked = backup_file(source, out.file, replace=force)
        size = out.file.stat().st_size
        written_to = str(out.file)
    else:
        fd = out.fd if out.fd is not None else os.open(out.given, os.O_WRONLY | os.O_NOCTTY)
        try:
            checked, size = backup_stream(source, fd, out.given)
        finally:
            if out.fd is None:
                os.close(fd)
        written_to = out.given
    return BackupResult(
        source=str(source),
        target=written_to,
        bytes=size,
        runs=checked.runs,
        schema_revision=checked.revision,
        seconds=round(time.monotonic() - began, 3),
    )


# -- check ---------------------------------------------------------------------------------------


@dataclass
class CheckReport:
    store: str
    dialect: str
    # None where the backend has no integrity check (PostgreSQL).
    integrity_ok: bool | None
    integrity_mode: str | None
    integrity_messages: list[str]
    schema_revision: str | None
    code_revision: str
    schema_state: str  # current | older | newer
    runs_by_status: dict[str, int]
    running: list[dict[str, Any]]
    stale: list[dict[str, Any]]
    size: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def runs_total(self) -> int:
        return sum(self.runs_by_status.values())

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        out["runs_total"] = self.runs_total
        return out


def check(
    db: str | os.PathLike[str] | None = None,
    *,
    quick: bool = False,
    stale_after_s: float | None = None,
) -> CheckReport:
    """Integrity, schema revision, runs by status, and stale runs. Changes nothing in the store.

    Problems (a failed integrity check, a schema newer than this code, stale runs) are listed
    one line each in ``problems``; an empty list means the store is healthy. Which running runs
    are stale is the reaper's decision; ``stale_after_s`` is its threshold for other hosts.
    """
    from runstore.store.schema import KNOWN_REVISIONS
    from runstore.store.store import reading_engine, schema_state

    url = resolve_db(db)
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise StoreError(f"there is no store at {path}")
    revision, code_revision = schema_state(url)
    if revision is None:
        raise StoreError(f"{display(url)} holds no runstore store yet")
    # Not Store.open: a check neither upgrades the schema nor reaps runs.
    store = Store(url, reading_engine(url))
    if revision == code_revision:
        state = "current"
    elif revision in KNOWN_REVISIONS:
        state = "older"
    else:
        state = "newer"
    report = CheckReport(
        store=store.where,
        dialect=store.dialect,
        integrity_ok=None,
        integrity_mode=None,
        integrity_messages=[],
        schema_revision=revision,
        code_revision=code_revision,
        schema_state=state,
        runs_by_status={},
        running=[],
        stale=[],
        size=_file_bytes(path) if path is not None else None,
    )
    try:
        if path is not None:
            _check_integrity(store, report, quick)
        if state == "newer":
            report.problems.append(
                f"schema revision {revision} is newer than this runstore knows "
                f"(up to {SCHEMA_REVISION}); upgrade runstore"
            )
            return report
        _count_and_find_stale(store, report, stale_after_s)
    except DBAPIError as exc:
        report.problems.append(f"the store cannot be read: {first_line(exc)}")
    return report


def _check_integrity(store: Store, report: CheckReport, quick: bool) -> None:
    report.integrity_mode = "quick_check" if quick else "integrity_check"
    messages = _pragma_lines(store, report.integrity_mode)
    if messages == ["ok"]:
        messages = []
    if not quick:  # orphan events: the one kind of damage integrity_check does not look for
        broken = _pragma_lines(store, "foreign_key_check", describe=_describe_orphans)
        messages += [line for line in broken if line not in messages]
    report.integrity_ok = not messages
    report.integrity_messages = messages[:MAX_INTEGRITY_MESSAGES]
    for message in report.integrity_messages:
        report.problems.append(f"integrity: {message}")
    if len(messages) > MAX_INTEGRITY_MESSAGES:
        more = len(messages) - MAX_INTEGRITY_MESSAGES
        report.problems.append(f"integrity: ... and {more} more problems")


def _pragma_lines(
    store: Store, pragma: str, describe: Callable[[list[Any]], list[str]] | None = None
) -> list[str]:
    """A checking pragma's findings, one per line (SQLite packs several lines into one row)."""
    try:
        with store.read() as conn:
            rows = conn.exec_driver_sql(f"PRAGMA {pragma}").all()
    except DBAPIError as exc:  # damage bad enough that the check itself stops
        return [first_line(exc)]
    if describe is not None:
        return describe(list(rows))
    lines = (line.strip() for row in rows for line in str(row[0]).splitlines())
    return [line for line in lines if line and not line.startswith("*** in database")]


def _describe_orphans(rows: list[Any]) -> list[str]:
    if not rows:
        return []
    tables = sorted({str(row[0]) for row in rows})
    return [f"{len(rows)} rows in {', '.join(tables)} refer to rows that do not exist"]


STALE_FIELDS = ("run_id", "job", "host", "pid", "started_at", "heartbeat_at", "reason")


def _count_and_find_stale(store: Store, report: CheckReport, stale_after_s: float | None) -> None:
    from runstore.humanize import humane_age

    counts = {s.value: 0 for s in RunStatus}
    with store.read() as conn:
        for status, n in conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status)):
            counts[status] = int(n)
        running = (
            conn.execute(
                select(
                    runs.c.run_id,
                    runs.c.job,
                    runs.c.host,
                    runs.c.pid,
                    runs.c.started_at,
                    runs.c.heartbeat_at,
                )
                .where(runs.c.status == RunStatus.RUNNING.value)
                .order_by(runs.c.started_at, runs.c.id)
            )
            .mappings()
            .all()
        )
    report.runs_by_status = counts
    report.running = [dict(r) for r in running]
    if not report.running:
        return  # nothing can be stale: no need for the reaper's checks
    from runstore.history.reaper import find_stale

    found = (
        find_stale(store)
        if stale_after_s is None
        else find_stale(store, stale_after_s=stale_after_s)
    )
    report.stale = [{key: run.get(key) for key in STALE_FIELDS} for run in found]
    for run in report.stale:
        where = f"pid {run['pid']} on {run['host']}" if run["pid"] else run["host"]
        started = run["started_at"]
        age = f", started {humane_age(started)} ago" if isinstance(started, datetime) else ""
        why = f": {run['reason']}" if run["reason"] else ""
        report.problems.append(
            f"stale run {run['run_id']} (job {run['job']}, {where}{age}){why}; "
            "`runstore reap` marks it abandoned"
        )
