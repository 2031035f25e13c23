"""What is expected of a job, kept in the store (the ``jobs`` table) so every host sharing it
sees the same: when it should start (a cron expression in a time zone, or a period), how late it
may be (grace), how long it may run, and whom to tell when its state changes.

``runstore job set/list/show/rm`` edit them one by one; ``runstore job apply jobs.toml`` sets
them from a file kept in git.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, insert, select, update

from runstore.errors import UsageError
from runstore.humanize import parse_duration
from runstore.record.ids import check_job
from runstore.store.schema import jobs
from runstore.store.store import Store

# A host name (with a dot), an IPv4 address or localhost, with a port or not: shown beside an
# alert; anything else in that place may be a token.
_HOST = re.compile(r"(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)(?::\d+)?")

# A target that runs a shell command (the alert as JSON on stdin); any other is an Apprise URL.
COMMAND_PREFIX = "command:"


@dataclass(frozen=True)
class Expectation:
    """One job's expectations. ``schedule`` (cron, in ``timezone``, UTC by default) and
    ``every_s`` (a period) exclude each other; without either, a job is never late. Bad values
    are usage errors, found here."""

    job: str
    schedule: str | None = None
    timezone: str | None = None
    every_s: int | None = None
    grace_s: int = 0
    max_duration_s: int | None = None
    notify: tuple[str, ...] = ()
    alert_trends: bool = False
    created_at: datetime | None = None
    # As last judged (see ``states``); alerts are sent when it changes.
    state: str | None = field(default=None, compare=False)
    state_since: datetime | None = field(default=None, compare=False)
    state_reason: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_job(self.job)
        if self.schedule is not None and self.every_s is not None:
            raise UsageError("give --schedule or --every, not both")
        if self.timezone is not None and self.schedule is None:
            raise UsageError("--tz is the schedule's time zone: give a --schedule too")
        if self.schedule is not None:
            _check_cron(self.schedule)
        if self.timezone is not None:
            zone(self.timezone)
        for name, value, low in (("every", self.every_s, 1), ("grace", self.grace_s, 0),
                                 ("max-duration", self.max_duration_s, 1)):  # fmt: skip
            if value is not None and value < low:
                raise UsageError(f"--{name} must be at least {low}s")
        for target in self.notify:
            check_target(target)

    @property
    def is_scheduled(self) -> bool:
        return self.schedule is not None or self.every_s is not None


def zone(name: str | None) -> Any:
    """The time zone an IANA name gives (UTC for None)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name is None:
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {name!r} (an IANA name: Europe/Berlin, UTC)") from None


def _check_cron(expression: str) -> None:
    from cronsim import CronSim, CronSimError

    if len(expression.split()) != 5:
        raise UsageError(
            f"schedule {expression!r}: a cron expression has five fields "
            "(minute hour day-of-month month day-of-week), such as '0 3 * * *'"
        )
    try:
        CronSim(expression, datetime.now(timezone.utc))
    except CronSimError as exc:
        raise UsageError(f"schedule {expression!r}: {exc}") from None


def check_target(target: str) -> None:
    """An alert target: ``command:CMD`` (run by sh, the alert on stdin) or an Apprise URL."""
    if target.startswith(COMMAND_PREFIX):
        if not target[len(COMMAND_PREFIX) :].strip():
            raise UsageError("--notify command: give the command after 'command:'")
        return
    if "://" not in target:
        raise UsageError(
            f"--notify {target!r}: give an Apprise URL (json://host/path, mailto://..., "
            "ntfy://topic) or command:CMD"
        )


def shown_target(target: str) -> str:
    """A target as it is shown and kept in the notifications table: without its secrets (an
    Apprise URL keeps its scheme and host, a command its first word)."""
    if target.startswith(COMMAND_PREFIX):
        words = target[len(COMMAND_PREFIX) :].split()
        return f"{COMMAND_PREFIX}{words[0]}" + (" …" if len(words) > 1 else "")
    scheme, _, rest = target.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    if not _HOST.fullmatch(host):  # slack://TokenA/..., tgram://BOTTOKEN/...: a secret there
        return f"{scheme}://…"
    more = rest.split("/", 1)[1] if "/" in rest else ""
    return f"{scheme}://{host}" + ("/…" if more.strip("/") else "")


# -- the store -------------------------------------------------------------------------------------


def load(store: Store, job: str) -> Expectation | None:
    with store.read() as conn:
        row = conn.execute(select(jobs).where(jobs.c.name == job)).mappings().first()
    return _from_row(dict(row)) if row is not None else None


def load_all(store: Store) -> list[Expectation]:
    with store.read() as conn:
        rows = conn.execute(select(jobs).order_by(jobs.c.name)).mappings().all()
    return [_from_row(dict(row)) for row in rows]


