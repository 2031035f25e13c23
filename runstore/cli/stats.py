"""How jobs are doing: ``stats`` per job, ``check`` one job for monitors and shell."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from runstore.cli._app import DbOption, app, fail, open_store
from runstore.cli.output import Column, CsvOption, JsonlOption, JsonOption, WideOption
from runstore.history import STATS_FIELDS

STATS_COLUMNS = [
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
]
MACHINE_STATS_COLUMNS = [Column(key, key) for key in STATS_FIELDS]


@app.command()
def stats(
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only runs started since (30m, 7d, an ISO date...). Default: all."
        ),
    ] = None,
    job: Annotated[list[str] | None, typer.Option("--job", "-j", help="Only this job.")] = None,
    as_json: JsonOption = False,
    as_jsonl: JsonlOption = False,
    as_csv: CsvOption = False,
    wide: WideOption = False,
    db: DbOption = None,
) -> None:
    """Per job: runs, failures, failure rate, p50/p95/max duration, last run, failure streak.

    Example: `runstore stats --since 30d`
    """
    from runstore.cli.output import Format, choose_format, emit, paged
    from runstore.history.queries import stats as query_stats
    from runstore.humanize import parse_when

    fmt = choose_format(as_json, as_jsonl, as_csv)
    window = parse_when(since, "--since") if since else None
    rows = query_stats(open_store(db), since=window, jobs=job or [])
    if fmt in (Format.TABLE, Format.TEXT):
        for row in rows:
            rate = row["failure_rate"]
            row["failure_rate_pct"] = f"{rate * 100:.1f}" if rate is not None else ""
        if not rows and fmt is Format.TABLE:
            print("no runs match" if since or job else "no runs yet", file=sys.stderr)
            return
        with paged(fmt is Format.TABLE) as out:
            emit(rows, STATS_COLUMNS, fmt, out=out, wide=wide)
    else:
        emit(rows, MACHINE_STATS_COLUMNS, fmt)


@app.command()
def check(
    job: Annotated[str, typer.Argument(help="The job to check.")],
    max_age: Annotated[
        str | None,
        typer.Option("--max-age", help="Fail when the last success finished longer ago: 26h, 7d."),
    ] = None,
    max_duration: Annotated[
        str | None,
        typer.Option("--max-duration", help="Fail when a run has been running longer: 10m."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print nothing when healthy.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Exit 0 when JOB's last run completed in time; else exit 1 with the reason on one line.

    For cron monitors and shell: `runstore check nightly-backup --max-age 26h && echo healthy`
    """
    from runstore.history.queries import check_job
    from runstore.humanize import parse_duration

    max_age_s = parse_duration(max_age, "--max-age") if max_age else None
    max_duration_s = parse_duration(max_duration, "--max-duration") if max_duration else None
    result = check_job(open_store(db), job, max_age_s=max_age_s, max_duration_s=max_duration_s)
    if not result.ok:
        fail(result.reason, 1)
    if not quiet:
        print(f"ok: {result.reason}")
