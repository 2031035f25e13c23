"""``runstore prune``: delete old runs and give the space back."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from runstore.cli._app import DbOption, app, warn
from runstore.cli.output import JsonObjectOption, print_json
from runstore.humanize import human_bytes, local_time, plural


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
        bool, typer.Option("--dry-run", help="Report what would be removed; change nothing.")
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
    from runstore.humanize import parse_duration
    from runstore.store.store import Store

    seconds = parse_duration(older_than, "--older-than")
    store = Store.open(db, mode="read")
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
        print_json(result.as_dict())
        return
    _print_report(result, older_than.strip())


def _print_report(result: Any, older_than: str) -> None:
    """What a prune removed (or would), job by job, and the space it gave back."""
    verb = "would remove" if result.dry_run else "removed"
    print(
        f"{verb} {plural(result.runs, 'run')} and {plural(result.events, 'event')} "
        f"started before {local_time(result.cutoff)} (older than {older_than})"
    )
    width = max((len(name) for name in result.by_job), default=0)
    for name, count in result.by_job.items():
        print(f"  {name.ljust(width)}  {count:>8,}")
    if result.kept_older:
        print(
            f"kept {plural(result.kept_older, 'older run')} "
            "(running, or kept by --keep-last/--keep-failed)"
        )
    if result.dry_run:
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
