"""Moving the whole history between stores (SQLite to PostgreSQL and back).

Runs are matched by ``run_id``: a run already in the target with the same end state is skipped,
one that changed since (it was still running at the last copy) is replaced, so copying again is
harmless. Afterwards both sides are compared: run and event counts, and a checksum over every
copied event (run id, sequence number, type, level, message, data as stored).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Text, cast, delete, func, insert, select

from runstore.errors import StoreError
from runstore.store.schema import FINISHED_STATUSES, RunStatus, events, run_metrics, run_tags, runs
from runstore.store.store import Store

# A run that ended by itself; `abandoned` is the reaper's guess and may be corrected by a copy.
ENDED_BY_ITSELF = tuple(s for s in FINISHED_STATUSES if s != RunStatus.ABANDONED.value)

EVENT_BATCH = 5000
ID_CHUNK = 500  # run ids per IN (...) list: well under every backend's parameter limit
_COMPARED = ("status", "event_count", "finished_at", "exit_code")
# What makes two rows the same run, recorded in two stores: where and when it started.
_IDENTITY = ("job", "host", "pid", "started_at")

Progress = Callable[[int, int], None]  # (runs done, runs in all)


@dataclass
class CopyReport:
    copied: int = 0
    replaced: int = 0
    skipped: int = 0
    events: int = 0
    verified_runs: int = 0
    verified_events: int = 0
    checksum: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def copy_history(source: Store, target: Store, progress: Progress | None = None) -> CopyReport:
    """Copy every run (with its events) of ``source`` into ``target``, then verify."""
    if source.url == target.url:
        raise StoreError("source and target are the same store")
    report = CopyReport()
    with source.read() as conn:
        total = conn.execute(select(func.count()).select_from(runs)).scalar_one()
        run_rows = [dict(r) for r in conn.execute(select(runs).order_by(runs.c.id)).mappings()]
    with target.read() as conn:
        existing = {
            r["run_id"]: r
            for r in conn.execute(
                select(runs.c.id, runs.c.run_id, *[runs.c[n] for n in (*_COMPARED, *_IDENTITY)])
            ).mappings()
        }
    copied_ids = []
    for done, run in enumerate(run_rows, 1):
        there = existing.get(run["run_id"])
        if there is not None and any(there[n] != run[n] for n in _IDENTITY):
            # Another run that happens to have the same id: the target's history stays as it is.
            report.problems.append(
                f"run id {run['run_id']} names a different run in the target "
                f"(job {there['job']}, started {there['started_at']:%Y-%m-%d %H:%M:%S}); not copied"
            )
        elif there is not None and all(there[n] == run[n] for n in _COMPARED):
            report.skipped += 1
            copied_ids.append(run["run_id"])
        elif there is not None and there["status"] in ENDED_BY_ITSELF:
            # The target saw this run end (the source copy is older): never undo that.
            report.skipped += 1
        else:
            copied_ids.append(run["run_id"])
            report.events += _copy_run(source, target, run, there["id"] if there else None)
            if there is None:
                report.copied += 1
            else:
                report.replaced += 1
        if progress is not None:
            progress(done, total)
    _verify(source, target, copied_ids, report)
    return report


def _copy_run(source: Store, target: Store, run: dict[str, Any], replace_pk: int | None) -> int:
    """Copy one run, its tags, metrics and events in one target transaction; returns the events
    copied."""
    values = {k: v for k, v in run.items() if k != "id"}
    labels = _rows_of(source, run_tags, run["id"])
    measured = _rows_of(source, run_metrics, run["id"])

    def work(conn: Connection) -> int:
        if replace_pk is not None:
            for table in (events, run_tags, run_metrics):
                conn.execute(delete(table).where(table.c.run_pk == replace_pk))
            conn.execute(delete(runs).where(runs.c.id == replace_pk))
        key = conn.execute(insert(runs).values(**values)).inserted_primary_key
        assert key is not None
        for table, rows in ((run_tags, labels), (run_metrics, measured)):
            if rows:
                conn.execute(insert(table), [{**row, "run_pk": key[0]} for row in rows])
        copied = 0
        for batch in _event_batches(source, run["id"]):
            target.insert_numbered_events(conn, key[0], batch)
            copied += len(batch)
        return copied

    return target.write(work)


def _rows_of(source: Store, table: Any, run_pk: int) -> list[dict[str, Any]]:
    """A run's rows of ``table`` (its tags, its metrics), without their own keys."""
    columns = [c for c in table.c if c.name not in ("id", "run_pk")]
    with source.read() as conn:
        query = select(*columns).where(table.c.run_pk == run_pk)
        return [dict(row) for row in conn.execute(query).mappings()]


def _event_batches(source: Store, run_pk: int) -> Iterable[list[tuple[Any, ...]]]:
    query = (
        select(
            events.c.seq, events.c.ts, events.c.event_type, events.c.level, events.c.message,
            cast(events.c.data, Text),  # the stored text, not a re-encoding of it
        )
        .where(events.c.run_pk == run_pk)
        .order_by(events.c.seq)
    )  # fmt: skip
    with source.read() as conn:
        result = conn.execution_options(yield_per=EVENT_BATCH).execute(query)
        for part in result.partitions(EVENT_BATCH):
            yield [tuple(row) for row in part]


def event_checksum(store: Store, run_ids: list[str]) -> tuple[int, int, str]:
    """(runs, events, sha256) over the given runs' events, as stored. Only those runs are read
    (in chunks of ids), however large the rest of the store."""
    digest = hashlib.sha256()
    run_count = event_count = 0
    ordered = sorted(set(run_ids))
    with store.read() as conn:
        for start in range(0, len(ordered), ID_CHUNK):
            chunk = ordered[start : start + ID_CHUNK]
            run_count += conn.execute(
                select(func.count()).select_from(runs).where(runs.c.run_id.in_(chunk))
            ).scalar_one()
            query = (
                select(
                    runs.c.run_id, events.c.seq, events.c.event_type, events.c.level,
                    events.c.message, cast(events.c.data, Text),
                )
                .join(events, events.c.run_pk == runs.c.id)
                .where(runs.c.run_id.in_(chunk))
                .order_by(runs.c.run_id, events.c.seq)
            )  # fmt: skip
            for row in conn.execution_options(yield_per=EVENT_BATCH).execute(query):
                event_count += 1
                digest.update(repr(tuple(row)).encode())
    return run_count, event_count, digest.hexdigest()


def _verify(source: Store, target: Store, run_ids: list[str], report: CopyReport) -> None:
    src = event_checksum(source, run_ids)
    dst = event_checksum(target, run_ids)
    report.verified_runs, report.verified_events, report.checksum = dst
    if src[0] != dst[0]:
        report.problems.append(f"runs: source has {src[0]}, target {dst[0]}")
    if src[1] != dst[1]:
        report.problems.append(f"events: source has {src[1]}, target {dst[1]}")
    if src[2] != dst[2]:
        report.problems.append("event checksums differ between source and target")
