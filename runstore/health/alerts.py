"""Alerts on a change of state, never per failure: ok -> failed, failed -> ok ("recovered"),
-> late, -> running-long (and -> slower, faster or flaky for a job that asks for trends).

``decide`` moves a job's stored state in one transaction that also writes a ``notifications``
row per target: the state moves only from what it was read as, so of two hosts or overlapping
checks that see the same change, one moves it and alerts, the others find it moved. Sending
happens after the commit; each row then says how it went (``sent`` or ``failed``, and why). A
failing target is recorded, never raised: alerting must not change a job's exit code.

Targets: ``command:CMD`` runs CMD with ``sh -c``, the alert as JSON on stdin (no dependency);
anything else is an Apprise URL (``pip install 'runstore[notify]'``): email, Slack, ntfy,
Telegram, generic ``json://`` webhooks and the rest.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any

from sqlalchemy import insert, update

from runstore.health import SAID
from runstore.health.expectations import COMMAND_PREFIX, Expectation, load, shown_target
from runstore.health.states import JobState, judge
from runstore.store.limits import MAX_ERROR_SUMMARY
from runstore.store.schema import jobs, notifications
from runstore.store.store import Store

COMMAND_TIMEOUT_S = 30.0
RECOVERED = "recovered"


@dataclass
class Alert:
    """One change of state to tell each of a job's targets about; ``rows`` are the ids of its
    notifications rows, target by target."""

    job: str
    state: str  # the new state, RECOVERED when it left a problem for ok, or "test"
    previous: str | None
    reason: str
    at: datetime
    run: dict[str, Any] | None
    targets: Sequence[str]
    rows: list[int] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The alert as JSON gives it to a command target (and as the README documents it)."""
        run = self.run or {}
        started = run.get("started_at")
        return {
            "job": self.job,
            "state": self.state,
            "previous_state": self.previous,
            "reason": self.reason,
            "at": self.at.isoformat(),
            "run_id": run.get("run_id"),
            "run_status": run.get("status"),
            "run_started_at": started.isoformat() if started is not None else None,
            "host": run.get("host"),
            "problem": self.state not in (RECOVERED, "test"),
        }

    @property
    def title(self) -> str:
        if self.state == RECOVERED:
            return f"runstore: {self.job} recovered"
        if self.state == "test":
            return f"runstore: test alert for {self.job}"
        return f"runstore: {self.job} {SAID.get(self.state, self.state)}"


@dataclass
class Outcome:
    """How telling one target went."""

    job: str
    target: str  # as shown
    state: str
    sent: bool
    detail: str | None = None


def is_alerting(state: str | None, expectation: Expectation) -> bool:
    from runstore.health import PROBLEMS, TRENDS

    return state in PROBLEMS or (expectation.alert_trends and state in TRENDS)


def decide(store: Store, judged: JobState, now: datetime) -> Alert | None:
    """Move the job's stored state to ``judged``'s, if it still is what was read; the alert to
    send when the change is one to tell (rows written in the same transaction)."""
    expectation = judged.expectation
    if expectation is None or judged.state == expectation.state:
        return None
    before, after = expectation.state, judged.state
    alert = None
    if is_alerting(after, expectation):
        alert = Alert(judged.job, after, before, judged.reason, now, judged.last_run,
                      expectation.notify)  # fmt: skip
    elif is_alerting(before, expectation):
        reason = f"{before} before; now {after}: {judged.reason}"
        alert = Alert(judged.job, RECOVERED, before, reason, now, judged.last_run,
                      expectation.notify)  # fmt: skip

    def work(conn: Any) -> bool:
        same = jobs.c.state.is_(None) if before is None else jobs.c.state == before
        moved = conn.execute(
            update(jobs)
            .where(jobs.c.name == judged.job, same)
            .values(state=after, state_since=now, state_reason=judged.reason[:MAX_ERROR_SUMMARY])
        ).rowcount
        if not moved:
            return False  # another check or host moved it first, and tells
        if alert is not None:
            alert.rows = _pending_rows(conn, alert)
        return True

    return alert if store.write(work) and alert is not None and alert.targets else None


def _pending_rows(conn: Any, alert: Alert) -> list[int]:
    ids = []
    for target in alert.targets:
        result = conn.execute(
            insert(notifications)
            .values(
                job=alert.job,
                state=alert.state,
                previous_state=alert.previous,
                reason=alert.reason[:MAX_ERROR_SUMMARY],
                created_at=alert.at,
                target=shown_target(target),
                outcome="pending",
            )
            .returning(notifications.c.id)
        )
        ids.append(result.scalar_one())
    return ids


