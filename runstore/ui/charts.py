"""Charts drawn on the server as SVG (nothing fetched, no script): a strip of a job's last runs,
a chart of their durations (or of a metric they report) with its p50 and p95, a calendar of
daily outcomes. Pure functions of the
data; every text in them escaped."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

from markupsafe import Markup, escape

from runstore.humanize import humane_duration

COLOURS = {"completed": "#2f9e5b", "failed": "#d64545", "abandoned": "#a33a3a",
           "cancelled": "#e2a336", "running": "#3b7ddd"}  # fmt: skip
EMPTY = "#e4e7eb"


def _title(run: dict[str, Any]) -> str:
    said = humane_duration(run["duration_ms"]) if run.get("duration_ms") is not None else "-"
    return f"{run['run_id']}: {run['status']}, {said}"


def strip(runs: Sequence[dict[str, Any]], *, link: str = "/runs/") -> Markup:
    """The last runs (given newest first) as bars, oldest on the left: height by duration (on
    a log scale, so one slow run leaves the others visible), colour by status."""
    width, height, gap = 8, 24, 2
    shown = list(reversed(runs))
    longest = max((r["duration_ms"] or 0 for r in shown), default=0)
    parts = []
    for i, run in enumerate(shown):
        ms = run.get("duration_ms") or 0
        size = 4 + (height - 4) * (math.log1p(ms) / math.log1p(longest) if longest else 0)
        x, y = i * (width + gap), height - size
        colour = COLOURS.get(run["status"], EMPTY)
        parts.append(
            f'<a href="{escape(link + run["run_id"])}"><rect x="{x}" y="{y:.1f}" width="{width}" '
            f'height="{size:.1f}" fill="{colour}"><title>{escape(_title(run))}</title></rect></a>'
        )
    total = max(1, len(shown)) * (width + gap)
    return Markup(
        f'<svg class="strip" width="{total}" height="{height}" viewBox="0 0 {total} {height}" '
        f'role="img" aria-label="last runs">{"".join(parts)}</svg>'
    )


def duration_chart(
    runs: Sequence[dict[str, Any]], p50_ms: float | None, p95_ms: float | None
) -> Markup:
    """Durations of runs (given oldest first), one point each, failures marked with a red
    cross; dashed lines at p50 and p95."""
    return value_chart(runs, "duration_ms", p50_ms, p95_ms, humane_duration, label="durations")


def value_chart(
    runs: Sequence[dict[str, Any]],
    key: str,
    p50: float | None,
    p95: float | None,
    shown: Callable[[float], str],
    *,
    label: str,
) -> Markup:
    """A value of runs (given oldest first: a duration, a metric they reported), one point
    each, failed runs marked with a red cross; dashed lines at p50 and p95. ``shown`` writes a
    value as the axis and the tooltips say it."""
    width, height, left, bottom, top = 760, 240, 64, 28, 12
    values = [r[key] for r in runs if r.get(key) is not None]
    floor = min([*values, 0])  # the axis starts at zero, or lower for negative values
    highest = max([*values, p95 or 0, 0])
    ceiling = floor + ((highest - floor) or 1) * 1.1  # a tenth of room above the highest
    plot_w, plot_h = width - left - 12, height - bottom - top
    step = plot_w / max(1, len(runs) - 1) if len(runs) > 1 else 0

    def y(value: float) -> float:
        return top + plot_h - plot_h * (value - floor) / (ceiling - floor)

    parts = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 12}" y2="{top + plot_h}" '
        'class="axis"/>'
    ]
    for fraction in (0, 0.5, 1):
        value = floor + (ceiling - floor) * fraction / 1.1
        parts.append(
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" class="tick" text-anchor="end">'
            f"{escape(shown(value))}</text>"
        )
    for name, value in (("p50", p50), ("p95", p95)):
        if value is not None:
            parts.append(
                f'<line x1="{left}" y1="{y(value):.1f}" x2="{width - 12}" y2="{y(value):.1f}" '
                f'class="{name}"/><text x="{width - 14}" y="{y(value) - 4:.1f}" class="tick" '
                f'text-anchor="end">{name} {escape(shown(value))}</text>'
            )
    for i, run in enumerate(runs):
        if run.get(key) is None:
            continue
        cx, cy = left + i * step, y(run[key])
        said = f"{run['run_id']}: {run['status']}, {shown(run[key])}"
        title = f"<title>{escape(said)}</title>"
        href = escape("/runs/" + run["run_id"])
        if run["status"] == "completed":
            mark = f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" class="ok">{title}</circle>'
        else:
            d = 4
            mark = (
                f'<path d="M{cx - d:.1f},{cy - d:.1f}L{cx + d:.1f},{cy + d:.1f}M{cx - d:.1f},'
                f'{cy + d:.1f}L{cx + d:.1f},{cy - d:.1f}" class="bad">{title}</path>'
            )
        parts.append(f'<a href="{href}">{mark}</a>')
    return Markup(
        f'<svg class="durations" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(label)}">{"".join(parts)}</svg>'
    )


def calendar(outcomes: dict[date, tuple[int, int]], today: date, days: int = 91) -> Markup:
    """One square per day for the last ``days`` days, a column per week: green when every run
    completed, red when one did not, grey without runs."""
    size, gap = 12, 3
    first = today - timedelta(days=days - 1)
    first -= timedelta(days=first.weekday())  # columns start on Monday
    parts = []
    day, column = first, 0
    while day <= today:
        row = day.weekday()
        ok, bad = outcomes.get(day, (0, 0))
        colour = COLOURS["failed"] if bad else COLOURS["completed"] if ok else EMPTY
        said = f"{day.isoformat()}: {ok} completed, {bad} not" if ok or bad else f"{day}: no runs"
        parts.append(
            f'<rect x="{column * (size + gap)}" y="{row * (size + gap)}" width="{size}" '
            f'height="{size}" rx="2" fill="{colour}"><title>{escape(said)}</title></rect>'
        )
        day += timedelta(days=1)
        if day.weekday() == 0:
            column += 1
    width, height = (column + 1) * (size + gap), 7 * (size + gap)
    return Markup(
        f'<svg class="calendar" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="daily outcomes">{"".join(parts)}</svg>'
    )
