"""The pages, one small function each: overview, runs, run (and its live tail), job, compare.
Each reads through the library, never writes, and renders a template that escapes everything."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from runstore.errors import RunNotFound
from runstore.health.alerts import recent_alerts
from runstore.health.expectations import load, shown_target
from runstore.health.job_metrics import metric_names, metric_series, summarize
from runstore.health.schedule import describe
from runstore.health.states import judge
from runstore.history import browse
from runstore.humanize import format_number
from runstore.store.event_rows import EventFilter
from runstore.store.schema import RunStatus
from runstore.store.store import Store
from runstore.ui import charts, data

CHART_RUNS = 100
MAX_METRIC_CHARTS = 8
CALENDAR_DAYS = 91
TAIL_POLL_S = 0.5


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    templates = request.app.state.templates
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def overview(request: Request) -> Response:
    store = _store(request)
    rows = data.overview(store)
    for row in rows:
        row["strip"] = charts.strip(row["recent"])
    return _render(request, "overview.html", jobs=rows, running=browse.running(store))


def runs(request: Request) -> Response:
    store = _store(request)
    params = request.query_params
    flt = data.history_filter(params)
    page = browse.runs_page(
        store, flt, before=data.decode_cursor(params.get("before")), size=data.PAGE_SIZE
    )
    return _render(
        request,
        "runs.html",
        runs=page.rows,
        filters=dict(params),
        next_cursor=data.encode_cursor(page.next_cursor),
        jobs=browse.job_names(store),
    )


def run(request: Request) -> Response:
    store = _store(request)
    record = browse.run_by_id(store, request.path_params["run_id"])
    params = request.query_params
    after = data.whole_number(params, "after", 0, 2**62)
    only = EventFilter(types=("output",)) if params.get("only") == "output" else None
    rows = browse.events_page(
        store, record["id"], after_seq=after, size=data.EVENTS_PAGE, only=only
    )
    events = data.event_rows(rows)
    last_seq = events[-1].seq if events else after
    more = len(events) == data.EVENTS_PAGE
    return _render(
        request,
        "run.html",
        run=record,
        tags=store.run_tags(record["id"]),
        events=events,
        after=after,
        next_after=last_seq if more else None,
        only=params.get("only"),
        live=record["status"] == RunStatus.RUNNING.value and not more,
        last_seq=last_seq,
    )


async def tail(request: Request) -> Response:
    """A running run's new events as server-sent events, until the run ends (an ``end``
    event with its status) or the reader leaves."""
    store = _store(request)
    run_id = request.path_params["run_id"]
    record = await run_in_threadpool(browse.run_by_id, store, run_id)
    after = data.whole_number(request.query_params, "after", 0, 2**62)

    async def stream() -> AsyncIterator[str]:
        last = after
        while not await request.is_disconnected():
            rows = await run_in_threadpool(
                browse.events_page, store, record["id"], after_seq=last, size=data.EVENTS_PAGE
            )
            for row in data.event_rows(rows):
                last = row.seq
                shown = {**row.as_dict(), "stream": row.stream, "message": row.message}
                yield f"event: event\ndata: {json.dumps(shown, default=str)}\n\n"
            if rows:
                continue
            now = await run_in_threadpool(browse.run_by_id, store, run_id)
            if now["status"] != RunStatus.RUNNING.value:
                yield f"event: end\ndata: {json.dumps({'status': now['status']})}\n\n"
                return
            yield ": waiting\n\n"  # keeps proxies from closing a quiet stream
            await asyncio.sleep(TAIL_POLL_S)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def job(request: Request) -> Response:
    store = _store(request)
    name = request.path_params["job"]
    exp = load(store, name)
    recent = browse.recent_runs(store, name, CHART_RUNS)
    if not recent and exp is None:
        raise RunNotFound(f"job {name}")
    completed = [
        r["duration_ms"]
        for r in recent
        if r["status"] == "completed" and r["duration_ms"] is not None
    ]
    p50, p95 = data.nearest_rank(completed, 50), data.nearest_rank(completed, 95)
    today = datetime.now(timezone.utc).date()
    since = datetime.combine(
        today - timedelta(days=CALENDAR_DAYS), datetime.min.time(), tzinfo=timezone.utc
    )
    outcomes = browse.daily_outcomes(store, name, since)
    return _render(
        request,
        "job.html",
        job=name,
        judged=judge(store, name, exp),
        expectation=exp,
        schedule=describe(exp) if exp else None,
        targets=[shown_target(t) for t in exp.notify] if exp else [],
        chart=charts.duration_chart(list(reversed(recent)), p50, p95),
        charted=len(recent),
        p50=p50,
        p95=p95,
        calendar=charts.calendar(outcomes, today, CALENDAR_DAYS),
        metrics=_metric_charts(store, name),
        runs=recent[:20],
        alerts=recent_alerts(store, name, 20),
    )


def _metric_charts(store: Store, job: str) -> list[dict[str, Any]]:
    """Each metric the job's runs report (the first MAX_METRIC_CHARTS by name): its chart over
    the last CHART_RUNS runs that reported it, and its summary."""
    charted = []
    for name in [row["name"] for row in metric_names(store, job)][:MAX_METRIC_CHARTS]:
        series = metric_series(store, job, name, limit=CHART_RUNS)
        summary = summarize([row["value"] for row in series])
        if summary is None:
            continue
        chart = charts.value_chart(list(reversed(series)), "value", summary.p50, summary.p95,
                                   format_number, label=name)  # fmt: skip
        charted.append({"name": name, "chart": chart, "summary": summary, "runs": len(series)})
    return charted


def compare(request: Request) -> Response:
    store = _store(request)
    params = request.query_params
    if not params.get("a"):
        from runstore.errors import UsageError

        raise UsageError(
            "give two runs to compare: /compare?a=RUN&b=RUN (b: by default the "
            "job's last completed run before a)"
        )
    a = browse.run_by_id(store, params["a"])
    b = (
        browse.run_by_id(store, params["b"])
        if params.get("b")
        else browse.last_completed_before(store, a["job"], a)
    )
    before = data.output_lines(store, b["id"]) if b is not None else []
    after = data.output_lines(store, a["id"])
    return _render(
        request,
        "compare.html",
        a=a,
        b=b,
        diff=data.output_diff(before, after),
        lines=(len(before), len(after)),
    )
