"""The runs: ``history`` lists them, ``show`` tells one, ``logs`` prints its output, ``export``
writes its run_log.json."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from runstore.cli._app import (
    MAX_ROWS,
    DbOption,
    TagFilterOption,
    app,
    fail,
    open_store,
    tag_filters,
)
from runstore.cli.output import Column, CsvOption, JsonlOption, JsonOption, WideOption
from runstore.history import HISTORY_FIELDS, HISTORY_LIMIT

if TYPE_CHECKING:
    from runstore.store.event_rows import EventFilter
    from runstore.store.store import Store

# The terminal table: a column per heading, the least needed dropped first on a narrow screen.
HISTORY_TABLE = [
    Column("run_id", "RUN", "id"),
    Column("job", "JOB", "id"),
    Column("status", "STATUS", "status"),
    Column("started_at", "STARTED", "time"),
    Column("duration_ms", "DURATION", "duration"),
    Column("items", "ITEMS", "count", drop=2),
    Column("warnings_errors", "WARN/ERR", "number", drop=3),
    Column("exit_code", "EXIT", "number", drop=1),
    Column("error_summary", "ERROR", drop=4),
]
MACHINE_HISTORY_COLUMNS = [Column(key, key) for key in HISTORY_FIELDS]


def _for_display(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    from runstore.humanize import humane_age, humane_duration

    for row in rows:
        shown = dict(row)
        if row["items_failed"]:
            shown["items"] = f"{row['items_ok']:,}/{row['items_total']:,}"
        else:
            shown["items"] = row["items_total"]
        shown["warnings_errors"] = f"{row['warning_count']}/{row['error_count']}"
        if row["status"] == "running":
            shown["duration_ms"] = None
            shown["status"] = f"running {humane_age(row['started_at'])}"
        elif row["status"] == "abandoned" and row["duration_ms"] is not None:
            shown["duration_ms"] = f"≥ {humane_duration(row['duration_ms'])}"  # the last beat
        yield shown


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
        int | None,
        typer.Option(
            "--limit",
            "-n",
            min=0,
            max=MAX_ROWS,
            help=f"At most this many runs. Default: {HISTORY_LIMIT} in a table, all in "
            "--json/--jsonl/--csv.",
            show_default=False,
        ),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every matching run.")] = False,
    tags: TagFilterOption = None,
    grep: Annotated[
        str | None,
        typer.Option(
            "--grep",
            metavar="TEXT",
            help="Only runs whose output or event messages contain TEXT (3 characters or "
            "more, any case).",
        ),
    ] = None,
    offset: Annotated[
        int, typer.Option("--offset", min=0, max=MAX_ROWS, help="Skip this many first.")
    ] = 0,
    as_json: JsonOption = False,
    as_jsonl: JsonlOption = False,
    as_csv: CsvOption = False,
    wide: WideOption = False,
    db: DbOption = None,
) -> None:
    """List runs, newest first.

    Examples: `runstore history --failed --since 7d`, `runstore history --job backup --json`
    """
    from runstore.cli.output import Format, choose_format, emit, paged
    from runstore.history.queries import HistoryFilter, iter_history, wanted_statuses
    from runstore.humanize import parse_duration, parse_when

    fmt = choose_format(as_json, as_jsonl, as_csv)
    if every and limit is not None:
        fail("choose one of --all and --limit", 2)
    if limit is None and not every and not fmt.machine:
        limit = HISTORY_LIMIT
        hint_more = fmt is Format.TABLE
    else:
        hint_more = False
    statuses = wanted_statuses(status, failed)
    flt = HistoryFilter(
        statuses=statuses or [],
        jobs=job or [],
        since=parse_when(since, "--since") if since else None,
        until=parse_when(until, "--until") if until else None,
        min_duration_ms=_duration_ms(min_duration, "--min-duration", parse_duration),
        max_duration_ms=_duration_ms(max_duration, "--max-duration", parse_duration),
        limit=None if limit is None else limit + hint_more,
        offset=offset,
        tags=tag_filters(tags),
        grep=grep,
    )
    store = open_store(db)
    rows: Iterable[dict[str, Any]] = (
        [] if statuses is None else iter_history(store, flt, whole=False)
    )
    if fmt.machine:
        emit(rows, MACHINE_HISTORY_COLUMNS, fmt)
        return
    found = list(rows)  # at most --limit (+1) rows
    more = hint_more and limit is not None and len(found) > limit
    if more:
        found.pop()
    if not found and fmt is Format.TABLE:
        asked = _filters_given(sys.argv)
        print(f"no runs match {asked}" if asked else "no runs yet", file=sys.stderr)
        return
    with paged(fmt is Format.TABLE) as out:
        emit(_for_display(found), HISTORY_TABLE, fmt, out=out, wide=wide)
    if more:
        print(f"(the newest {limit}; --limit N or --all for more)", file=sys.stderr)


def _duration_ms(text: str | None, option: str, parse: Any) -> int | None:
    return None if text is None else int(parse(text, option) * 1000)


_FILTER_OPTIONS = ("--failed", "--status", "--job", "-j", "--since", "--until",
                   "--min-duration", "--max-duration", "--tag", "--grep")  # fmt: skip


def _filters_given(argv: list[str]) -> str:
    """The filter options as the user typed them, for `no runs match --job nightly`."""
    import shlex

    shown: list[str] = []
    words = iter(argv[1:])
    for word in words:
        name = word.split("=", 1)[0]
        if name not in _FILTER_OPTIONS:
            continue
        if name == "--failed" or "=" in word:
            shown.append(word)
        else:
            shown += [word, shlex.quote(next(words, ""))]
    return " ".join(shown)


EVENT_COLUMNS = [
    Column("seq", "SEQ", "number"),
    Column("ts", "TIME", "time_ms"),
    Column("level", "LEVEL", "status"),
    Column("event_type", "TYPE", "id"),
    Column("message", "MESSAGE"),
    Column("data", "DATA"),
]
# As history.queries.EVENT_FIELDS (and iter_event_json) order them.
MACHINE_EVENT_COLUMNS = [
    Column(key, key) for key in ("seq", "ts", "event_type", "level", "message", "data")
]
RUN_KINDS = {
    "started_at": "time_ms", "finished_at": "time_ms", "heartbeat_at": "time_ms",
    "duration_ms": "duration", "event_count": "count", "warning_count": "count",
    "error_count": "count", "items_total": "count", "items_ok": "count", "items_failed": "count",
}  # fmt: skip
HIDDEN_RUN_FIELDS = ("id",)

RunArgument = Annotated[
    str | None, typer.Argument(help="Run id, or a unique prefix of one.", show_default=False)
]
LastOption = Annotated[bool, typer.Option("--last", help="The newest run.")]


def _the_run(store: Store, run: str | None, last: bool) -> dict[str, Any]:
    """The run a command names: by id or prefix, or ``--last``."""
    from runstore.history.queries import HistoryFilter, history

    if (run is None) == (not last):
        fail("give a run id (or prefix), or --last", 2)
    if run is None:
        newest = history(store, HistoryFilter(limit=1))
        if not newest:
            fail("the store has no runs yet")
        run = newest[0]["run_id"]
    return store.find_run(run)


FollowOption = Annotated[
    bool,
    typer.Option(
        "--follow",
        "-f",
        help="Go on printing what the run adds until it ends (Ctrl-C stops following).",
    ),
]


@app.command()
def show(
    run: RunArgument = None,
    last: LastOption = False,
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
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="One JSON object: the run's fields, and its events (those the filters keep) "
            "under `events`.",
        ),
    ] = False,
    as_jsonl: Annotated[
        bool, typer.Option("--jsonl", help="The events only, one JSON object per line.")
    ] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="The events only, as CSV.")] = False,
    follow: FollowOption = False,
    wide: WideOption = False,
    db: DbOption = None,
) -> None:
    """Show one run: its fields, then its events as a timeline (streamed, whatever its size).

    With --follow, a running run's events are printed as they are stored, until it ends (as
    lines, or with --jsonl as JSON objects).

    Example: `runstore show 20261128-0301 --level warning`

    Example: `runstore show --last --follow --level warning`
    """
    from runstore.cli.output import Format, choose_format, emit, emit_record, paged
    from runstore.cli.table import terminal_width
    from runstore.history.queries import event_filter, event_json, iter_event_json

    fmt = choose_format(as_json, as_jsonl, as_csv)
    if follow and fmt in (Format.JSON, Format.CSV):
        fail("--follow prints events as they come: use it with --jsonl, or alone", 2)
    only = event_filter(min_level=level, types=event_type or (), tail=tail)
    store = open_store(db)
    record = _the_run(store, run, last)
    fields = {k: v for k, v in record.items() if k not in HIDDEN_RUN_FIELDS}
    fields["tags"] = store.run_tags(record["id"])
    if fmt is Format.JSON:
        _write_run_json(sys.stdout, fields, iter_event_json(store, record["id"], only))
    elif fmt is Format.JSONL:
        for text in event_json(_events(store, record["id"], only, follow, sys.stdout)):
            sys.stdout.write(text)
            sys.stdout.write("\n")
    elif fmt is Format.CSV:
        emit(store.iter_event_rows(record["id"], only), MACHINE_EVENT_COLUMNS, fmt)
    elif follow:
        emit_record(_shown_run(fields), fmt, RUN_KINDS, wide=wide)
        rows = _shown_events(_events(store, record["id"], only, True, sys.stdout))
        _follow_lines(rows, sys.stdout, None if wide or fmt is Format.TEXT else terminal_width())
    else:
        rows = _shown_events(store.iter_event_rows(record["id"], only))
        with paged(fmt is Format.TABLE) as out:
            emit_record(_shown_run(fields), fmt, RUN_KINDS, out=out, wide=wide)
            out.write("\n")
            emit(rows, EVENT_COLUMNS, fmt, out=out, wide=wide, plain=True)


def _follow_lines(rows: Iterable[tuple[Any, ...]], out: TextIO, width: int | None) -> None:
    """Events as they come, each on a line of fixed columns (a table cannot wait for its widths),
    cut to ``width`` when given."""
    from runstore.cli.table import ELLIPSIS, cell, plain_cell

    out.write(f"\n{'SEQ':>5}  {'TIME':<23}  {'LEVEL':<7}  {'TYPE':<16}  MESSAGE  DATA\n")
    for seq, ts, level, event_type, message, data in rows:
        line = (
            f"{seq:>5}  {cell(ts, 'time_ms'):<23}  {level:<7}  {plain_cell(event_type):<16}  "
            f"{plain_cell(message)}  {plain_cell(data)}"
        ).rstrip()
        if width is not None and len(line) > width:
            line = line[: width - 1] + ELLIPSIS
        out.write(line + "\n")


def _write_run_json(out: TextIO, fields: dict[str, Any], events: Iterable[str]) -> None:
    """``show --json``: the run's fields and its events (JSON texts), written as they stream."""
    import json

    from runstore.cli.output import raw_value

    head = json.dumps({k: raw_value(v) for k, v in fields.items()}, default=str, indent=2)
    out.write(head[: -len("\n}")] + ',\n  "events": [')
    n = 0
    for n, text in enumerate(events, 1):
        out.write("\n    " if n == 1 else ",\n    ")
        out.write(text)
    out.write("\n  ]\n}\n" if n else "]\n}\n")


