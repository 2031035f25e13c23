"""Connections to a store: engine creation, every SQLite pragma that sets up a connection, how
transactions begin, busy handling, the WAL switch, read-only and raw connections. Here and nowhere
else."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.pool import NullPool, Pool, QueuePool

from runstore.errors import StoreError, driver_problem, first_line
from runstore.store.location import display, sqlite_path

# Seconds a connection waits for another writer: the default 5 s is too short under load.
SQLITE_BUSY_TIMEOUT_S = 30.0
# Attempts for a write transaction that still finds the database locked after the busy wait.
LOCKED_RETRIES = 5

# Execution option that marks a connection as read-only: it begins a deferred transaction.
READ_ONLY = "runstore_read_only"
SQLITE_LIMIT_LENGTH = 0  # sqlite3.SQLITE_LIMIT_LENGTH, named from Python 3.11 on

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


def get_query_only_engine(path: Path) -> Engine:
    """A store file opened so that nothing can be written through it: read-only (``mode=ro``)
    and ``query_only``; unlike ``get_read_only_engine`` it sees other processes' writes as they
    commit (for ``runstore ui``, whose pages follow live runs)."""
    key = f"query-only:{path}"
    engine = _engines.get(key)
    if engine is None:
        uri = sqlite_file_uri(path)

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(
                uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False
            )
            conn.execute("PRAGMA query_only=1")
            return conn

        engine = _engines[key] = _create_sqlite(connect, QueuePool)
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


def driver_connection(conn: Connection) -> Any:
    """The DBAPI connection under ``conn``, for what SQLAlchemy does not do: a PRAGMA outside a
    transaction, VACUUM, the plain cursor that run_log.json streams through."""
    return conn.connection.driver_connection


@contextmanager
def foreign_keys_off(conn: Connection) -> Iterator[None]:
    """SQLite's batch ALTERs copy and drop tables; with foreign keys on, dropping ``runs`` would
    cascade-delete every event. The pragma only takes effect outside a transaction."""
    raw = driver_connection(conn)
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:  # also after a failure: the connection goes back to the pool as it came
        raw.execute("PRAGMA foreign_keys=ON")


def write_lock_taken(path: Path) -> bool:
    """Whether a connection holds the write lock of the SQLite store at ``path`` right now:
    asked without waiting, and let go at once when it was free."""
    try:
        uri = f"file:{quote(str(path.absolute()))}?mode=rw"  # never creates the file
        conn = sqlite3.connect(uri, uri=True, timeout=0)
    except sqlite3.Error:
        return False
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.rollback()
        return False
    except sqlite3.Error as exc:
        return driver_problem(exc) == "locked"
    finally:
        conn.close()


def ensure_wal(engine: Engine, where: str) -> None:
    """WAL is a property of the file: set once at creation, checked (and mended) on open.
    SQLite fails this switch at once, without its busy wait, while another connection writes
    (a process that lost the race to create the store): so wait here."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            with engine.connect() as conn:
                raw = driver_connection(conn)
                if raw.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    raw.execute("PRAGMA journal_mode=WAL")
            return
        except (DatabaseError, sqlite3.DatabaseError) as exc:
            if driver_problem(exc) == "locked" and time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            if driver_problem(exc) == "read-only":
                return  # a read-only store can still be read
            message = f"{where} cannot be opened as a runstore store: {first_line(exc)}"
            raise StoreError(message) from exc


def query_connection(
    path: Path, *, immutable: bool, value_bytes: int, heap_bytes: int | None
) -> sqlite3.Connection:
    """A connection for ad hoc SQL that cannot write (``mode=ro`` and ``query_only``), whose
    values hold at most ``value_bytes`` (SQLite's length limit) and whose process gives SQLite at
    most ``heap_bytes`` (its hard heap limit: process-wide, and it can only be lowered; None
    leaves it as it is)."""
    conn = sqlite3.connect(sqlite_file_uri(path, immutable=immutable), uri=True, timeout=30)
    conn.execute("PRAGMA query_only=1")
    if heap_bytes is not None:
        conn.execute(f"PRAGMA hard_heap_limit={heap_bytes}")
    if hasattr(conn, "setlimit"):  # Python 3.11+; before, the heap limit alone bounds
        conn.setlimit(SQLITE_LIMIT_LENGTH, value_bytes)
    return conn


def limited_memory_connection(value_bytes: int) -> sqlite3.Connection:
    """An in-memory connection whose values hold at most ``value_bytes``."""
    conn = sqlite3.connect(":memory:")
    if hasattr(conn, "setlimit"):
        conn.setlimit(SQLITE_LIMIT_LENGTH, value_bytes)
    return conn


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
