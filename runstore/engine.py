"""Engine creation: the SQLite pragmas, busy handling and pool choice live here and nowhere else."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

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


def sqlite_read_only_url(path: Path) -> str:
    """A store file this user may not write. Reading a WAL database needs its -shm file, which
    cannot be created here; ``immutable`` reads the file as it stands, without one."""
    return f"sqlite:///file:{quote(str(path))}?mode=ro&immutable=1&uri=true"


def dispose_all() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _create_sqlite(url)
    # Short-lived CLI processes: no pool to keep; many hosts share the server.
    return create_engine(url, poolclass=NullPool)


def _create_sqlite(url: str) -> Engine:
    engine = create_engine(
        url,
        # Connections are checked out by one thread at a time; the flusher thread may be that one.
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
    )

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


def is_locked_error(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database is busy" in text


def retry_locked(work: Callable[[], T], attempts: int = LOCKED_RETRIES) -> T:
    """Run ``work`` again when SQLite still reports the database locked after its busy wait."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except OperationalError as exc:
            if attempt == attempts or not is_locked_error(exc):
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")