def _shown_run(fields: dict[str, Any]) -> dict[str, Any]:
    """The run's fields as a person reads them: what is known of a running or abandoned run."""
    from runstore.cli.table import cell
    from runstore.humanize import humane_age, humane_duration

    shown = {k: v for k, v in fields.items() if v is not None and k != "tags"}
    if fields["tags"]:
        shown["tags"] = ", ".join(f"{k}={v}" for k, v in fields["tags"].items())
    if fields["status"] == "running":
        shown["status"] = f"running (for {humane_age(fields['started_at'])})"
    elif fields["status"] == "abandoned" and fields["duration_ms"] is not None:
        seen = fields.get("heartbeat_at") or fields.get("finished_at")
        shown["duration_ms"] = f"≥ {humane_duration(fields['duration_ms'])}" + (
            f", last seen {cell(seen, 'time_ms')}" if seen is not None else ""
        )
    return shown


def _shown_events(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Stored events (as ``Store.iter_event_rows`` gives them) as EVENT_COLUMNS shows them: an
    output line's text as its message, its stream (and whether it was cut) as its data; the
    message a warning or error repeats in its data said once."""
    import json

    for seq, ts, event_type, level, message, text in rows:
        if text is None:
            pass
        elif event_type == "output" and message is None:
            data = json.loads(text)
            message = data.get("line")
            text = data.get("stream", "") + (", cut" if data.get("truncated") else "")
        elif message is not None and '"message"' in text:
            data = json.loads(text)
            if data.get("message") == message:
                del data["message"]
                text = json.dumps(data, ensure_ascii=False) if data else None
        yield seq, ts, level, event_type, message or "", text or ""  # nothing shows as empty


@app.command()
def logs(
    run: RunArgument = None,
    last: LastOption = False,
    stream: Annotated[
        str | None, typer.Option("--stream", help="Only this stream: stdout or stderr.")
    ] = None,
    follow: FollowOption = False,
    db: DbOption = None,
) -> None:
    """Print a run's stored output as plain text, in the order it was written.

    Output is what `runstore exec` captured of its command's stdout and stderr (lines over the
    size limit are stored cut). At a terminal control characters are shown escaped. With
    --follow, a running run's output is printed as it is stored, until the run ends.

    Example: `runstore logs --last --stream stderr`

    Example: `runstore logs --last --follow`
    """
    import json

    from runstore.cli.output import paged
    from runstore.history.queries import event_filter
    from runstore.humanize import escape_controls

    only = event_filter(types=("output",), stream=stream)
    store = open_store(db)
    record = _the_run(store, run, last)
    at_terminal = sys.stdout.isatty()
    written = 0
    with paged(at_terminal and not follow) as out:
        for row in _events(store, record["id"], only, follow, out):
            line = json.loads(row[5]).get("line", "") if row[5] else ""
            out.write(escape_controls(line) if at_terminal else line)
            out.write("\n")
            written += 1
    if not written and at_terminal:
        what = f"{stream} output" if stream else "output"
        print(f"run {record['run_id']} has no stored {what}", file=sys.stderr)


def _events(
    store: Store, run_pk: int, only: EventFilter, follow: bool, out: TextIO
) -> Iterator[tuple[Any, ...]]:
    """A run's events as ``Store.iter_event_rows`` gives them: those stored, or (``follow``)
    those too that it adds until it ends; Ctrl-C stops following, quietly (exit 130)."""
    if not follow:
        yield from store.iter_event_rows(run_pk, only)
        return
    from runstore.history.follow import follow_events

    try:
        yield from follow_events(store, run_pk, only, waiting=out.flush)
    except KeyboardInterrupt:
        out.flush()
        raise typer.Exit(130) from None


@app.command()
def export(
    run: Annotated[
        str | None,
        typer.Argument(help="Run id or unique prefix. Omit (with --jsonl) to export many runs."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here (whole or not at all); - for stdout."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only runs started since (7d, ...).")
    ] = None,
    job: Annotated[list[str] | None, typer.Option("--job", "-j", help="Only this job.")] = None,
    as_jsonl: JsonlOption = False,
    db: DbOption = None,
) -> None:
    """Regenerate a run's run_log.json from the store; or, with --jsonl, every run (or those
    --since and --job keep), one JSON line each, oldest first.

    Examples: `runstore export demo-001 -o run_log.json`, `runstore export --since 7d --jsonl`
    """
    from contextlib import nullcontext

    from runstore.files import descriptor, open_output, refuse_clashes
    from runstore.history.queries import HistoryFilter, iter_history
    from runstore.humanize import parse_when
    from runstore.record.runlog import write_run_log, write_run_log_line
    from runstore.store.location import resolve_db, store_files

    if run is None and not as_jsonl:
        fail("give a run id; or --jsonl to export many runs, one JSON line each", 2)
    if run is not None and (since is not None or job):
        fail("a run id exports that run: --since and --job choose runs when none is given", 2)
    if output is not None and descriptor(str(output)) == 1:
        output = None  # `-o -` is stdout, as without -o
    since_at = parse_when(since, "--since") if since else None
    refuse_clashes({"--output": output}, store_files=store_files(resolve_db(db)))
    store = open_store(db)
    target = open_output(output, private=True) if output is not None else nullcontext(sys.stdout)
    if run is not None:
        record = store.find_run(run)
        with target as out:
            (write_run_log_line if as_jsonl else write_run_log)(out, store, record)
        return
    flt = HistoryFilter(since=since_at, jobs=job or [], limit=None, oldest_first=True)
    with target as out:
        for record in iter_history(store, flt):  # streamed: memory stays flat in the run count
            write_run_log_line(out, store, record)
