"""Whether a job is getting slower, faster or flaky: pure rules over its recent runs, robust to
one outlier (medians, counts), with their constants here and in the README.

- **slower / faster**: the median duration of the last ``RECENT`` completed runs against the
  median of the ``BASELINE`` completed runs before them (at least ``MIN_BASELINE`` of them): at
  least ``SLOWER_RATIO`` times it (or at most ``FASTER_RATIO`` times it), and ``MIN_CHANGE_MS``
  apart. One slow run cannot move a median of five; a job of milliseconds does not trip it by
  jitter.
- **up / down** (a metric, ``runstore metric``): the median of its last ``RECENT`` values
  against the median of the ``BASELINE`` before them (at least ``METRIC_MIN_BASELINE``), at
  least ``METRIC_CHANGE`` (20%) apart.
- **flaky**: among the last ``FLAKY_WINDOW`` finished runs, at least ``FLAKY_MIN_FAILURES``
  failures and at least ``FLAKY_MIN_FLIPS`` changes between success and failure.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

RECENT = 5
BASELINE = 20
MIN_BASELINE = 10
SLOWER_RATIO = 1.5
FASTER_RATIO = 0.5
MIN_CHANGE_MS = 1000
FLAKY_WINDOW = 10
FLAKY_MIN_FAILURES = 3
FLAKY_MIN_FLIPS = 4
METRIC_MIN_BASELINE = 5
METRIC_CHANGE = 0.2


@dataclass(frozen=True)
class Trend:
    """A trend: ``kind`` (slower or faster for durations, up or down for a metric), ``change``
    as a fraction (+0.45 is 45% slower, or higher), and the two medians it compares."""

    kind: str
    change: float
    recent: float
    baseline: float

    def __str__(self) -> str:
        return f"{self.kind} {self.change:+.0%}"


def duration_trend(durations_ms: Sequence[int | float]) -> Trend | None:
    """The trend of completed runs' durations, newest first; None when steady or too few."""
    recent, baseline = durations_ms[:RECENT], durations_ms[RECENT : RECENT + BASELINE]
    if len(recent) < RECENT or len(baseline) < MIN_BASELINE:
        return None
    now, before = statistics.median(recent), statistics.median(baseline)
    if before <= 0 or abs(now - before) < MIN_CHANGE_MS:
        return None
    if now >= before * SLOWER_RATIO:
        return Trend("slower", now / before - 1, now, before)
    if now <= before * FASTER_RATIO:
        return Trend("faster", now / before - 1, now, before)
    return None


def metric_trend(values: Sequence[float]) -> Trend | None:
    """The trend of a metric's values over a job's runs, newest first; None when steady (within
    METRIC_CHANGE), too few, or around zero."""
    recent, baseline = values[:RECENT], values[RECENT : RECENT + BASELINE]
    if len(recent) < RECENT or len(baseline) < METRIC_MIN_BASELINE:
        return None
    now, before = statistics.median(recent), statistics.median(baseline)
    if before == 0:
        return None
    change = (now - before) / abs(before)
    if abs(change) < METRIC_CHANGE:
        return None
    return Trend("up" if change > 0 else "down", change, now, before)


def is_flaky(completed: Sequence[bool]) -> bool:
    """Whether the last finished runs (newest first; True for completed) flip between success
    and failure, again and again."""
    window = list(completed[:FLAKY_WINDOW])
    failures = window.count(False)
    flips = sum(1 for a, b in itertools.pairwise(window) if a != b)
    return failures >= FLAKY_MIN_FAILURES and flips >= FLAKY_MIN_FLIPS
