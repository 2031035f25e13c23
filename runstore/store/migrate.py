"""Bring a store to the schema this code writes: create it new, upgrade it, or refuse it.

The common case, a store already at the current revision, costs one query and never imports
Alembic. A new store is created through Alembic only (never ``create_all``), and an upgrade runs
while holding the store's write lock, so two processes never migrate at once.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DatabaseError, OperationalError

from runstore.errors import (
    ForeignDatabase,
    SchemaTooNew,
    StoreBusy,
    StoreError,
    StoreMissing,
    driver_problem,
    first_line,
)
from runstore.store.engine import READ_ONLY, foreign_keys_off
from runstore.store.schema import KNOWN_REVISIONS, SCHEMA_REVISION

VERSION_TABLE = "alembic_version"
PG_MIGRATION_LOCK = 0x72756E73  # "runs": the advisory lock key for migrations on PostgreSQL


def migrations_dir() -> Path:
    """The Alembic environment, inside the package (so an installed wheel carries it)."""
    here = Path(__file__).resolve().parent / "migrations"
    if not (here / "env.py").is_file():
        raise StoreError("runstore's migrations are missing from this installation")
    return here


def alembic_config(connection: Connection | None = None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


# What ensure_schema saw outside the lock when tables appeared without a revision: perhaps
# another process creating the store right now. The locked re-check decides.
_UNSETTLED = "unsettled"


def current_revision(connection: Connection) -> str | None:
    """The store's schema revision; None for an empty database."""
    if not inspect(connection).has_table(VERSION_TABLE):
        if inspect(connection).get_table_names():
            raise ForeignDatabase("the database holds other tables but is not a runstore store")
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def read_revision(engine: Engine, where: str) -> str | None:
    """The store's schema revision (None for an empty database), changing nothing."""
    try:
        # A read: it must not wait for another process's write lock (BEGIN IMMEDIATE would).
        with engine.connect() as conn:
            return current_revision(conn.execution_options(**{READ_ONLY: True}))
    except DatabaseError as exc:
        kind = StoreBusy if driver_problem(exc) == "locked" else StoreError
        raise kind(f"{where} cannot be opened as a runstore store: {first_line(exc)}") from exc


def ensure_schema(
    engine: Engine, where: str, sqlite_file: Path | None, *, create: bool = True
) -> None:
    """Create (unless not ``create``: StoreMissing) or upgrade the store at ``engine``; raise
    StoreError if it cannot be used."""
    try:
        revision = read_revision(engine, where)
    except ForeignDatabase:
        revision = _UNSETTLED
    if revision == SCHEMA_REVISION:
        return
    if revision is None and not create:
        raise StoreMissing(where)
    if revision not in (None, _UNSETTLED, *KNOWN_REVISIONS):
        raise SchemaTooNew(
            f"{where} is at schema revision {revision}, newer than this runstore knows "
            f"(up to {SCHEMA_REVISION}); upgrade runstore to use it"
        )
    try:
        upgrade(engine, sqlite_file if revision not in (None, _UNSETTLED) else None)
    except ForeignDatabase as exc:
        raise StoreError(f"{where}: {exc}") from None
    except OperationalError as exc:
        kind = StoreBusy if driver_problem(exc) == "locked" else StoreError
        raise kind(f"{where} cannot be migrated: {first_line(exc)}") from exc


def upgrade(engine: Engine, backup_of: Path | None = None) -> None:
    """Run Alembic to head under the write lock; back up an existing SQLite file first."""
    from alembic import command

    with engine.connect() as conn:
        sqlite = engine.dialect.name == "sqlite"
        with foreign_keys_off(conn) if sqlite else nullcontext(), conn.begin():
            # BEGIN IMMEDIATE on SQLite: the write lock, held to the end
            if not sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})
            revision = current_revision(conn)  # another process may have migrated meanwhile
            if revision == SCHEMA_REVISION:
                return
            if revision is not None and backup_of is not None:
                backup_copy(backup_of, revision)
            command.upgrade(alembic_config(conn), "head")
            if sqlite:
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise StoreError(f"migration left {len(broken)} broken references; rolled back")


def backup_copy(path: Path, revision: str) -> Path:
    """Copy the SQLite file before an upgrade: a consistent snapshot (SQLite's backup API),
    complete and checked before the upgrade starts."""
    from runstore.store.sqlite_file import backup_file

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.before-{SCHEMA_REVISION}-from-{revision}-{stamp}.bak")
    backup_file(path, target)
    return target
