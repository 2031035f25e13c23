"""The one state a job is in, and why: ``judge`` looks at its expectations (if it has any) and
its newest runs; ``judge_all`` at every job that has expectations.

In the order they win when several hold: ``running-long`` (a run over --max-duration),
``late`` (a due start plus grace passed with no run started), ``failed`` (the last finished run
did not complete), ``flaky``, ``slower``, ``faster`` (see ``trends``), ``new`` (never ran, not
yet due), else ``ok``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select

from runstore.health import PROBLEMS, TRENDS, schedule, trends
from runstore.health.expectations import Expectation, load, load_all
from runstore.humanize import format_duration, humane_duration
from runstore.store.schema import NEWEST_FIRST, RunStatus, runs
from runstore.store.store import Store

# The newest runs a judgement reads: enough for the trends.
WINDOW = trends.RECENT + trends.BASELINE
_RUN_FIELDS = (runs.c.run_id, runs.c.status, runs.c.started_at, runs.c.finished_at,
               runs.c.duration_ms, runs.c.exit_code, runs.c.error_summary, runs.c.host)  # fmt: skip


@dataclass
class JobState:
    """A job's state, why (one line), and what it was judged from."""

    job: str
    state: str
    reason: str
    expectation: Expectation | None = None
    last_run: dict[str, Any] | None = None
    due_at: datetime | None = None  # the start a late job missed
    trend: trends.Trend | None = None
    flaky: bool = False

    @property
    def trend_label(self) -> str:
        """``slower +45%``, ``faster -60%``, ``flaky``, or nothing."""
        return "flaky" if self.flaky else str(self.trend) if self.trend else ""

    @property
    def is_problem(self) -> bool:
        alert_trends = self.expectation is not None and self.expectation.alert_trends
        return self.state in PROBLEMS or (alert_trends and self.state in TRENDS)

    def as_dict(self) -> dict[str, Any]:
        last = self.last_run or {}
        return {
            "job": self.job,
            "state": self.state,
            "reason": self.reason,
            "problem": self.is_problem,
            "last_run_id": last.get("run_id"),
            "last_status": last.get("status"),
            "last_started_at": last.get("started_at"),
            "due_at": self.due_at,
            "trend": self.trend_label or None,
            "schedule": schedule.describe(self.expectation) if self.expectation else None,
        }


def judge(
    store: Store, job: str, expectation: Expectation | None, now: datetime | None = None
) -> JobState:
    """``job``'s state at ``now``; without expectations it cannot be late or running long."""
    now = now or store.now()
    with store.read() as conn:
        recent = [
            dict(r)
            for r in conn.execute(
                select(*_RUN_FIELDS).where(runs.c.job == job).order_by(*NEWEST_FIRST).limit(WINDOW)
            ).mappings()
        ]
        oldest_running = conn.execute(
            select(func.min(runs.c.started_at)).where(
                runs.c.job == job, runs.c.status == RunStatus.RUNNING.value
            )
        ).scalar()
    return decide(job, expectation, recent, oldest_running, now)


def decide(
    job: str,
    expectation: Expectation | None,
    recent: list[dict[str, Any]],
    oldest_running: datetime | None,
    now: datetime,
) -> JobState:
    """The state from what was read (pure): ``recent`` runs newest first, the start of the
    oldest run still running."""
    exp = expectation
    last = recent[0] if recent else None
    finished = [r for r in recent if r["status"] != RunStatus.RUNNING.value]
    state = JobState(job, "ok", "", exp, last)
    completed = [r for r in finished if r["status"] == RunStatus.COMPLETED.value]
    durations = [r["duration_ms"] for r in completed if r["duration_ms"] is not None]
    state.trend = trends.duration_trend(durations)
    state.flaky = trends.is_flaky([r["status"] == RunStatus.COMPLETED.value for r in finished])
    if exp is not None and exp.max_duration_s is not None and oldest_running is not None:
        running_for = now - oldest_running
        if running_for > timedelta(seconds=exp.max_duration_s):
            state.state = "running-long"
            state.reason = (
                f"running for {humane_duration(running_for.total_seconds() * 1000)}, longer "
                f"than {format_duration(exp.max_duration_s)}"
            )
            return state
    if exp is not None:
        owed = schedule.due(exp, now, last["started_at"] if last else None)
        if owed is not None and (last is None or last["started_at"] < owed[1]):
            state.state, state.due_at = "late", owed[0]
            state.reason = _late_reason(exp, owed[0], now, last)
            return state
    if finished and finished[0]["status"] != RunStatus.COMPLETED.value:
        bad = finished[0]
        summary = f": {bad['error_summary']}" if bad["error_summary"] else ""
        state.state = "failed"
        state.reason = f"last run {bad['run_id']} {bad['status']}{summary}"
        return state
    if state.flaky:
        failures = sum(r["status"] != "completed" for r in finished[: trends.FLAKY_WINDOW])
        state.state = "flaky"
        state.reason = f"{failures} of the last {min(len(finished), trends.FLAKY_WINDOW)} " \
            "runs failed, on and off"  # fmt: skip
    elif state.trend is not None:
        t = state.trend
        state.state = t.kind
        state.reason = (
            f"median of the last {trends.RECENT} runs {humane_duration(t.recent)}, "
            f"{abs(t.change):.0%} {'more' if t.kind == 'slower' else 'less'} than before "
            f"({humane_duration(t.baseline)})"
        )
    elif last is None:
        state.state = "new"
        state.reason = "never ran" + (_next_reason(exp, now) if exp is not None else "")
    else:
        when = last["finished_at"] or last["started_at"]
        state.reason = f"last run {last['run_id']} {last['status']} " + (
            f"{humane_duration((now - when).total_seconds() * 1000)} ago"
        )
    return state


def _late_reason(
    exp: Expectation, due_at: datetime, now: datetime, last: dict[str, Any] | None
) -> str:
    local = due_at.astimezone(schedule.zone(exp.timezone) if exp.schedule else timezone.utc)
    late_by = humane_duration((now - due_at).total_seconds() * 1000)
    since = (
        f"last start {last['started_at'].astimezone(local.tzinfo):%Y-%m-%d %H:%M}"
        if last is not None
        else "never ran"
    )
    where = f" {exp.timezone or 'UTC'}" if exp.schedule else ""
    return f"expected to start at {local:%Y-%m-%d %H:%M}{where}, {late_by} ago ({since})"


def _next_reason(exp: Expectation, now: datetime) -> str:
    if exp.schedule is not None:
        nxt = schedule.next_slot(exp, now).astimezone(schedule.zone(exp.timezone))
        return f"; first expected at {nxt:%Y-%m-%d %H:%M} {exp.timezone or 'UTC'}"
    if exp.every_s is not None and exp.created_at is not None:
        nxt = exp.created_at + timedelta(seconds=exp.every_s + exp.grace_s)
        return f"; due by {nxt:%Y-%m-%d %H:%M} UTC"
    return ""


def judge_all(store: Store, now: datetime | None = None) -> list[JobState]:
    """Every job with expectations, judged at one moment."""
    now = now or store.now()
    return [judge(store, exp.job, exp, now) for exp in load_all(store)]


def judge_one(store: Store, job: str, now: datetime | None = None) -> JobState:
    """One job, by its stored expectations when it has them."""
    return judge(store, job, load(store, job), now)
