"""``runstore db ...``: where the store is and which schema it has."""

from __future__ import annotations

from typing import Annotated

import typer

from runstore.cli._app import DbOption, db_app


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
    from runstore.store.store import schema_state

    current, head = schema_state(db)
    print(f"{current or 'none'} (this runstore: {head})")


@db_app.command("upgrade")
def db_upgrade(
    db: DbOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing.")] = False,
) -> None:
    """Create the store, or upgrade it to this runstore's schema (a backup is taken first).

    Commands do this by themselves when needed; this one does it on purpose, e.g. at deploy time.
    """
    from runstore.store.store import Store

    store = Store.open(db)
    if not quiet:
        from runstore.store.schema import SCHEMA_REVISION

        print(f"{store.where} is at schema revision {SCHEMA_REVISION}")


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
    from runstore.cli._app import fail
    from runstore.history.transfer import copy_history
    from runstore.store.location import display, resolve_db
    from runstore.store.store import Store

    if (to is None) == (source is None):
        fail("give exactly one of --to URL (copy out of --db) or --from URL (copy into --db)", 2)
    src_url, dst_url = (
        (resolve_db(db), resolve_db(to)) if to else (resolve_db(source), resolve_db(db))
    )
    from runstore.store.store import schema_state

    if schema_state(src_url)[0] is None:  # a mistyped source must not become a new empty store
        fail(f"there is no runstore store at {display(src_url)} to copy from")
    src, dst = Store.open(src_url), Store.open(dst_url)
    report = copy_history(src, dst, progress=_copy_progress())
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


def _copy_progress():  # type: ignore[no-untyped-def]
    import sys

    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    task = bar.add_task("copying runs", total=None)
    bar.start()

    def advance(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)
        if done >= total:
            bar.stop()

    return advance
