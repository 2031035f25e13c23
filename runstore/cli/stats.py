"""How jobs are doing: ``stats`` per job, ``check`` one job for monitors and shell."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runstore.cli._app import DbOption, TagFilterOption, app, fail, open_store, tag_filters
from runstore.cli.output import (
    Column,
    CsvOption,
    JsonlOption,
    JsonObjectOption,
    JsonOption,
    WideOption,
    print_json,
    print_list,
)
from runstore.history import STATS_FIELDS

if TYPE_CHECKING:
    from runstore.store.store import Store

# The terminal table: a column per heading, the least needed dropped first on a narrow screen.
STATS_TABLE = [
    Column("job", "JOB", "id"),
    Column("runs", "RUNS", "count"),
    Column("completed", "OK", "count", drop=4),
    Column("failed", "FAILED", "count", drop=3),
    Column("failure_rate_pct", "FAIL%", "number"),
    Column("p50_ms", "P50", "duration"),
    Column("p95_ms", "P95", "duration"),
    Column("max_ms", "MAX", "duration", drop=5),
    Column("last_status", "LAST", "status"),
    Column("last_started_at", "LAST RUN", "time"),
    Column("failure_streak", "STREAK", "number", drop=2),
    Column("last_success_at", "LAST SUCCESS", "time", drop=6),
    Column("trend", "TREND", "status"),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since", help="Only runs started since (30m, 7d, an ISO date...). Default: all."
    ),
]
MACHINE_STATS_COLUMNS = [Column(key, key) for key in (*STATS_FIELDS, "trend", "trend_change")]


@app.command()
def stats(
    since: SinceOption = None,
    job: Annotated[list[str] | None, typer.Option("--job", "-j", help="Only this job.")] = None,
    tags: TagFilterOption = None,
    as_json: JsonOption = False,
    as_jsonl: JsonlOption = False,
    as_csv: CsvOption = False,
    wide: WideOption = False,
    db: DbOption = None,
) -> None:
    """Per job: runs, failures, failure rate, p50/p95/max duration, last run, failure streak,
    and its trend: slower or faster (the median of its last 5 completed runs against the 20
    before them), or flaky (see the README's Monitoring section for the rules).

    Example: `runstore stats --since 30d`
    """
    from runstore.cli.output import Format, choose_format, emit, paged
    from runstore.health.states import judge
    from runstore.history.queries import stats as query_stats
    from runstore.humanize import parse_when

    fmt = choose_format(as_json, as_jsonl, as_csv)
    window = parse_when(since, "--since") if since else None
    store = open_store(db)
    rows = query_stats(store, since=window, jobs=job or [], tags=tag_filters(tags))
    now = store.now()
    for row in rows:  # the trend is the job's now, whatever the window
        judged = judge(store, row["job"], None, now)
        row["trend"] = judged.trend_label or None
        row["trend_change"] = round(judged.trend.change, 4) if judged.trend else None
    if fmt in (Format.TABLE, Format.TEXT):
        for row in rows:
            rate = row["failure_rate"]
            row["failure_rate_pct"] = f"{rate * 100:.1f}" if rate is not None else ""
        if not rows and fmt is Format.TABLE:
            print("no runs match" if since or job or tags else "no runs yet", file=sys.stderr)
            return
        with paged(fmt is Format.TABLE) as out:
            emit(rows, STATS_TABLE, fmt, out=out, wide=wide)
    else:
        emit(rows, MACHINE_STATS_COLUMNS, fmt)


@app.command()
def check(
    job: Annotated[str | None, typer.Argument(help="The job to check.", show_default=False)] = None,
    every_job: Annotated[
        bool, typer.Option("--all", help="Every job that has expectations (runstore job set).")
    ] = False,
    max_age: Annotated[
        str | None,
        typer.Option("--max-age", help="Fail when the last success finished longer ago: 26h, 7d."),
    ] = None,
    max_duration: Annotated[
        str | None,
        typer.Option("--max-duration", help="Fail when a run has been running longer: 10m."),
    ] = None,
    notify: Annotated[
        bool,
        typer.Option(
            "--notify",
            help="Tell each job's alert targets of a change of state; print only the alerts.",
        ),
    ] = False,
    as_json: JsonOption = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print nothing when healthy.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Exit 0 when the job is healthy; else exit 1 with the reason on one line.

    JOB's stored expectations decide (its schedule, grace and max duration: `runstore job
    set`), or --max-age and --max-duration: its last run completed, recently enough, and none is
    running too long. `--all` checks every job that has expectations: one line per job that is
    late, running long or failed (or slower, faster or flaky, for a job that asks for trends).

    For cron: `*/5 * * * * runstore check --all --notify` alerts on every change of state
    (lateness included) and prints only the alerts it sent; it exits 1 only when one could not
    be sent.

    Example: `runstore check nightly-backup --max-age 26h && echo healthy`
    """
    from runstore.humanize import parse_duration
    from runstore.record.ids import check_job as check_job_name

    if (job is None) == (not every_job):
        fail("give a job, or --all", 2)
    if job is not None:
        check_job_name(job)
    if every_job and (max_age or max_duration):
        fail("--max-age and --max-duration check one job: --all uses each job's expectations", 2)
    max_age_s = parse_duration(max_age, "--max-age") if max_age else None
    max_duration_s = parse_duration(max_duration, "--max-duration") if max_duration else None
    store = open_store(db)
    if job is not None and max_age is None and max_duration is None and not notify:
        from runstore.health.expectations import load

        if load(store, job) is None:  # no expectations: the last run, as always
            _check_last_run(store, job, None, None, quiet, as_json)
            return
    elif job is not None and not notify:
        _check_last_run(store, job, max_age_s, max_duration_s, quiet, as_json)
        return
    _check_states(store, job, notify=notify, quiet=quiet, as_json=as_json)


def _check_last_run(
    store: Store,
    job: str,
    max_age_s: float | None,
    max_duration_s: float | None,
    quiet: bool,
    as_json: bool,
) -> None:
    from runstore.history.queries import check_job

    result = check_job(store, job, max_age_s=max_age_s, max_duration_s=max_duration_s)
    if as_json:
        print_json({"job": job, "ok": result.ok, "reason": result.reason})
    elif result.ok and not quiet:
        print(f"ok: {result.reason}")
    if not result.ok:
        if as_json:
            raise typer.Exit(1)
        fail(result.reason, 1)


def _check_states(
    store: Store, job: str | None, *, notify: bool, quiet: bool, as_json: bool
) -> None:
    """Every job with expectations (or one), judged at one moment; with ``notify``, a change of
    state alerted."""
    from runstore.health import SAID
    from runstore.health.alerts import notify as send_alerts
    from runstore.health.states import judge_all, judge_one

    now = store.now()
    judged = judge_all(store, now) if job is None else [judge_one(store, job, now)]
    outcomes = send_alerts(store, judged, now) if notify else []
    problems = [j for j in judged if j.is_problem]
    if as_json:
        sent: dict[str, list[dict[str, Any]]] = {}
        for o in outcomes:
            sent.setdefault(o.job, []).append(
                {"target": o.target, "state": o.state, "sent": o.sent, "detail": o.detail}
            )
        print_list([{**j.as_dict(), **({"alerts": sent.get(j.job, [])} if notify else {})}
                    for j in judged])  # fmt: skip
    elif notify:
        for o in outcomes:
            said = f"alerted {o.target}: {o.job} {o.state}"
            print(said if o.sent else f"Warning: could not alert {o.target} ({o.job} "
                  f"{o.state}): {o.detail}", file=sys.stdout if o.sent else sys.stderr)  # fmt: skip
    elif job is not None:  # one job: one line, as without expectations
        if problems:
            fail(f"{job} {SAID[judged[0].state]}: {judged[0].reason}", 1)
        if not quiet:
            print(f"ok: {job}: {judged[0].reason}")
    else:
        _print_states(judged, problems, quiet)
    if notify:
        if not all(o.sent for o in outcomes):
            raise typer.Exit(1)
        return
    if problems:
        raise typer.Exit(1)


def _print_states(judged: list[Any], problems: list[Any], quiet: bool) -> None:
    from runstore.cli.output import Format, emit
    from runstore.humanize import plural

    if not judged:
        if not quiet:
            print("no job has expectations yet: runstore job set NAME --schedule ...",
                  file=sys.stderr)  # fmt: skip
        return
    if problems:
        fmt = Format.TABLE if sys.stdout.isatty() else Format.TEXT
        columns = [Column("job", "JOB", "id"), Column("state", "STATE", "status"),
                   Column("reason", "WHY")]  # fmt: skip
        emit([{"job": j.job, "state": j.state, "reason": j.reason} for j in problems],
             columns, fmt)  # fmt: skip
    elif not quiet:
        print(f"ok: {plural(len(judged), 'job')}, all healthy")


METRIC_COLUMNS = [
    Column("run_id", "RUN", "id"),
    Column("started_at", "STARTED", "time"),
    Column("status", "STATUS", "status"),
    Column("shown", "VALUE", "number"),
    Column("step", "STEP", "number", drop=1),
]
METRIC_NAME_COLUMNS = [
    Column("name", "METRIC", "id"),
    Column("runs", "RUNS", "count"),
    Column("last_at", "LAST REPORTED", "time"),
]
MACHINE_METRIC_COLUMNS = [
    Column(key, key) for key in ("run_id", "status", "started_at", "value", "step", "values")
]


@app.command()
def metric(
    job: Annotated[str, typer.Argument(help="The job.", show_default=False)],
    name: Annotated[
        str | None,
        typer.Argument(help="The metric. Default: list the job's metrics.", show_default=False),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="The newest runs that reported it.", min=1)
    ] = 20,
    since: SinceOption = None,
    as_json: JsonObjectOption = False,
    as_jsonl: JsonlOption = False,
    as_csv: CsvOption = False,
    wide: WideOption = False,
    db: DbOption = None,
) -> None:
    """A number the job's runs report, over its runs: p50, p95 and its trend.

    The numbers come from `runstore event --metric NAME=N` and `log_metric`; without NAME, the
    job's metrics are listed. Newest runs first; a run that reported it several times (steps)
    shows its last value. The trend is up or down when the median of the last 5 runs moved 20%
    or more from the 20 before them.

    Example: `runstore metric nightly-etl rows_loaded`
    """
    from runstore.cli.output import Format, choose_format, emit, paged
    from runstore.health.job_metrics import TREND_RUNS, metric_names, metric_series, summarize
    from runstore.humanize import parse_when
    from runstore.record.ids import check_job as check_job_name

    fmt = choose_format(as_json, as_jsonl, as_csv)
    window = parse_when(since, "--since") if since else None
    check_job_name(job)
    store = open_store(db)
    if name is None:
        names = metric_names(store, job)
        if not names and fmt in (Format.TABLE, Format.TEXT):
            fail(f"no metrics reported by job {job!r} (runstore event --metric NAME=N)", 1)
        if fmt is Format.JSON:
            print_json({"job": job, "metrics": names})
        else:
            emit(names, METRIC_NAME_COLUMNS, fmt, wide=wide)
        return
    fetched = metric_series(store, job, name, limit=max(limit, TREND_RUNS), since=window)
    rows = fetched[:limit]
    if not rows:
        fail(f"job {job!r} has no runs that reported {name!r}", 1)
    summary = summarize([row["value"] for row in rows], [row["value"] for row in fetched])
    assert summary is not None
    if fmt is Format.JSON:
        print_json({"job": job, "metric": name, **summary.as_dict(), "values": rows})
    elif fmt in (Format.JSONL, Format.CSV):
        emit(rows, MACHINE_METRIC_COLUMNS, fmt)
    else:
        from runstore.humanize import format_number

        for row in rows:
            row["shown"] = format_number(row["value"])
        with paged(fmt is Format.TABLE) as out:
            emit(rows, METRIC_COLUMNS, fmt, out=out, wide=wide)
            print(_summary_line(name, summary), file=out)


def _summary_line(name: str, summary: Any) -> str:
    from runstore.health.trends import METRIC_MIN_BASELINE, RECENT
    from runstore.humanize import format_number as n

    trend = summary.trend
    if trend is not None:
        said = f"{trend.kind} {trend.change:+.0%} (the median of the last {RECENT} runs)"
    elif summary.runs < RECENT + METRIC_MIN_BASELINE:
        said = f"not known yet ({RECENT + METRIC_MIN_BASELINE} runs needed)"
    else:
        said = "steady"
    return (
        f"\n{name} over {summary.runs} run{'s' if summary.runs != 1 else ''}: "
        f"last {n(summary.last)}, p50 {n(summary.p50)}, p95 {n(summary.p95)}, "
        f"min {n(summary.low)}, max {n(summary.high)}\ntrend: {said}"
    )
