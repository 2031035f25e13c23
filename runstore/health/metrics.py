"""The Prometheus exposition, built with prometheus_client: gauges per job, labelled by ``job``
only (never by run id: one series per run would grow without end). No ``_total`` counters: a
prune would make them go backwards, which Prometheus reads as a reset.

``runstore metrics`` prints it; ``--textfile DIR`` writes ``DIR/runstore.prom`` whole or not at
all, for node_exporter's textfile collector.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from runstore.health import STATES
from runstore.health.expectations import load_all
from runstore.health.states import judge
from runstore.history.queries import stats
from runstore.store.schema import RunStatus
from runstore.store.store import Store

TEXTFILE = "runstore.prom"
PREFIX = "runstore_job_"


def families(store: Store, now: datetime | None = None) -> list[Any]:
    """The metric families, one sample per job in each (jobs with runs, and jobs with
    expectations that never ran)."""
    from prometheus_client.core import GaugeMetricFamily

    now = now or store.now()
    expected = {e.job: e for e in load_all(store)}
    per_job = {row["job"]: row for row in stats(store)}
    names = sorted(set(per_job) | set(expected))

    def gauge(name: str, documentation: str, unit: str = "", *labels: str) -> Any:
        return GaugeMetricFamily(f"{PREFIX}{name}", documentation, labels=["job", *labels],
                                 unit=unit)  # fmt: skip

    last_success = gauge("last_success_timestamp", "When the job's last completed run "
                         "finished, in seconds since the epoch.", "seconds")  # fmt: skip
    last_start = gauge("last_run_timestamp", "When the job's newest run started, in seconds "
                       "since the epoch.", "seconds")  # fmt: skip
    last_status = gauge("last_run_status", "The status of the job's newest run: 1 for the "
                        "one it has.", "", "status")  # fmt: skip
    last_duration = gauge("last_run_duration", "How long the job's last finished run took.",
                          "seconds")  # fmt: skip
    last_exit = gauge("last_run_exit_code", "The exit code of the job's last finished run.")
    running = gauge("running", "Runs of the job running now.")
    state = gauge("state", "The job's state (runstore check --all): 1 for the one it is in.",
                  "", "state")  # fmt: skip
    duration = gauge("duration", "Duration of the job's runs, by quantile (nearest rank).",
                     "seconds", "quantile")  # fmt: skip
    streak = gauge("failure_streak", "Runs in a row that did not complete, newest first.")
    for job in names:
        figures = per_job.get(job, {})
        judged = judge(store, job, expected.get(job), now)
        last = judged.last_run
        if figures.get("last_success_at") is not None:
            last_success.add_metric([job], figures["last_success_at"].timestamp())
        if last is not None:
            last_start.add_metric([job], last["started_at"].timestamp())
            for status in RunStatus:
                last_status.add_metric([job, status.value], float(last["status"] == status))
        finished = _last_finished(store, job)
        if finished is not None and finished["duration_ms"] is not None:
            last_duration.add_metric([job], finished["duration_ms"] / 1000)
        if finished is not None and finished["exit_code"] is not None:
            last_exit.add_metric([job], finished["exit_code"])
        running.add_metric([job], figures.get("running", 0))
        for name in STATES:
            state.add_metric([job, name], float(judged.state == name))
        for quantile, key in (("0.5", "p50_ms"), ("0.95", "p95_ms")):
            if figures.get(key) is not None:
                duration.add_metric([job, quantile], figures[key] / 1000)
        streak.add_metric([job], figures.get("failure_streak", 0))
    return [last_success, last_start, last_status, last_duration, last_exit, running, state,
            duration, streak]  # fmt: skip


def _last_finished(store: Store, job: str) -> dict[str, Any] | None:
    from sqlalchemy import select

    from runstore.store.schema import NEWEST_FIRST, runs

    query = (
        select(runs.c.duration_ms, runs.c.exit_code)
        .where(runs.c.job == job, runs.c.status != RunStatus.RUNNING.value)
        .order_by(*NEWEST_FIRST)
        .limit(1)
    )
    with store.read() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row is not None else None


class _Collector:
    def __init__(self, found: list[Any]) -> None:
        self.found = found

    def collect(self) -> Iterator[Any]:
        yield from self.found


def exposition(store: Store, *, openmetrics: bool = False, now: datetime | None = None) -> bytes:
    """The metrics in Prometheus' text format (or OpenMetrics')."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(families(store, now)))
    if openmetrics:
        from prometheus_client.openmetrics.exposition import generate_latest as generate_om

        return bytes(generate_om(registry))
    from prometheus_client import generate_latest

    return bytes(generate_latest(registry))


def write_textfile(store: Store, directory: str | os.PathLike[str]) -> Path:
    """``DIR/runstore.prom``, replaced whole (a temporary file renamed over it), so the collector
    never reads half of it."""
    from runstore.files import open_output, refuse_clashes
    from runstore.store.location import store_files

    target = Path(directory) / TEXTFILE
    refuse_clashes({"--textfile": target}, store_files=store_files(store.url))
    text = exposition(store).decode()
    with open_output(target) as out:
        out.write(text)
    return target
