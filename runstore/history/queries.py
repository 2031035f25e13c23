"""The questions operators ask of the history, answered with indexed SQL.

Every function takes a Store and returns plain dicts (column -> value), newest first where order
matters; formatting is the caller's business.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Select, and_, func, select

from runstore.errors import UsageError
from runstore.history import HISTORY_FIELDS, HISTORY_LIMIT
from runstore.humanize import humane_duration
from runstore.store.event_rows import EventFilter
from runstore.store.schema import (
    LEVELS,
    NEWEST_FIRST,
    NOT_COMPLETED_STATUSES,
    OLDEST_FIRST,
    RunStatus,
    run_tags,
    runs,
)
from runstore.store.search import has_index, matching_runs
from runstore.store.store import Store

HISTORY_COLUMNS = tuple(runs.c[name] for name in HISTORY_FIELDS)


@dataclass
class HistoryFilter:
    statuses: Sequence[str] = ()
    jobs: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    min_duration_ms: int | None = None
    max_duration_ms: int | None = None
    limit: int | None = HISTORY_LIMIT
    offset: int = 0
    oldest_first: bool = False
    tags: Sequence[tuple[str, str | None]] = ()  # (key, value); value None: any
    grep: str | None = None  # output lines and event messages containing it

    def __post_init__(self) -> None:
        _check_statuses(self.statuses)


def tag_conditions(tags: Sequence[tuple[str, str | None]]) -> list[Any]:
    """Runs carrying each of ``tags`` (a key with a value, or a key with any value)."""
    conditions = []
    for key, value in tags:
        tagged = select(run_tags.c.run_pk).where(run_tags.c.key == key)
        if value is not None:
            tagged = tagged.where(run_tags.c.value == value)
        conditions.append(runs.c.id.in_(tagged))
    return conditions


def _check_statuses(statuses: Sequence[str]) -> None:
    unknown = [s for s in statuses if s not in {st.value for st in RunStatus}]
    if unknown:
        choices = ", ".join(s.value for s in RunStatus)
        raise UsageError(f"unknown status {', '.join(unknown)}; choose from {choices}")


def parse_statuses(text: str) -> list[str]:
    statuses = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not statuses:
        raise UsageError("--status: give one or more statuses, comma-separated")
    _check_statuses(statuses)
    return statuses


def wanted_statuses(status: str | None, failed: bool) -> list[str] | None:
    """The statuses ``--status`` and ``--failed`` ask for together: [] for any status, None
    when the two leave nothing to match."""
    statuses = parse_statuses(status) if status is not None else []
    if not failed:
        return statuses
    if not statuses:
        return list(NOT_COMPLETED_STATUSES)
    return [s for s in statuses if s in NOT_COMPLETED_STATUSES] or None


def history_query(flt: HistoryFilter, *, sqlite: bool = True, indexed: bool = False) -> Select[Any]:
    """The runs ``flt`` asks for. ``sqlite`` (the store's dialect) and ``indexed`` (whether it
    keeps a search index) say how --grep searches: see ``store_history_query``."""
    conditions: list[Any] = tag_conditions(flt.tags)
    if flt.grep is not None:
        matching = matching_runs(flt.grep, sqlite=sqlite, indexed=indexed)
        conditions.append(runs.c.id.in_(matching))
    if flt.statuses:
        conditions.append(runs.c.status.in_(list(flt.statuses)))
    if flt.jobs:
        conditions.append(runs.c.job.in_(list(flt.jobs)))
    if flt.since is not None:
        conditions.append(runs.c.started_at >= flt.since)
    if flt.until is not None:
        conditions.append(runs.c.started_at < flt.until)
    if flt.min_duration_ms is not None:
        conditions.append(runs.c.duration_ms >= flt.min_duration_ms)
    if flt.max_duration_ms is not None:
        conditions.append(runs.c.duration_ms <= flt.max_duration_ms)
    order = OLDEST_FIRST if flt.oldest_first else NEWEST_FIRST
    query = select(*HISTORY_COLUMNS).where(and_(True, *conditions)).order_by(*order)
    if flt.limit is not None:
        query = query.limit(flt.limit)
    if flt.offset:
        query = query.offset(flt.offset)
    return query


def store_history_query(store: Store, flt: HistoryFilter) -> Select[Any]:
    """``history_query`` for ``store``: its dialect, and for --grep its search index, if any."""
    indexed = False
    if flt.grep is not None:
        with store.read() as conn:
            indexed = has_index(conn)
    return history_query(flt, sqlite=store.is_sqlite, indexed=indexed)


def history(store: Store, flt: HistoryFilter) -> list[dict[str, Any]]:
    """Runs matching ``flt``, newest first."""
    query = store_history_query(store, flt)
    with store.read() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def iter_history(
    store: Store, flt: HistoryFilter, *, whole: bool = True
) -> Iterator[dict[str, Any]]:
    """Like ``history`` but streamed (memory flat in the number of runs): every column of the
    run row (for exports), or with ``whole=False`` only ``HISTORY_FIELDS``."""
    query = store_history_query(store, flt)
    if whole:
        query = query.with_only_columns(runs)
    with store.read() as conn:
        for row in conn.execution_options(yield_per=500).execute(query).mappings():
            yield dict(row)


EVENT_FIELDS = ("seq", "ts", "event_type", "level", "message", "data")


def event_filter(
    *,
    min_level: str | None = None,
    types: Sequence[str] = (),
    tail: int | None = None,
    stream: str | None = None,
    after_seq: int = 0,
) -> EventFilter:
    """Which events to read: at ``min_level`` or above, of ``types``, the last ``tail``, output
    of one ``stream`` (stdout, stderr), after ``after_seq``."""
    levels: tuple[str, ...] = ()
    if min_level is not None:
        if min_level not in LEVELS:
            raise UsageError(f"unknown level {min_level!r}; choose from {', '.join(LEVELS)}")
        levels = LEVELS[LEVELS.index(min_level) :]
    if stream is not None and stream not in ("stdout", "stderr"):
        raise UsageError(f"unknown stream {stream!r}; choose stdout or stderr", field="stream")
    return EventFilter(levels, tuple(types), after_seq, stream, tail)


def iter_events(store: Store, run_pk: int, only: EventFilter) -> Iterator[dict[str, Any]]:
    """A run's events in order, streamed: ``ts`` ISO-8601 UTC text, ``data`` the stored JSON
    text (bounded memory, whatever the run's size)."""
    for values in store.iter_event_rows(run_pk, only):
        yield dict(zip(EVENT_FIELDS, values))


def iter_event_json(store: Store, run_pk: int, only: EventFilter) -> Iterator[str]:
    """A run's events in order as JSON object texts (keys as EVENT_FIELDS), the stored data
    spliced in unparsed: the fast path behind ``show --json/--jsonl``."""
    return event_json(store.iter_event_rows(run_pk, only))


def event_json(rows: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    """Events as ``Store.iter_event_rows`` gives them, as JSON object texts (see above)."""
    quoted: dict[str, str] = {}  # types and levels repeat: encode each once
    for seq, ts, event_type, level, message, data in rows:
        etype = quoted.get(event_type)
        if etype is None:
            etype = quoted[event_type] = json.dumps(event_type)
        text = "null" if message is None else json.dumps(message)
        yield (
            f'{{"seq": {seq}, "ts": "{ts}", "event_type": {etype}, "level": "{level}", '
            f'"message": {text}, "data": {data or "null"}}}'
        )


def run_events(
    store: Store,
    run_pk: int,
    *,
    min_level: str | None = None,
    types: Sequence[str] = (),
    tail: int | None = None,
) -> list[dict[str, Any]]:
    """A run's events in order, optionally at or above a level, of some types, or the last N;
    ``ts`` an aware datetime, ``data`` parsed."""
    only = event_filter(min_level=min_level, types=types, tail=tail)
    found = []
    for event in iter_events(store, run_pk, only):
        event["ts"] = datetime.fromisoformat(event["ts"])
        event["data"] = json.loads(event["data"]) if event["data"] else None
        found.append(event)
    return found


# -- stats ---------------------------------------------------------------------------------------


@dataclass
class JobStats:
    job: str
    runs: int = 0
    completed: int = 0
    failed: int = 0
    running: int = 0
    failure_rate: float | None = None
    p50_ms: int | None = None
    p95_ms: int | None = None
    max_ms: int | None = None
    last_status: str | None = None
    last_started_at: datetime | None = None
    failure_streak: int = 0
    last_success_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        out.update(self.extra)
        return out


STREAK_SCAN = 1000  # a failure streak longer than this is reported as this
_OTHER_THAN_COMPLETED = [s.value for s in RunStatus if s is not RunStatus.COMPLETED]


def stats(
    store: Store,
    *,
    since: datetime | None = None,
    jobs: Sequence[str] = (),
    tags: Sequence[tuple[str, str | None]] = (),
) -> list[dict[str, Any]]:
    """Per-job figures over the window: counts, failure rate, p50/p95/max, streak, last success.

    Percentiles are nearest-rank, found by walking the (job, duration_ms) index with an OFFSET:
    the same answer on every backend, without sorting the table.
    """
    scope = tag_conditions(tags) + ([runs.c.started_at >= since] if since is not None else [])
    in_window = list(scope)
    if jobs:
        in_window.append(runs.c.job.in_(list(jobs)))
    result: dict[str, JobStats] = {}
    with store.read() as conn:
        # Counting by (job, status) in one GROUP BY reads every row of the table (no index has
        # both columns): 2 s on a million runs. Instead: runs per job from an index alone, and
        # only the few runs that did not complete looked up by status; the rest completed.
        totals = conn.execute(
            select(runs.c.job, func.count()).where(*in_window).group_by(runs.c.job)
        )
        for job, n in totals:
            result[job] = JobStats(job, runs=n, completed=n)
        others = conn.execute(
            select(runs.c.job, runs.c.status, func.count())
            .where(*in_window, runs.c.status.in_(_OTHER_THAN_COMPLETED))
            .group_by(runs.c.job, runs.c.status)
        )
        for job, status, n in others:
            st = result[job]
            st.completed -= n
            if status == RunStatus.RUNNING.value:
                st.running += n
            else:
                st.failed += n
        for st in result.values():
            finished = st.completed + st.failed
            st.failure_rate = round(st.failed / finished, 4) if finished else None
            _percentiles(conn, st, scope)
            _recent(conn, st, scope)
    return [result[job].as_dict() for job in sorted(result)]


def _percentiles(conn: Any, st: JobStats, scope: list[Any]) -> None:
    base = [runs.c.job == st.job, runs.c.duration_ms.is_not(None), *scope]
    n = conn.execute(select(func.count()).select_from(runs).where(*base)).scalar_one()
    if not n:
        return
    st.max_ms = int(conn.execute(select(func.max(runs.c.duration_ms)).where(*base)).scalar_one())
    for attr, p in (("p50_ms", 0.50), ("p95_ms", 0.95)):
        rank = max(1, math.ceil(p * n))
        value = conn.execute(
            select(runs.c.duration_ms)
            .where(*base)
            .order_by(runs.c.duration_ms)
            .limit(1)
            .offset(rank - 1)
        ).scalar()
        setattr(st, attr, int(value) if value is not None else None)


def _recent(conn: Any, st: JobStats, scope: list[Any]) -> None:
    base = [runs.c.job == st.job, *scope]
    newest = select(runs.c.status, runs.c.started_at).where(*base)
    newest = newest.order_by(*NEWEST_FIRST)
    last = conn.execute(newest.limit(1)).first()
    if last is not None:
        st.last_status, st.last_started_at = last
    streak = 0
    for (status,) in conn.execute(
        select(runs.c.status)
        .where(*base, runs.c.status != RunStatus.RUNNING.value)
        .order_by(*NEWEST_FIRST)
        .limit(STREAK_SCAN)
    ):
        if status == RunStatus.COMPLETED.value:
            break
        streak += 1
    st.failure_streak = streak
    st.last_success_at = conn.execute(
        select(runs.c.started_at)
        .where(*base, runs.c.status == RunStatus.COMPLETED.value)
        .order_by(*NEWEST_FIRST)
        .limit(1)
    ).scalar()


# -- check ---------------------------------------------------------------------------------------


@dataclass
class CheckResult:
    ok: bool
    reason: str
    run: dict[str, Any] | None = None


def check_job(
    store: Store,
    job: str,
    *,
    max_age_s: float | None = None,
    max_duration_s: float | None = None,
    now: datetime | None = None,
) -> CheckResult:
    """Is ``job`` healthy? Its last finished run completed within ``max_age_s``, and no run of it
    has been running longer than ``max_duration_s``."""
    now = now or datetime.now(timezone.utc)
    with store.read() as conn:
        latest = _one_run(conn, runs.c.job == job)
        if latest is None:
            return CheckResult(False, f"job {job!r} has never run")
        if max_duration_s is not None:
            stuck = _running_too_long(conn, job, max_duration_s, now)
            if stuck is not None:
                return stuck
        last = latest
        if latest["status"] == RunStatus.RUNNING.value:
            finished = _one_run(conn, runs.c.job == job, runs.c.status != RunStatus.RUNNING.value)
            if finished is None:
                return CheckResult(True, f"{job}: first run {latest['run_id']} is running", latest)
            last = finished
    if last["status"] != RunStatus.COMPLETED.value:
        summary = f": {last['error_summary']}" if last["error_summary"] else ""
        code = last["exit_code"]
        said = summary.startswith(f": exit code {code}")  # the summary says it already
        detail = f" (exit {code})" if code is not None and not said else ""
        return CheckResult(
            False, f"last run {last['run_id']} of {job} {last['status']}{detail}{summary}", last
        )
    ended = last["finished_at"] or last["started_at"]
    age_s = (now - ended).total_seconds()
    if max_age_s is not None and age_s > max_age_s:
        return CheckResult(
            False,
            f"last successful run of {job} finished {humane_duration(age_s * 1000)} ago, "
            f"longer than {humane_duration(max_age_s * 1000)}",
            last,
        )
    return CheckResult(
        True,
        f"{job}: last run {last['run_id']} completed {humane_duration(age_s * 1000)} ago "
        f"in {humane_duration(last['duration_ms'])}",
        last,
    )


def _one_run(conn: Any, *conditions: Any, oldest: bool = False) -> dict[str, Any] | None:
    """The newest run (or the oldest) that meets ``conditions``, whole."""
    order = OLDEST_FIRST if oldest else NEWEST_FIRST
    query = select(runs).where(*conditions).order_by(*order).limit(1)
    found = conn.execute(query).mappings().first()
    return dict(found) if found is not None else None


def _running_too_long(
    conn: Any, job: str, max_duration_s: float, now: datetime
) -> CheckResult | None:
    # The oldest live run, not only the newest: a stuck run stays stuck when the next one starts.
    live = _one_run(conn, runs.c.job == job, runs.c.status == RunStatus.RUNNING.value, oldest=True)
    if live is None:
        return None
    running_for = (now - live["started_at"]).total_seconds()
    if running_for <= max_duration_s:
        return None
    return CheckResult(
        False,
        f"run {live['run_id']} of {job} has been running for "
        f"{humane_duration(running_for * 1000)}, longer than "
        f"{humane_duration(max_duration_s * 1000)}",
        live,
    )
