"""Keeping the store healthy: ``prune``, ``db backup``, ``db check``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from runstore.cli._app import DbOption, StaleAfterOption, app, db_app, error, warn
from runstore.humanize import human_bytes, plural

JsonObjectOption = Annotated[bool, typer.Option("--json", help="Output one JSON object.")]


def _print_json(record: dict[str, Any]) -> None:
    print(json.dumps(_jsonable(record), default=str, indent=2))


def _jsonable(value: Any) -> Any:
    from runstore.cli.output import raw_value

    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return raw_value(value)


@app.command()
def prune(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Remove runs started longer ago than this: 90d, 12w, 36h (0s: any age).",
            show_default=False,
        ),
    ],
    keep_last: Annotated[
        int,
        typer.Option("--keep-last", min=0, help="Keep each job's newest N runs, however old."),
    ] = 0,
    keep_failed: Annotated[
        bool,
        typer.Option(
            "--keep-failed", help="Keep runs that did not complete (failed, cancelled, abandoned)."
        ),
    ] = False,
    job: Annotated[
        list[str] | None, typer.Option("--job", "-j", help="Only this job (repeatable).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Report what would be removed; change nothing.")
    ] = False,
    no_vacuum: Annotated[
        bool,
        typer.Option(
            "--no-vacuum",
            help="Skip the WAL checkpoint and VACUUM that give the space back to the disk.",
        ),
    ] = False,
    as_json: JsonObjectOption = False,
    db: DbOption = None,
) -> None:
    """Delete old runs and their events; running runs are never removed.

    Deletes in short batches (safe while jobs log), then on SQLite checkpoints the WAL and
    VACUUMs so the file shrinks (VACUUM holds the write lock while it rewrites the file).

    Examples: `runstore prune --older-than 90d --keep-last 10 --keep-failed`,
    `runstore prune --older-than 30d --job nightly-backup --dry-run`
    """
    from runstore.history.prune import prune as prune_store
    from runstore.humanize import local_time, parse_duration
    from runstore.store.store import Store

    seconds = parse_duration(older_than, "--older-than")
    store = Store.open(db)
    show_progress = not as_json and not dry_run and sys.stderr.isatty()

    def progress(removed_runs: int, removed_events: int) -> None:
        print(
            f"\rremoved {plural(removed_runs, 'run')}, {plural(removed_events, 'event')}...",
            end="",
            file=sys.stderr,
            flush=True,
        )

    result = prune_store(
        store,
        seconds,
        keep_last=keep_last,
        keep_failed=keep_failed,
        jobs=job or [],
        dry_run=dry_run,
        vacuum=not no_vacuum,
        progress=progress if show_progress else None,
    )
    if show_progress and result.runs:
        print(file=sys.stderr)
    if result.vacuum_error:
        warn(f"{result.vacuum_error}; the space is freed at the next prune or VACUUM")
    if as_json:
        _print_json(result.as_dict())
        return
    verb = "would remove" if dry_run else "removed"
    print(
        f"{verb} {plural(result.runs, 'run')} and {plural(result.events, 'event')} "
        f"started before {local_time(result.cutoff)} (older than {older_than.strip()})"
    )
    width = max((len(name) for name in result.by_job), default=0)
    for name, count in result.by_job.items():
        print(f"  {name.ljust(width)}  {count:>8,}")
    if result.kept_older:
        print(
            f"kept {plural(result.kept_older, 'older run')} "
            "(running, or kept by --keep-last/--keep-failed)"
        )
    if dry_run:
        print("dry run: nothing was changed")
    elif result.vacuumed:
        print(
            f"freed {human_bytes(result.bytes_freed)}; the store is now "
            f"{human_bytes(result.size_after)}"
            if result.size_after is not None
            else "vacuumed the tables"
        )
    elif result.free_bytes:
        print(
            f"{human_bytes(result.free_bytes)} is free inside the store file; "
            "prune without --no-vacuum to give it back to the disk"
        )


@db_app.command("backup")
def db_backup(
    file: Annotated[
        Path, typer.Argument(help="Where to write the copy (- for stdout).", show_default=False)
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force", "-f", help="Replace FILE if it exists, and a -wal/-journal left beside it."
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Copy a SQLite store to FILE with SQLite's online backup; safe while runs are writing.

    The copy passes SQLite's integrity check before it takes FILE's place; it is readable by
    its owner only and never left half-written. For PostgreSQL stores use pg_dump.

    Example: `runstore db backup ~/backups/runstore-$(date +%F).db`
    """
    from runstore.files import descriptor
    from runstore.history.prune import backup

    result = backup(db, file, force=force)
    print(
        f"backed up {plural(result.runs, 'run')} to {result.target} "
        f"({human_bytes(result.bytes)}, schema {result.schema_revision}, integrity ok)",
        file=sys.stderr if descriptor(str(file)) == 1 else sys.stdout,
    )


@db_app.command("check")
def db_check(
    quick: Annotated[
        bool,
        typer.Option("--quick", help="SQLite: PRAGMA quick_check, faster on a large store."),
    ] = False,
    stale_after: StaleAfterOption = "5m",
    as_json: JsonObjectOption = False,
    db: DbOption = None,
) -> None:
    """Check the store: integrity (SQLite), schema revision, runs by status, stale runs.

    Exit 0 when healthy; exit 1 with one `Error:` line per problem when the integrity check
    fails, the schema is newer than this runstore, or runs are still `running` although their
    process is gone (`runstore reap` marks them abandoned).

    Example: `runstore db check --quick || alert "run store needs attention"`
    """
    from runstore.history.prune import check
    from runstore.humanize import parse_duration

    report = check(db, quick=quick, stale_after_s=parse_duration(stale_after, "--stale-after"))
    if as_json:
        _print_json(report.as_dict())
    else:
        _print_check(report)
    for problem in report.problems:
        error(problem)
    if not report.ok:
        raise typer.Exit(1)


def _print_check(report: Any) -> None:
    from runstore.humanize import humane_age

    size = f", {human_bytes(report.size)}" if report.size is not None else ""
    lines = [("store", f"{report.store} ({report.dialect}{size})")]
    if report.integrity_ok is None:
        integrity = "not checked on this backend" if report.dialect != "sqlite" else "not checked"
    else:
        integrity = f"{'ok' if report.integrity_ok else 'FAILED'} ({report.integrity_mode})"
    lines.append(("integrity", integrity))
    schema = {
        "current": f"{report.schema_revision} (current)",
        "older": f"{report.schema_revision}, older than this runstore's "
        f"{report.code_revision}: `runstore db upgrade` brings it up to date",
        "newer": f"{report.schema_revision}, NEWER than this runstore's {report.code_revision}",
    }[report.schema_state]
    lines.append(("schema", schema))
    stale_ids = {run["run_id"] for run in report.stale}
    if report.runs_by_status:
        counts = ", ".join(f"{n:,} {status}" for status, n in report.runs_by_status.items() if n)
        lines.append(("runs", f"{report.runs_total:,}" + (f" ({counts})" if counts else "")))
        lines.append(("running", f"{len(report.running)} ({len(stale_ids)} stale)"))
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    for run in report.running:
        mark = "STALE " if run["run_id"] in stale_ids else ""
        host = f"pid {run['pid']} on {run['host']}" if run.get("pid") else run.get("host") or ""
        age = humane_age(run["started_at"])
        print(f"  {mark}{run['run_id']}  {run['job']}  running for {age}  {host}".rstrip())
