"""The numbers runs report (``log_metric``, ``runstore event --metric``) over a job's runs, as
``runstore metric`` lists them and the UI's job page charts them (``metrics`` is something else:
the Prometheus exposition of the jobs' health). A run that reported a metric several times
(steps) counts with its last value."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from runstore.health.trends import BASELINE, RECENT, Trend, metric_trend
from runstore.store.schema import NEWEST_FIRST, run_metrics, runs
from runstore.store.store import Store

METRIC_LIMIT = 20


@dataclass(frozen=True)
class Summary:
    """A metric over the runs listed: how many, its last value, median, 95th percentile (nearest
    rank), least and most, and its trend (None when steady or too few runs)."""

    runs: int
    last: float
    p50: float
    p95: float
    low: float
    high: float
    trend: Trend | None

    def as_dict(self) -> dict[str, Any]:
        trend = self.trend
        return {"runs": self.runs, "last": self.last, "p50": self.p50, "p95": self.p95,
                "min": self.low, "max": self.high, "trend": trend.kind if trend else None,
                "trend_change": round(trend.change, 4) if trend else None}  # fmt: skip


def metric_names(store: Store, job: str) -> list[dict[str, Any]]:
    """The metrics ``job``'s runs reported: each name, the runs that did, its newest report."""
    query = (
        select(
            run_metrics.c.name,
            func.count(func.distinct(run_metrics.c.run_pk)).label("runs"),
            func.max(run_metrics.c.ts).label("last_at"),
        )
        .join(runs, runs.c.id == run_metrics.c.run_pk)
        .where(runs.c.job == job)
        .group_by(run_metrics.c.name)
        .order_by(run_metrics.c.name)
    )
    with store.read() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def metric_series(
    store: Store,
    job: str,
    name: str,
    *,
    limit: int = METRIC_LIMIT,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """``name`` over ``job``'s newest ``limit`` runs that reported it, newest first: the run,
    its status and start, the last value it reported (and its step), how many it reported."""
    own = run_metrics.alias("own")  # the run's own reports, by the (run_pk, name) index
    reported = (own.c.run_pk == runs.c.id, own.c.name == name)
    last = select(func.max(own.c.id)).where(*reported).correlate(runs).scalar_subquery()
    values = select(func.count()).select_from(own).where(*reported).correlate(runs)
    query = (
        select(
            runs.c.run_id,
            runs.c.status,
            runs.c.started_at,
            runs.c.duration_ms,
            run_metrics.c.value,
            run_metrics.c.step,
            values.scalar_subquery().label("values"),
        )
        .select_from(runs)
        .join(run_metrics, run_metrics.c.id == last)
        .where(runs.c.job == job)
        .order_by(*NEWEST_FIRST)
        .limit(limit)
    )
    if since is not None:
        query = query.where(runs.c.started_at >= since)
    with store.read() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


# The runs a trend reads: the last RECENT against the BASELINE before them.
TREND_RUNS = RECENT + BASELINE


def summarize(values: Sequence[float], history: Sequence[float] = ()) -> Summary | None:
    """The summary of a metric's values, newest first (None for none); its trend is read from
    ``history`` (newest first, TREND_RUNS of them) when it is longer."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(1, math.ceil(p * len(ordered))) - 1]

    return Summary(
        runs=len(values),
        last=values[0],
        p50=rank(0.50),
        p95=rank(0.95),
        low=ordered[0],
        high=ordered[-1],
        trend=metric_trend(history if len(history) > len(values) else values),
    )
