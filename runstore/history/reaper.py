"""Crash detection without a daemon: a run still ``running`` whose process is gone is marked
``abandoned``.

On the run's own host liveness is exact: the pid must exist, with the same process start time
(pids are reused) and the same boot id (pids restart after a reboot). For runs of other hosts the
heartbeat decides: no sign of life for ``stale_after_s`` seconds. Every update is guarded by
``status = 'running'``, so a run that finished meanwhile is never downgraded, and its
``finished_at`` is the last sign of life, not the time it was noticed.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from runstore import procinfo
from runstore.errors import StoreError
from runstore.history import STALE_AFTER_S
from runstore.humanize import humane_duration
from runstore.store.schema import RunStatus, runs
from runstore.store.store import Store

_COLUMNS = (
    runs.c.id,
    runs.c.run_id,
    runs.c.job,
    runs.c.host,
    runs.c.pid,
    runs.c.process_start,
    runs.c.boot_id,
    runs.c.started_at,
    runs.c.heartbeat_at,
)


def _why_gone(run: dict[str, Any], now: datetime, stale_after_s: float) -> str | None:
    """Why ``run`` is no longer alive, or None when it may still be."""
    if run["host"] == procinfo.hostname() and run["pid"] is not None:
        boot = procinfo.boot_id()
        if run["boot_id"] and boot and run["boot_id"] != boot:
            return "the machine rebooted since the run started"
        started = procinfo.process_start(run["pid"])
        if started is None:
            return f"process {run['pid']} is gone"
        if run["process_start"] is not None and started != run["process_start"]:
            return f"process {run['pid']} is gone (the pid now belongs to another process)"
        return None
    last_sign = run["heartbeat_at"] or run["started_at"]
    if now - last_sign > timedelta(seconds=stale_after_s):
        silent = humane_duration((now - last_sign).total_seconds() * 1000)
        return f"no heartbeat from {run['host'] or 'its host'} for {silent}"
    return None


def find_stale(
    store: Store, *, stale_after_s: float = STALE_AFTER_S, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Running runs whose process is gone, each with a ``reason``."""
    now = now or store.now()
    with store.read() as conn:
        live = conn.execute(
            select(*_COLUMNS).where(runs.c.status == RunStatus.RUNNING.value)
        ).mappings()
        stale = []
        for row in live:
            reason = _why_gone(dict(row), now, stale_after_s)
            if reason is not None:
                stale.append({**row, "reason": reason})
    return stale


def reap(
    store: Store, *, stale_after_s: float = STALE_AFTER_S, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Mark every stale running run ``abandoned``; return the runs marked."""
    marked = []
    for run in find_stale(store, stale_after_s=stale_after_s, now=now):
        last_sign = run["heartbeat_at"] or run["started_at"]
        duration_ms = max(0, int((last_sign - run["started_at"]).total_seconds() * 1000))

        def work(
            conn: Any,
            run: dict[str, Any] = run,
            last_sign: datetime = last_sign,
            duration_ms: int = duration_ms,
        ) -> int:
            return conn.execute(
                update(runs)
                .where(runs.c.id == run["id"], runs.c.status == RunStatus.RUNNING.value)
                .values(
                    status=RunStatus.ABANDONED.value,
                    finished_at=last_sign,
                    duration_ms=duration_ms,
                    error_summary=run["reason"],
                )
            ).rowcount

        if store.write(work):
            marked.append(run)
    return marked


def reap_quietly(store: Store) -> None:
    """The cheap reap that read commands do first; a store they cannot write is left as it is."""
    with suppress(StoreError, DBAPIError):
        reap(store)
