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
    from runstore.location import display, resolve_db

    print(display(resolve_db(db)))


@db_app.command("current")
def db_current(db: DbOption = None) -> None:
    """Print the store's schema revision and the one this runstore writes."""
    from runstore.store import schema_state

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
    from runstore.store import Store

    store = Store.open(db)
    if not quiet:
        from runstore.schema import SCHEMA_REVISION

        print(f"{store.where} is at schema revision {SCHEMA_REVISION}")
