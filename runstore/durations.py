"""Durations as people type them: ``500ms``, ``1s``, ``2m``, ``1h30m``, ``7d``, or plain seconds."""

from __future__ import annotations

import math
import re

from runstore.errors import UsageError

MAX_SECONDS = 100 * 365 * 86400.0  # past this, times and SQL integers overflow
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
ACCEPTED_FORMS = "a number of seconds, or a number with a unit: 500ms, 1s, 2m, 1h, 7d, 2w, 1h30m"

_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d|w)")
_WHOLE = re.compile(rf"(?:(?:{_NUMBER})(?:ms|s|m|h|d|w))+|{_NUMBER}")


def parse_duration(text: str, option: str | None = None) -> float:
    """``text`` in seconds. Raises UsageError, naming ``option`` and the accepted forms, for
    anything else."""
    cleaned = text.strip().lower().replace(" ", "")
    if not _WHOLE.fullmatch(cleaned):
        where = f"{option}: " if option else ""
        raise UsageError(f"{where}cannot read {text!r}; expected {ACCEPTED_FORMS}")
    parts = _PART.findall(cleaned)
    seconds = (
        sum(float(number) * UNITS[unit] for number, unit in parts) if parts else float(cleaned)
    )
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        where = f"{option}: " if option else ""
        raise UsageError(f"{where}{text!r} is too long; the most is 100 years")
    return seconds


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
