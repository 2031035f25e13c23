"""What the pages and the JSON API show, assembled from the library (``history.browse``,
``health``): the overview's rows, the history filters read from a query string, the keyset
cursor, a run's events as rows to show, the comparison of two runs' output."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runstore.errors import UsageError
from runstore.health.expectations import load_all
from runstore.health.states import WINDOW, decide
from runstore.history import browse
from runstore.history.queries import HistoryFilter, wanted_statuses
from runstore.humanize import parse_duration, parse_when
from runstore.store.schema import RunStatus
from runstore.store.store import Store

# The overview's figures cover each job's newest runs: a bounded read, whatever its history.
OVERVIEW_RUNS = 100
STRIP_RUNS = 30
PAGE_SIZE = 50
EVENTS_PAGE = 500
MAX_EVENTS_PAGE = 5000


def nearest_rank(values: Sequence[int], percent: int) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * percent // 100) - 1)]


def overview(store: Store, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every job (with runs, or with expectations): its state, last run, success rate and
    p50/p95 over its newest runs, failure streak; problems first, then by name."""
    now = now or store.now()
    expected = {e.job: e for e in load_all(store)}
    oldest_running: dict[str, datetime] = {}
    for run in browse.running(store):
        oldest_running.setdefault(run["job"], run["started_at"])
    rows = []
    for job in sorted(set(browse.job_names(store)) | set(expected)):
        recent = browse.recent_runs(store, job, OVERVIEW_RUNS, browse.BRIEF_FIELDS)
        judged = decide(job, expected.get(job), recent[:WINDOW], oldest_running.get(job), now)
        finished = [r for r in recent if r["status"] != RunStatus.RUNNING.value]
        completed = [r for r in finished if r["status"] == RunStatus.COMPLETED.value]
        durations = [r["duration_ms"] for r in completed if r["duration_ms"] is not None]
        streak = next(
            (i for i, r in enumerate(finished) if r["status"] == "completed"), len(finished)
        )
        rows.append(
            {
                "job": job,
                "state": judged.state,
                "problem": judged.is_problem,
                "reason": judged.reason,
                "trend": judged.trend_label or None,
                "last_run": recent[0] if recent else None,
                "success_rate": len(completed) / len(finished) if finished else None,
                "p50_ms": nearest_rank(durations, 50),
                "p95_ms": nearest_rank(durations, 95),
                "failure_streak": streak,
                "runs_counted": len(finished),
                "recent": recent[:STRIP_RUNS],
            }
        )
    rows.sort(key=lambda r: (not r["problem"], r["job"]))
    return rows


def history_filter(params: Mapping[str, str]) -> HistoryFilter:
    """The CLI's history filters, from a query string; a bad value is a UsageError (a 400)."""
    statuses = wanted_statuses(params.get("status") or None, params.get("failed") == "1")

    def duration_ms(name: str) -> int | None:
        text = params.get(name)
        return None if not text else int(parse_duration(text, name) * 1000)

    return HistoryFilter(
        statuses=statuses or [],
        jobs=[params["job"]] if params.get("job") else [],
        since=parse_when(params["since"], "since") if params.get("since") else None,
        until=parse_when(params["until"], "until") if params.get("until") else None,
        min_duration_ms=duration_ms("min_duration"),
        max_duration_ms=duration_ms("max_duration"),
    )


def encode_cursor(cursor: tuple[datetime, int] | None) -> str | None:
    return None if cursor is None else f"{cursor[0].isoformat()}~{cursor[1]}"


def decode_cursor(text: str | None) -> tuple[datetime, int] | None:
    if not text:
        return None
    try:
        when, _, key = text.partition("~")
        return datetime.fromisoformat(when), int(key)
    except ValueError:
        raise UsageError(f"not a page cursor: {text!r}") from None


def whole_number(params: Mapping[str, str], name: str, default: int, high: int) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or int(text) > high:
        raise UsageError(f"{name} must be a whole number from 0 to {high}")
    return int(text)


@dataclass
class EventRow:
    """One event as the run page shows it."""

    seq: int
    ts: str
    event_type: str
    level: str
    message: str | None
    data: str | None
    stream: str | None = None  # an output line's

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "event_type": self.event_type,
                "level": self.level, "message": self.message,
                "data": json.loads(self.data) if self.data else None}  # fmt: skip


def event_rows(rows: Sequence[tuple[Any, ...]]) -> list[EventRow]:
    shown = []
    for seq, ts, event_type, level, message, data in rows:
        row = EventRow(seq, ts, event_type, level, message, data)
        if event_type == "output" and data:
            parsed = json.loads(data)
            row.stream, row.message = parsed.get("stream"), parsed.get("line")
        shown.append(row)
    return shown


# -- compare ---------------------------------------------------------------------------------------

COMPARED_LINES = 5000
_NOISE = [
    (
        re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"),
        "<time>",
    ),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(\.\d+)?\b"), "<time>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
]


def normalised(line: str) -> str:
    """A line with what changes every run (times, ids, counts) replaced by placeholders."""
    for pattern, placeholder in _NOISE:
        line = pattern.sub(placeholder, line)
    return line


def output_lines(store: Store, run_pk: int) -> list[str]:
    from runstore.store.event_rows import EventFilter

    rows = browse.events_page(
        store, run_pk, size=COMPARED_LINES, only=EventFilter(types=("output",))
    )
    return [row.message or "" for row in event_rows(rows)]


def output_diff(before: Sequence[str], after: Sequence[str]) -> list[tuple[str, str]]:
    """The lines that changed between two runs' output, once normalised: (kind, line) with kind
    ``+``, ``-`` or ``@`` (a hunk header); empty when only times and counts differ."""
    diff = difflib.unified_diff(
        [normalised(line) for line in before],
        [normalised(line) for line in after],
        lineterm="",
        n=2,
    )
    shown = []
    for line in list(diff)[2:]:  # past the ---/+++ header
        kind = line[:1] if line[:1] in "+-@" else " "
        shown.append((kind, line[1:] if kind in "+- " else line))
    return shown
