"""The runs: ``history`` lists them, ``show`` tells one, ``export`` writes its run_log.json."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from runstore.cli._app import MAX_ROWS, DbOption, app, fail, open_store
from runstore.cli.output import Column, CsvOption, JsonlOption, JsonOption
from runstore.history import HISTORY_FIELDS, HISTORY_LIMIT

HISTORY_COLUMNS = [
    Column("run_id", "RUN"),
    Column("job", "JOB"),
    Column("status", "STATUS"),
    Column("started_at", "STARTED", "time"),
    Column("duration_ms", "DURATION", "duration"),
    Column("items", "ITEMS", "number"),
    Column("warnings_errors", "WARN/ERR", "number"),
    Column("exit_code", "EXIT", "number"),
]
MACHINE_HISTORY_COLUMNS = [Column(key, key) for key in HISTORY_FIELDS]


def _for_display(row: dict[str, Any]) -> dict[str, Any]:
    from runstore.humanize import humane_age

    shown = dict(row)
    shown["items"] = (
        f"{row['items_ok']}/{row['items_total']}" if row["items_failed"] else row["items_total"]
    )
    shown["warnings_errors"] = f"{row['warning_count']}/{row['error_count']}"
    if row["status"] == "running":
        shown["duration_ms"] = None
        shown["status"] = f"running {humane_age(row['started_at'])}"
    return shown


@app.command()
def history(
    failed: Annotated[
        bool,
        typer.Option(
            "--failed", help="Only runs that did not complete (failed, cancelled, abandoned)."
        ),
    ] = False,
    status: Annotated[
        str | None, typer.Option("--status", help="Only these statuses, comma-separated.")
    ] = None,
    job: Annotated[
        list[str] | None, typer.Option("--job", "-j", help="Only this job (repeatable).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Started at or after: 30m, 12h, 7d, 2w, today, yesterday, or an ISO date/time.",
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Started before (same forms).")
    ] = None,
    min_duration: Annotated[
        str | None, typer.Option("--min-duration", help="Took at least: 5s, 2m, 1h.")
    ] = None,
    max_duration: Annotated[
        str | None, typer.Option("--max-duration", help="Took at most: 5s, 2m, 1h.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, max=MAX_ROWS, help="At most this many runs.")
    ] = HISTORY_LIMIT,
    offset: Annotated[
        int, typer.Option("--offset", min=0, max=MAX_ROWS, help="Skip this many first.")
    ] = 0,
    as_json: JsonOption = False,
    as_jsonl: JsonlOption = False,
    as_csv: CsvOption = False,
    db: DbOption = None,
) -> None:
    """List runs, newest first.

    Examples: `runstore history --failed --since 7d`, `runstore history --job backup --json`
    """
    from runstore.cli.output import Format, choose_format, emit
    from runstore.history.queries import HistoryFilter, wanted_statuses
    from runstore.history.queries import history as query_history
    from runstore.humanize import parse_duration, parse_when

    fmt = choose_format(as_json, as_jsonl, as_csv)
    statuses = wanted_statuses(status, failed)
    flt = HistoryFilter(
        statuses=statuses or [],
        jobs=job or [],
        since=parse_when(since, "--since") if since else None,
        until=parse_when(until, "--until") if until else None,
        min_duration_ms=int(parse_duration(min_duration, "--min-duration") * 1000)
        if min_duration
        else None,
        max_duration_ms=int(parse_duration(max_duration, "--max-duration") * 1000)
        if max_duration
        else None,
        limit=limit,
        offset=offset,
    )
    rows = [] if statuses is None else query_history(open_store(db), flt)
    if fmt in (Format.TABLE, Format.TEXT):
        if not rows and fmt is Format.TABLE:
            print("no runs match", file=sys.stderr)
            return
        emit((_for_display(r) for r in rows), HISTORY_COLUMNS, fmt)
    else:
        emit(rows, MACHINE_HISTORY_COLUMNS, fmt)


EVENT_COLUMNS = [
    Column("seq", "SEQ", "number"),
    Column("ts", "TIME", "time"),
    Column("level", "LEVEL"),
    Column("event_type", "TYPE"),
    Column("message", "MESSAGE"),
    Column("data", "DATA"),
]
RUN_KINDS = {"started_at": "time", "finished_at": "time", "heartbeat_at": "time",
             "duration_ms": "duration"}  # fmt: skip
HIDDEN_RUN_FIELDS = ("id",)


@app.command()
def show(
    run: Annotated[
        str | None, typer.Argument(help="Run id, or a unique prefix of one.", show_default=False)
    ] = None,
    last: Annotated[bool, typer.Option("--last", help="Show the newest run.")] = False,
    level: Annotated[
        str | None,
        typer.Option(
            "--level", help="Only events at this level or above: debug, info, warning, error."
        ),
    ] = None,
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", "-t", help="Only events of this type (repeatable)."),
    ] = None,
    tail: Annotated[
        int | None, typer.Option("--tail", min=1, max=MAX_ROWS, help="Only the last N events.")
    ] = None,
    as_json: JsonOption = False,
    as_jsonl: JsonlOption = False,
    as_csv: CsvOption = False,
    db: DbOption = None,
) -> None:
    """Show one run: its fields, then its events as a timeline.

    Example: `runstore show 20261128-0301 --level warning`
    """
    import json

    from runstore.cli.output import (
        Format,
        choose_format,
        emit,
        emit_record,
        raw_value,
    )
    from runstore.history.queries import HistoryFilter, run_events
    from runstore.history.queries import history as query_history

    fmt = choose_format(as_json, as_jsonl, as_csv)
    if (run is None) == (not last):
        fail("give a run id (or prefix), or --last", 2)
    store = open_store(db)
    if run is None:
        newest = query_history(store, HistoryFilter(limit=1))
        if not newest:
            fail("the store has no runs yet")
        run = newest[0]["run_id"]
    record = store.find_run(run)
    evs = run_events(store, record["id"], min_level=level, types=event_type or [], tail=tail)
    fields = {k: v for k, v in record.items() if k not in HIDDEN_RUN_FIELDS}
    if fmt is Format.JSON:
        doc = {k: raw_value(v) for k, v in fields.items()}
        doc["events"] = [{k: raw_value(v) for k, v in e.items()} for e in evs]
        print(json.dumps(doc, default=str, indent=2))
        return
    if fmt in (Format.JSONL, Format.CSV):
        emit(evs, [Column(c.key, c.key) for c in EVENT_COLUMNS], fmt)
        return
    if record["status"] == "running":
        from runstore.humanize import humane_age

        fields["status"] = f"running (for {humane_age(record['started_at'])})"
    emit_record({k: v for k, v in fields.items() if v is not None}, fmt, RUN_KINDS)
    print()
    emit(evs, EVENT_COLUMNS, fmt)


@app.command()
def export(
    run: Annotated[
        str | None,
        typer.Argument(help="Run id or unique prefix. Omit to export many with --since."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here (whole or not at all); - for stdout."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Export every run started since (7d, ...).")
    ] = None,
    job: Annotated[list[str] | None, typer.Option("--job", "-j", help="Only this job.")] = None,
    as_jsonl: JsonlOption = False,
    db: DbOption = None,
) -> None:
    """Regenerate a run's run_log.json from the store; or many runs, one JSON line each.

    Examples: `runstore export demo-001 -o run_log.json`, `runstore export --since 7d --jsonl`
    """
    from contextlib import nullcontext

    from runstore.files import descriptor, open_output, refuse_clashes
    from runstore.history.queries import HistoryFilter, iter_history
    from runstore.humanize import parse_when
    from runstore.record.runlog import write_run_log, write_run_log_line
    from runstore.store.location import resolve_db, store_files

    if run is None and since is None and not job:
        fail("give a run id, or --since/--job (with --jsonl) to export many runs", 2)
    if output is not None and descriptor(str(output)) == 1:
        output = None  # `-o -` is stdout, as without -o
    refuse_clashes({"--output": output}, store_files=store_files(resolve_db(db)))
    store = open_store(db)
    target = open_output(output, private=True) if output is not None else nullcontext(sys.stdout)
    if run is not None:
        record = store.find_run(run)
        with target as out:
            (write_run_log_line if as_jsonl else write_run_log)(out, store, record)
        return
    if not as_jsonl:
        fail("exporting many runs writes one JSON object per line: add --jsonl", 2)
    flt = HistoryFilter(
        since=parse_when(since, "--since") if since else None,
        jobs=job or [],
        limit=None,
        oldest_first=True,
    )
    with target as out:
        for record in iter_history(store, flt):  # streamed: memory stays flat in the run count
            write_run_log_line(out, store, record)
