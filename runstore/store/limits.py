"""What a value may hold on its way into the store, known without loading SQLAlchemy: the sizes
the schema gives its columns (``schema`` builds them from these), and the one rule for text."""

from __future__ import annotations

import math
import re

# The longest values these columns take (PostgreSQL refuses longer ones).
MAX_RUN_ID = 64
MAX_JOB = 200
MAX_ERROR_SUMMARY = 500
MAX_EVENT_TYPE = 64
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 200
MAX_METRIC = 64
# An event's level, least to most severe.
LEVELS = ("debug", "info", "warning", "error")


def storable_text(text: str) -> str:
    """Text as the store keeps it: PostgreSQL text cannot hold NUL (one refused event would block
    every later flush), so a NUL is written as the four characters ``\\x00``."""
    return text.replace("\x00", "\\x00") if "\x00" in text else text


# A tag key or a metric name: env, team, rows_loaded, disk.used:bytes.
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*\Z")


def metric_problem(name: object, value: object, step: object = None) -> str | None:
    """What is wrong with a metric (a name, a finite number, a whole-number step), if anything."""
    if not isinstance(name, str) or not NAME.match(name) or len(name) > MAX_METRIC:
        return f"metric name {name!r}: 1-{MAX_METRIC} letters, digits or _.:-"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"metric {name}: the value must be a finite number (got {value!r})"
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        return f"metric {name}: a step is a whole number (got {step!r})"
    return None
