"""What people type and read: durations (``500ms``, ``1h30m``, ``7d``), times (``--since 7d``,
``yesterday``, ``2026-11-28T06:00``), ages, sizes and counts, and stored text made safe to show at a
terminal. Parsing raises UsageError naming the option and the accepted forms; formatting never
fails."""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time, timedelta, timezone

from runstore.errors import UsageError

# -- durations -------------------------------------------------------------------------------------

MAX_SECONDS = 100 * 365 * 86400.0  # past this, times and SQL integers overflow
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
DURATION_FORMS = "a number with a unit: 500ms, 1s, 2m, 1h, 7d, 2w, 1h30m"

_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d|w)")
_WHOLE = re.compile(rf"(?:(?:{_NUMBER})(?:ms|s|m|h|d|w))+")
_BARE = re.compile(_NUMBER)


def parse_duration(text: str, option: str | None = None) -> float:
    """``text`` in seconds. A number needs its unit (is ``3`` seconds, minutes or days?), except
    ``0``, which is zero in any. Raises UsageError, naming ``option`` and the accepted forms,
    for anything else."""
    cleaned = text.strip().lower().replace(" ", "")
    where = f"{option}: " if option else ""
    if _BARE.fullmatch(cleaned):
        if float(cleaned) == 0:
            return 0.0
        raise UsageError(
            f"{where}{text.strip()!r} has no unit: say {cleaned}s, {cleaned}m, {cleaned}h or "
            f"{cleaned}d"
        )
    if not _WHOLE.fullmatch(cleaned):
        raise UsageError(f"{where}cannot read {text!r}; expected {DURATION_FORMS}")
    seconds = sum(float(number) * UNITS[unit] for number, unit in _PART.findall(cleaned))
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        where = f"{option}: " if option else ""
        raise UsageError(f"{where}{text!r} is too long; the most is 100 years")
    return seconds


def format_number(value: float) -> str:
    """A number as a person reads it (a metric's value): 1,200 or 0.8125, never 1.2e+03."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.6g}" if abs(value) < 1e15 else f"{value:.6g}"


def format_duration(seconds: float) -> str:
    """A short form that ``parse_duration`` reads back: ``500ms``, ``1.5s``, ``2m``, ``1h30m``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.3g}s" if seconds != int(seconds) else f"{int(seconds)}s"
    whole = round(seconds)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            out += f"{count}{unit}"
    return out


def humane_duration(ms: float | None) -> str:
    """A duration at a glance: ``814ms``, ``12.3s``, ``4m05s``, ``1h02m``, ``3d04h``."""
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


# -- times -----------------------------------------------------------------------------------------

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


def humane_age(moment: datetime, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return humane_duration(max(0.0, (now - moment).total_seconds() * 1000))


def local_time(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


# -- sizes and counts ------------------------------------------------------------------------------


def human_bytes(size: float | None) -> str:
    """``512 B``, ``12.3 KB``, ``4.5 MB``, ``1.2 GB`` (powers of 1024)."""
    if size is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1024 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def plural(n: int, word: str) -> str:
    """``1 run``, ``2,000 runs``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# -- stored text at a terminal ---------------------------------------------------------------------

# Control characters from stored text (a job's output) would move the cursor, retitle or recolour
# the terminal: people see them escaped.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """``text`` with its control characters (all but tab and newline) written as ``\\xNN``."""
    return CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