def save(store: Store, expectation: Expectation, now: datetime | None = None) -> str:
    """Insert or update a job's expectations (its judged state stays); says which it did:
    ``new``, ``changed`` or ``unchanged``."""
    now = now or datetime.now(timezone.utc)
    values = {
        "schedule": expectation.schedule,
        "timezone": expectation.timezone,
        "every_s": expectation.every_s,
        "grace_s": expectation.grace_s,
        "max_duration_s": expectation.max_duration_s,
        "notify": list(expectation.notify),
        "alert_trends": expectation.alert_trends,
    }

    def work(conn: Any) -> str:
        row = conn.execute(select(jobs).where(jobs.c.name == expectation.job)).mappings().first()
        if row is None:
            conn.execute(
                insert(jobs).values(name=expectation.job, created_at=now, updated_at=now, **values)
            )
            return "new"
        if replace(_from_row(dict(row)), created_at=None) == replace(expectation, created_at=None):
            return "unchanged"
        conn.execute(update(jobs).where(jobs.c.id == row["id"]).values(updated_at=now, **values))
        return "changed"

    return store.write(work)


def remove(store: Store, job: str) -> bool:
    """Forget a job's expectations (its runs and the alerts sent stay); whether it had any."""
    return bool(store.write(lambda conn: conn.execute(delete(jobs).where(jobs.c.name == job))
                            .rowcount))  # fmt: skip


def _from_row(row: dict[str, Any]) -> Expectation:
    return Expectation(
        job=row["name"],
        schedule=row["schedule"],
        timezone=row["timezone"],
        every_s=row["every_s"],
        grace_s=row["grace_s"] or 0,
        max_duration_s=row["max_duration_s"],
        notify=tuple(row["notify"] or ()),
        alert_trends=bool(row["alert_trends"]),
        created_at=row["created_at"],
        state=row["state"],
        state_since=row["state_since"],
        state_reason=row["state_reason"],
    )


# -- jobs.toml -------------------------------------------------------------------------------------

_TOML_KEYS = {
    "schedule", "tz", "timezone", "every", "grace", "max_duration", "max-duration", "notify",
    "alert_trends", "alert-trends",
}  # fmt: skip


def read_toml(path: str | os.PathLike[str]) -> list[Expectation]:
    """The jobs a TOML file describes, one ``[jobs.NAME]`` table each::

    [jobs.nightly-backup]
    schedule = "0 3 * * *"
    tz = "Europe/Berlin"
    grace = "30m"
    max_duration = "2h"
    notify = ["ntfy://ops-alerts", "command:/usr/local/bin/page-oncall"]
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise UsageError(f"cannot read {os.fspath(path)}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{os.fspath(path)} is not valid TOML: {exc}") from None
    tables = document.get("jobs")
    unknown = set(document) - {"jobs"}
    if unknown or not isinstance(tables, dict):
        raise UsageError(f"{os.fspath(path)}: give each job as a [jobs.NAME] table")
    return [_from_toml(os.fspath(path), name, table) for name, table in tables.items()]


def _from_toml(path: str, name: str, table: Any) -> Expectation:
    where = f"{path}: [jobs.{name}]"
    if not isinstance(table, dict):
        raise UsageError(f"{where} is not a table")
    unknown = sorted(set(table) - _TOML_KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}")

    def duration(*keys: str) -> int | None:
        value = next((table[k] for k in keys if k in table), None)
        if value is None:
            return None
        if not isinstance(value, str):
            raise UsageError(f'{where}: {keys[0]} takes a duration with a unit, such as "30m"')
        return round(parse_duration(value, f"{where}: {keys[0]}"))

    notify = table.get("notify", [])
    if isinstance(notify, str):
        notify = [notify]
    if not isinstance(notify, list) or not all(isinstance(t, str) for t in notify):
        raise UsageError(f"{where}: notify takes a list of targets")
    try:
        return Expectation(
            job=name,
            schedule=table.get("schedule"),
            timezone=table.get("tz", table.get("timezone")),
            every_s=duration("every"),
            grace_s=duration("grace") or 0,
            max_duration_s=duration("max_duration", "max-duration"),
            notify=tuple(notify),
            alert_trends=bool(table.get("alert_trends", table.get("alert-trends", False))),
        )
    except UsageError as exc:
        raise UsageError(f"{where}: {exc.detail}") from None


def apply(
    store: Store, wanted: Sequence[Expectation], *, remove_others: bool = False
) -> dict[str, list[str]]:
    """Make the store's expectations those of ``wanted`` (a file's); the jobs not in it are
    kept unless ``remove_others``. Returns the job names by what happened to them."""
    done: dict[str, list[str]] = {"new": [], "changed": [], "unchanged": [], "removed": [],
                                  "kept": []}  # fmt: skip
    for expectation in wanted:
        done[save(store, expectation)].append(expectation.job)
    named = {e.job for e in wanted}
    for other in _names(load_all(store)):
        if other not in named:
            if remove_others:
                remove(store, other)
                done["removed"].append(other)
            else:
                done["kept"].append(other)
    return done


def _names(expectations: Iterable[Expectation]) -> list[str]:
    return [e.job for e in expectations]
