"""Engine creation: the SQLite pragmas, busy handling and pool choice live here and nowhere else."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool, Pool, QueuePool

from runstore.errors import driver_problem
from runstore.store.location import display, sqlite_path

# Seconds a connection waits for another writer: the default 5 s is too short under load.
SQLITE_BUSY_TIMEOUT_S = 30.0
# Attempts for a write transaction that still finds the database locked after the busy wait.
LOCKED_RETRIES = 5

# Execution option that marks a connection as read-only: it begins a deferred transaction.
READ_ONLY = "runstore_read_only"

_engines: dict[str, Engine] = {}

T = TypeVar("T")


def get_engine(url: str) -> Engine:
    """One Engine per database URL per process."""
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = _create(url)
    return engine


def sqlite_file_uri(path: Path, *, immutable: bool = False) -> str:
    """A read-only SQLite URI for ``path``, quoted: a '#' or '?' in a path would end it."""
    return f"file:{quote(str(path.absolute()))}?mode=ro" + ("&immutable=1" if immutable else "")


def get_read_only_engine(path: Path) -> Engine:
    """A store file this user may not write. Reading a WAL database needs its -shm file, which
    cannot be created here; ``immutable`` reads the file as it stands, without one."""
    key = f"read-only:{path}"
    engine = _engines.get(key)
    if engine is None:
        uri = sqlite_file_uri(path, immutable=True)
        engine = _engines[key] = _create_sqlite(
            lambda: sqlite3.connect(uri, uri=True, check_same_thread=False), NullPool
        )
    return engine


def dispose_all() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def _create(url: str) -> Engine:
    path = sqlite_path(url)
    if path is not None:
        # Connect by file name ourselves: how a URL's path is decoded differs between SQLAlchemy
        # releases, and a '#' or '?' in the path must name this file on all of them.
        name = str(path)
        return _create_sqlite(
            # One thread at a time uses a connection; the flusher thread may be that one.
            lambda: sqlite3.connect(name, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False),
            QueuePool,
        )
    if url.startswith("sqlite"):
        return create_engine(url)  # an in-memory store, for experiments
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from runstore.errors import StoreError

    try:
        # A small pool: a command reuses its connection (an export of many runs opens one, not
        # one per run); pre-ping replaces a connection the server dropped while a job was quiet.
        return create_engine(url, pool_size=2, max_overflow=4, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        hint = (
            "; install PostgreSQL support with: pip install 'runstore[postgres]'"
            if url.startswith("postgresql") and isinstance(exc, ImportError)
            else "; runstore stores are SQLite files or postgresql+psycopg:// URLs"
        )
        raise StoreError(f"cannot use the store URL {display(url)!r}{hint}") from exc


def _create_sqlite(creator: Callable[[], Any], poolclass: type[Pool]) -> Engine:
    engine = create_engine("sqlite://", creator=creator, poolclass=poolclass)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event, not pysqlite, decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # NORMAL in WAL mode: durable against process crashes, one fsync per checkpoint.
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Cascade deletes of a run's events and refuse orphan events.
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            # IMMEDIATE takes the write lock up front, so a read-then-write transaction can
            # never hit the upgrade deadlock that SQLite resolves by failing without waiting.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def retry_locked(work: Callable[[], T], attempts: int = LOCKED_RETRIES) -> T:
    """Run ``work`` again when SQLite still reports the database locked after its busy wait."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except OperationalError as exc:
            if attempt == attempts or driver_problem(exc) != "locked":
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")
