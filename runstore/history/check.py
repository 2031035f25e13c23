"""``runstore db check``: the store's integrity, schema revision, runs by status and stale runs,
changing nothing."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from runstore.errors import first_line
from runstore.humanize import humane_age
from runstore.store import sqlite_file
from runstore.store.schema import KNOWN_REVISIONS, OLDEST_FIRST, SCHEMA_REVISION, RunStatus, runs
from runstore.store.store import Store

# Integrity findings listed in a check report (SQLite itself stops at 100); the rest are counted.
MAX_INTEGRITY_MESSAGES = 10


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
    # A check neither creates, upgrades nor reaps: the store as it is.
    store = Store.open(db, mode="inspect")
    revision, code_revision = store.revision(), SCHEMA_REVISION
    path = store.path
    if revision == code_revision:
        state = "current"
    elif revision in KNOWN_REVISIONS:
        state = "older"
    else:
        state = "newer"
    report = CheckReport(
        store=store.where,
        dialect=store.engine.dialect.name,
        integrity_ok=None,
        integrity_mode=None,
        integrity_messages=[],
        schema_revision=revision,
        code_revision=code_revision,
        schema_state=state,
        runs_by_status={},
        running=[],
        stale=[],
        size=sqlite_file.file_bytes(path) if path is not None else None,
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
    messages = sqlite_file.integrity_problems(store.engine, quick=quick)
    report.integrity_ok = not messages
    report.integrity_messages = messages[:MAX_INTEGRITY_MESSAGES]
    for message in report.integrity_messages:
        report.problems.append(f"integrity: {message}")
    if len(messages) > MAX_INTEGRITY_MESSAGES:
        more = len(messages) - MAX_INTEGRITY_MESSAGES
        report.problems.append(f"integrity: ... and {more} more problems")


STALE_FIELDS = ("run_id", "job", "host", "pid", "started_at", "heartbeat_at", "reason")


def _count_and_find_stale(store: Store, report: CheckReport, stale_after_s: float | None) -> None:
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
                .order_by(*OLDEST_FIRST)
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
