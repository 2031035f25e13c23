"""``runstore db ...``: the store itself: where it is, its schema, copies, backups, checks."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from runstore.cli._app import STALE_AFTER, DbOption, StaleAfterOption, db_app, error, fail
from runstore.cli.output import JsonObjectOption, print_json, progress_bar
from runstore.humanize import format_duration, human_bytes, plural


@db_app.command("path")
def db_path(db: DbOption = None) -> None:
    """Print where the store is: a file path for SQLite, the URL (without password) otherwise.

    Example: sqlite3 "$(runstore db path)" "select run_id, status from runs"
    """
    from runstore.store.location import display, resolve_db

    print(display(resolve_db(db)))


@db_app.command("current")
def db_current(db: DbOption = None) -> None:
    """Print the store's schema revision and the one this runstore writes."""
    from runstore.errors import StoreMissing
    from runstore.store.schema import SCHEMA_REVISION
    from runstore.store.store import Store

    try:
        current = Store.open(db, mode="inspect").revision()
    except StoreMissing:
        current = None
    print(f"{current or 'none'} (this runstore: {SCHEMA_REVISION})")


@db_app.command("upgrade")
def db_upgrade(
    db: DbOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing.")] = False,
) -> None:
    """Create the store, or upgrade it to this runstore's schema (a backup is taken first).

    Commands do this by themselves when needed; this one does it on purpose, e.g. at deploy time.
    """
    from runstore.errors import StoreMissing
    from runstore.store.schema import SCHEMA_REVISION
    from runstore.store.store import Store

    try:
        before = Store.open(db, mode="inspect").revision()
    except StoreMissing:
        before = None
    store = Store.open(db)
    if quiet:
        return
    if before is None:
        print(f"created the store schema (revision {SCHEMA_REVISION}) in {store.where}")
    elif before != SCHEMA_REVISION:
        print(f"upgraded {store.where} from schema revision {before} to {SCHEMA_REVISION}")
    else:
        print(f"{store.where} is already at schema revision {SCHEMA_REVISION}")


@db_app.command("copy")
def db_copy(
    to: Annotated[
        str | None, typer.Option("--to", help="Target store (path or URL); source is --db.")
    ] = None,
    source: Annotated[
        str | None, typer.Option("--from", help="Source store (path or URL); target is --db.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Copy the whole history into another store (SQLite to PostgreSQL and back), then verify
    it by row counts and a checksum. Copying again skips what is already there.

    Example: `runstore db copy --to postgresql+psycopg://ops@db.internal/runstore`
    """
    from runstore.history.transfer import copy_history
    from runstore.store.location import display, resolve_db
    from runstore.store.store import Store

    if (to is None) == (source is None):
        fail("give exactly one of --to URL (copy out of --db) or --from URL (copy into --db)", 2)
    src_url, dst_url = (
        (resolve_db(db), resolve_db(to)) if to else (resolve_db(source), resolve_db(db))
    )
    # A mistyped source must not become a new empty store: it is opened to read.
    src, dst = Store.open(src_url, mode="read"), Store.open(dst_url)
    report = copy_history(src, dst, progress=progress_bar("copying runs"))
    print(
        f"{display(src_url)} -> {display(dst_url)}: {report.copied} runs copied, "
        f"{report.replaced} replaced, {report.skipped} already there; {report.events} events"
    )
    if not report.ok:
        fail("verification failed: " + "; ".join(report.problems))
    print(
        f"verified: {report.verified_runs} runs, {report.verified_events} events, "
        f"checksum {report.checksum[:16]}"
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
    from runstore.history.backup import backup

    result = backup(db, file, force=force)
    print(
        f"backed up {plural(result.runs, 'run')} to {result.target} "
        f"({human_bytes(result.bytes)}, schema {result.schema_revision}, integrity ok)",
        file=sys.stderr if descriptor(str(file)) == 1 else sys.stdout,
    )


@db_app.command("search")
def db_search(
    switch: Annotated[
        str | None,
        typer.Argument(
            help="on, or off; nothing: say whether the store keeps one.",
            metavar="[on|off]",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Keep a search index for `history --grep` in this store, or drop it.

    Without the index, `history --grep` reads every event's text: at once for thousands of runs,
    seconds for 10,000,000 events. With it, a search reads the index (under half a second on
    10,000,000 events), at a cost when events are written: an output line or a message is stored
    at about a fifth of the speed, and the store grows by about 40% for output-heavy runs (item
    events cost nothing). Turning it on indexes what is already stored. On PostgreSQL it needs
    the pg_trgm extension, which a database owner may create.

    Example: runstore db search on
    """
    from sqlalchemy.exc import DBAPIError

    from runstore.cli._app import open_store
    from runstore.errors import reason
    from runstore.store import search

    if switch not in (None, "on", "off"):
        fail(f"say on or off, not {switch!r}", 2)
    store = open_store(db)
    with store.read() as conn:
        indexed = search.has_index(conn)
    if switch is None:
        said = "on" if indexed else "off (runstore db search on: --grep through an index)"
        print(f"search index: {said}")
        return
    if (switch == "on") == indexed:
        print(f"the search index is already {switch} in {store.where}")
        return
    started = time.monotonic()
    try:
        store.write(search.create_index if switch == "on" else search.drop_index)
    except DBAPIError as exc:
        fail(f"cannot turn the search index {switch}: {reason(exc)}")
    took = format_duration(time.monotonic() - started)
    print(f"search index {switch} in {store.where} ({took})")


@db_app.command("check")
def db_check(
    quick: Annotated[
        bool,
        typer.Option("--quick", help="SQLite: PRAGMA quick_check, faster on a large store."),
    ] = False,
    stale_after: StaleAfterOption = STALE_AFTER,
    as_json: JsonObjectOption = False,
    db: DbOption = None,
) -> None:
    """Check the store: integrity (SQLite), schema revision, runs by status, stale runs.

    Exit 0 when healthy; exit 1 with one `Error:` line per problem when the integrity check
    fails, the schema is newer than this runstore, or runs are still `running` although their
    process is gone (`runstore reap` marks them abandoned).

    Example: `runstore db check --quick || alert "run store needs attention"`
    """
    from runstore.history.check import check
    from runstore.humanize import parse_duration

    report = check(db, quick=quick, stale_after_s=parse_duration(stale_after, "--stale-after"))
    if as_json:
        print_json(report.as_dict())
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
