"""Reading the times and durations people type: ``--since 7d``, ``--until 2026-11-01``,
``--min-duration 5s``."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

# Durations are read in one place; re-exported here for the time filters' callers.
from runstore.durations import ACCEPTED_FORMS as DURATION_FORMS  # noqa: F401
from runstore.durations import parse_duration
from runstore.errors import UsageError

_AGE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
_ISO_START = re.compile(r"\d{4}-\d{2}")  # 2026-11-28...: a date, not an age

WHEN_FORMS = (
    "a relative age (30m, 12h, 7d, 2w, 1h30m), today, yesterday, or an ISO date/time "
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
    try:
        if value and value[0].isdigit() and not _ISO_START.match(value):
            if value[-1].isdigit() or not _AGE.fullmatch(value.replace(" ", "")):
                raise ValueError(value)  # "7": seven what? "7 days": say 7d
            return now - timedelta(seconds=parse_duration(value, option))  # 7d, 1h30m, ...
        try:
            cleaned = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
            parsed = datetime.fromisoformat(cleaned)
        except ValueError:
            parsed = datetime.combine(date.fromisoformat(text.strip()), time())
        if parsed.tzinfo is None:
            parsed = parsed.astimezone()  # local time
        return parsed.astimezone(timezone.utc)
    except UsageError:
        raise
    except (ValueError, OverflowError):
        raise UsageError(f"{option}: cannot read {text!r}; expected {WHEN_FORMS}") from None


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
