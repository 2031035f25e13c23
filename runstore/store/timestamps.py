"""Times as the store keeps them: UTC, to the microsecond. SQLite holds them as sortable text
(``YYYY-MM-DD HH:MM:SS.ffffff``) that its date functions understand, PostgreSQL as timestamptz.
The hot path hands over ``time.time_ns()`` integers, formatted here far cheaper than datetimes."""

from __future__ import annotations

import time
from datetime import datetime, timezone


def sqlite_timestamp(moment: datetime) -> str:
    """A UTC time as SQLite stores it: sortable text that SQLite's date functions understand."""
    # isoformat with a fixed timespec is several times faster than strftime, same text.
    return moment.astimezone(timezone.utc).isoformat(" ", "microseconds")[:26]


# The last second formatted by sqlite_timestamp_ns, and its text.
_second: tuple[int, str] = (-1, "")


def sqlite_timestamp_ns(nanoseconds: int) -> str:
    """``sqlite_timestamp`` for a time given as ``time.time_ns()``: the same text, several times
    faster, as the date and time of day are formatted once per second."""
    global _second
    seconds, micros = divmod(nanoseconds // 1000, 1_000_000)
    second = _second
    if second[0] != seconds:
        second = _second = (seconds, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)))
    return f"{second[1]}.{micros:06d}"


def datetime_from_ns(nanoseconds: int) -> datetime:
    """An aware UTC datetime for a time given as ``time.time_ns()``, to the microsecond."""
    seconds, micros = divmod(nanoseconds // 1000, 1_000_000)
    return datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=micros)


def sqlite_time(moment: datetime | int) -> str:
    """A time (aware datetime or nanoseconds) as SQLite stores it."""
    return sqlite_timestamp_ns(moment) if isinstance(moment, int) else sqlite_timestamp(moment)


def server_time(moment: datetime | int) -> datetime:
    """A time (aware datetime or nanoseconds) as a server driver takes it."""
    return datetime_from_ns(moment) if isinstance(moment, int) else moment
