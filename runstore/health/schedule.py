"""When a job was due to start: its cron schedule's slots (in its time zone, daylight-saving
days as Debian's cron treats them, all through cronsim), or its period after its last start.

A run counts for a slot when it started at the slot's time or after, or a little before it (a
minute, or half the time between slots when they are closer): clocks and cron drift.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from runstore.health.expectations import Expectation, zone

EARLY = timedelta(minutes=1)


def slots_before(expectation: Expectation, moment: datetime, count: int = 2) -> list[datetime]:
    """The schedule's last ``count`` slots at or before ``moment``, newest first (UTC)."""
    from cronsim import CronSim

    assert expectation.schedule is not None
    local = moment.astimezone(zone(expectation.timezone))
    ticks = CronSim(expectation.schedule, local, reverse=True)
    return [next(ticks).astimezone(timezone.utc) for _ in range(count)]


def next_slot(expectation: Expectation, moment: datetime) -> datetime:
    """The schedule's first slot after ``moment`` (UTC)."""
    from cronsim import CronSim

    assert expectation.schedule is not None
    local = moment.astimezone(zone(expectation.timezone))
    return next(CronSim(expectation.schedule, local)).astimezone(timezone.utc)


def due(
    expectation: Expectation, now: datetime, last_start: datetime | None
) -> tuple[datetime, datetime] | None:
    """The start that should have happened by ``now`` (its grace passed), and the earliest
    start time that counts for it; None when no start is due yet (or the job has no schedule).
    ``last_start`` is the job's newest run's start (a period counts from it)."""
    grace = timedelta(seconds=expectation.grace_s)
    if expectation.every_s is not None:
        since = last_start or expectation.created_at
        if since is None:
            return None
        period = timedelta(seconds=expectation.every_s)
        slot = since + period
        return (slot, slot - min(EARLY, period / 2)) if slot + grace <= now else None
    if expectation.schedule is None:
        return None
    slot, before = slots_before(expectation, now - grace)
    early = min(EARLY, (slot - before) / 2)
    if expectation.created_at is not None and slot < expectation.created_at:
        return None  # expected only from when the expectation was set
    return slot, slot - early


def describe(expectation: Expectation) -> str:
    """The schedule as a person reads it: ``0 3 * * * (at 03:00, Europe/Berlin)``, ``every 1h``."""
    from runstore.humanize import format_duration

    if expectation.every_s is not None:
        return f"every {format_duration(expectation.every_s)}"
    if expectation.schedule is None:
        return "no schedule"
    from cronsim import CronSim

    said = CronSim(expectation.schedule, datetime.now(timezone.utc)).explain()
    said = said[:1].lower() + said[1:]  # "At 03:00 every day", inside a sentence
    return f"{expectation.schedule} ({said}, {expectation.timezone or 'UTC'})"