def send(store: Store, alert: Alert) -> list[Outcome]:
    """Tell each target; record each outcome in its notifications row."""
    outcomes = []
    for target, row in zip(alert.targets, alert.rows):
        try:
            _send_one(target, alert)
            outcome = Outcome(alert.job, shown_target(target), alert.state, True)
        except Exception as exc:  # a target's failure is recorded, never raised
            outcome = Outcome(alert.job, shown_target(target), alert.state, False, _said(exc))
        outcomes.append(outcome)
        said = (
            update(notifications)
            .where(notifications.c.id == row)
            .values(outcome="sent" if outcome.sent else "failed", detail=outcome.detail)
        )
        store.write(partial(_execute, said))
    return outcomes


def _execute(statement: Any, conn: Any) -> None:
    conn.execute(statement)


class TargetFailed(Exception):
    """A target did not take the alert."""


def _said(exc: Exception) -> str:
    from runstore.errors import describe

    return str(exc) if isinstance(exc, TargetFailed) else describe(exc)


def _send_one(target: str, alert: Alert) -> None:
    if target.startswith(COMMAND_PREFIX):
        _run_command(target[len(COMMAND_PREFIX) :], alert)
    else:
        _send_apprise(target, alert)


def _run_command(command: str, alert: Alert) -> None:
    payload = json.dumps(alert.document(), default=str) + "\n"
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", command], input=payload, capture_output=True, text=True,
            timeout=COMMAND_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise TargetFailed(f"no answer within {COMMAND_TIMEOUT_S:g}s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        raise TargetFailed(f"exit code {done.returncode}" + (f": {last}" if last else ""))


def _send_apprise(url: str, alert: Alert) -> None:
    try:
        import apprise
    except ModuleNotFoundError:
        raise TargetFailed("Apprise is not installed: pip install 'runstore[notify]'") from None
    notifier = apprise.Apprise()
    if not notifier.add(url):
        raise TargetFailed(f"not a URL Apprise can send to: {shown_target(url)}")
    kind = {RECOVERED: apprise.NotifyType.SUCCESS, "test": apprise.NotifyType.INFO}.get(
        alert.state, apprise.NotifyType.FAILURE
    )
    with apprise.LogCapture(level=apprise.logging.WARNING, fmt="%(message)s") as said:
        sent = notifier.notify(title=alert.title, body=_body(alert), notify_type=kind)
    if not sent:
        lines = [line for line in said.getvalue().splitlines() if line.strip()]
        raise TargetFailed(lines[-1].strip() if lines else "Apprise could not send it")


def _body(alert: Alert) -> str:
    doc = alert.document()
    lines = [alert.reason]
    if doc["run_id"]:
        lines.append(f"run {doc['run_id']} ({doc['run_status']}) on {doc['host'] or '?'}")
    lines.append(f"state: {doc['previous_state'] or 'none'} -> {alert.state}")
    return "\n".join(lines)


# -- who calls it ----------------------------------------------------------------------------------


def notify(store: Store, judged: Sequence[JobState], now: datetime) -> list[Outcome]:
    """``check --all --notify``: move each judged job's state, and send what changed."""
    outcomes = []
    for state in judged:
        alert = decide(store, state, now)
        if alert is not None:
            outcomes += send(store, alert)
    return outcomes


def after_run(store: Store, job: str, now: datetime | None = None) -> list[Outcome]:
    """The recording process, as its run finishes: judge the job (if it has expectations) and
    tell of a change. Cheap when it has none: one lookup."""
    expectation = load(store, job)
    if expectation is None:
        return []
    now = now or store.now()
    return notify(store, [judge(store, job, expectation, now)], now)


def send_test(store: Store, job: str, now: datetime | None = None) -> list[Outcome]:
    """``runstore job test``: a test alert to each of the job's targets, recorded as sent."""
    from runstore.errors import UsageError

    expectation = load(store, job)
    if expectation is None:
        raise UsageError(f"job {job!r} has no expectations: runstore job set {job} ...")
    if not expectation.notify:
        raise UsageError(f"job {job!r} has no alert targets: runstore job set {job} --notify ...")
    now = now or datetime.now(timezone.utc)
    reason = "a test alert sent by runstore job test; nothing is wrong"
    alert = Alert(job, "test", expectation.state, reason, now, None, expectation.notify)
    alert.rows = store.write(lambda conn: _pending_rows(conn, alert))
    return send(store, alert)


def recent_alerts(store: Store, job: str, limit: int = 10) -> list[dict[str, Any]]:
    """The alerts sent for ``job``, the newest first, with how each went."""
    from sqlalchemy import select

    query = (
        select(notifications)
        .where(notifications.c.job == job)
        .order_by(notifications.c.created_at.desc(), notifications.c.id.desc())
        .limit(limit)
    )
    with store.read() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]
