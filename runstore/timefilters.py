"""Reading the times and durations people type: ``--since 7d``, ``--until 2026-11-01``,
``--min-duration 5s``."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

# Durations are read in one place; re-exported here for the time filters' callers.
from runstore.durations import ACCEPTED_FORMS as DURATION_FORMS  # noqa: F401
from runstore.durations import parse_duration  # noqa: F401
from runstore.errors import UsageError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AMOUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$", re.IGNORECASE)

WHEN_FORMS = (
    "a relative age (30m, 12h, 7d, 2w), today, yesterday, or an ISO date/time "
    "(2026-11-28, 2026-11-28T06:00, 2026-11-28T06:00Z)"
)


def parse_when(text: str, option: str = "--since", now: datetime | None = None) -> datetime:
    """An aware UTC datetime for a --since/--until value.

    Dates and times without an offset are local time, as a person at this machine means them.
    """
    now = now or datetime.now(timezone.utc)
    value = text.strip().lower()
    if value in ("today", "yesterday"):
        day = now.astimezone().date() - timedelta(days=1 if value == "yesterday" else 0)
        # Local midnight with that day's own UTC offset (not now's: they differ on DST days).
        return datetime.combine(day, time()).astimezone(timezone.utc)
    if value == "now":
        return now
    match = _AMOUNT.match(value)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
        return now - timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(text.strip()), time())
        except ValueError:
            raise UsageError(f"{option}: cannot read {text!r}; expected {WHEN_FORMS}") from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time
    return parsed.astimezone(timezone.utc)


def humane_duration(ms: float | None) -> str:
    """``814ms``, ``12.3s``, ``4m05s``, ``1h02m``, ``3d04h``."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{int(ms)}ms"
    seconds = ms / 1000
    if seconds < 59.95:  # 59.96 s would show as "60.0s"
        return f"{seconds:.1f}s"
    minutes, sec = divmod(max(60, int(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def humane_age(moment: datetime, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return humane_duration(max(0.0, (now - moment).total_seconds() * 1000))


def local_time(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
