"""The store: the one way to open a database, and every write and read of runs and events.

Nothing here knows about terminals or Typer. Writes go through ``Store.write``, which begins the
transaction IMMEDIATE on SQLite and retries when the database stays locked past the busy wait.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import count, repeat
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from runstore.errors import (
    AmbiguousRunId,
    DuplicateRunId,
    RunNotFound,
    StoreBusy,
    StoreError,
    StoreMissing,
    StoreWarning,
    driver_problem,
    first_line,
)
from runstore.signals import critical
from runstore.store import engine as engines
from runstore.store.event_rows import EventFilter, event_rows
from runstore.store.location import (
    default_db_path,
    display,
    network_filesystem_warning,
    resolve_db,
    sqlite_path,
)
from runstore.store.migrate import ensure_schema, read_revision
from runstore.store.schema import (
    NEWEST_FIRST,
    SCHEMA_REVISION,
    events,
    run_metrics,
    run_tags,
    runs,
)
from runstore.store.timestamps import datetime_from_ns, server_time, sqlite_time

T = TypeVar("T")

# How a command opens the store:
#   write    create it if missing, upgrade it if older (recording commands, upkeep)
#   read     it must exist; upgrade it if older (the questions)
#   inspect  it must exist; change nothing at all, not even its WAL mode (db check, backups)
OpenMode = Literal["write", "read", "inspect"]

# One event as the hot path hands it over: (time, event_type, level, message, data as JSON). The
# time is an aware datetime, or nanoseconds since the epoch (``time.time_ns()``: the cheap clock).
EventRow = tuple["datetime | int", str, str, "str | None", "str | None"]


@dataclass
class CounterDeltas:
    """What a batch of events adds to its run's counters."""

    warnings: int = 0
    errors: int = 0
    items_ok: int = 0
    items_failed: int = 0

    def add(self, other: CounterDeltas) -> None:
        self.warnings += other.warnings
        self.errors += other.errors
        self.items_ok += other.items_ok
        self.items_failed += other.items_failed


class Store:
    """A run store at one database URL. ``Store.open`` is the way to get one."""

    def __init__(self, url: str, engine: Engine, *, read_only: str = "") -> None:
        self.url = url
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.path = sqlite_path(url)  # the SQLite file, or None
        self.where = display(url)
        # Why this store can only be read (a file this user may not write, a full disk), or "".
        self.read_only = read_only
        placeholder = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._insert_events_sql = (
            "INSERT INTO events (run_pk, seq, ts, event_type, level, message, data) "
            f"VALUES ({', '.join([placeholder] * 7)})"
        )
        self._db_time: Callable[[datetime | int], Any] = (
            sqlite_time if self.is_sqlite else server_time
        )

    @classmethod
    def open(cls, db: str | os.PathLike[str] | None = None, *, mode: OpenMode = "write") -> Store:
        """The store named by ``db``, else RUNSTORE_DB, else the per-user default; ``mode`` says
        what opening it may do (see ``OpenMode``). StoreMissing when ``read``/``inspect`` find
        none; a SQLite file this user cannot write, or on a full disk, opens read-only."""
        url = resolve_db(db)
        path = sqlite_path(url)
        if path is not None:
            _check_sqlite_file(path, create=mode == "write")
        if mode == "inspect":
            return _inspect(cls, url, path)
        store = cls(url, engines.get_engine(url))
        try:
            # Schema first: a file that is not a runstore store is refused before anything
            # changes it.
            ensure_schema(store.engine, store.where, path, create=mode == "write")
        except StoreError as exc:
            why = _only_readable(path) if path is not None else None
            if path is None or why is None or isinstance(exc, StoreMissing):
                raise
            return _open_read_only(cls, url, path, why)
        if path is not None:
            engines.ensure_wal(store.engine, store.where)
            caution = network_filesystem_warning(path)
            if caution is not None:
                warnings.warn(caution, StoreWarning, stacklevel=2)
        return store

    @classmethod
    def open_for_reading(cls, db: str | os.PathLike[str] | None = None) -> Store:
        """The store as ``runstore ui`` reads it: opened as ``read`` opens it (never created),
        then, for a SQLite file, through a connection that cannot write at all; a server
        store's reads are READ ONLY transactions already (see ``read``)."""
        store = cls.open(db, mode="read")
        if store.path is None or store.read_only:
            return store
        engine = engines.get_query_only_engine(store.path)
        return cls(store.url, engine, read_only="it is opened for reading only")

    def revision(self) -> str | None:
        """The store's schema revision; None for an empty database."""
        return read_revision(self.engine, self.where)

    # -- transactions ----------------------------------------------------------------------------

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one short write transaction, retrying while the database is locked."""

        def attempt() -> T:
            with critical(), self.engine.begin() as conn:
                return work(conn)

        if self.read_only:
            raise StoreError(f"cannot write to {self.where}: {self.read_only}")
        try:
            return engines.retry_locked(attempt)
        except OperationalError as exc:
            kind = StoreBusy if driver_problem(exc) == "locked" else StoreError
            raise kind(f"cannot write to {self.where}: {first_line(exc)}") from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reading: every query in it sees one snapshot of the store (SQLite's
        read transaction; REPEATABLE READ on a server, where runs of other hosts commit while we
        read), and its transaction never writes."""
        with self.engine.connect() as conn:
            if not self.is_sqlite:
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            yield conn.execution_options(**{engines.READ_ONLY: True})

    # -- runs ------------------------------------------------------------------------------------

    def create_run(self, values: dict[str, Any], tags: Mapping[str, str] | None = None) -> int:
        """Insert a run row and its tags; refuse a run id that is already taken. Returns the
        run's key."""

        def work(conn: Connection) -> int:
            taken = conn.execute(select(runs.c.id).where(runs.c.run_id == values["run_id"]))
            if taken.first() is not None:
                raise DuplicateRunId(values["run_id"])
            key = conn.execute(insert(runs).values(**values)).inserted_primary_key
            assert key is not None
            if tags:
                rows = [{"run_pk": key[0], "key": k, "value": v} for k, v in tags.items()]
                conn.execute(insert(run_tags), rows)
            return int(key[0])

        try:
            return self.write(work)
        except IntegrityError as exc:  # lost a race with another process taking the same id
            raise DuplicateRunId(values["run_id"]) from exc

    def append_events(
        self,
        run_pk: int,
        rows: Sequence[EventRow],
        deltas: CounterDeltas,
        heartbeat_at: datetime,
    ) -> None:
        """Add events to a run and its counters in one transaction.

        Sequence numbers are allocated by bumping the run's event count, so other processes
        appending to the same run (``runstore event``) interleave without gaps or clashes.
        """
        if not rows:
            return
        times, types, levels, messages, data = zip(*rows)  # columns, for C-speed row building
        db_times = list(map(self._db_time, times))

        def work(conn: Connection) -> None:
            last = conn.execute(
                update(runs)
                .where(runs.c.id == run_pk)
                .values(
                    event_count=runs.c.event_count + len(rows),
                    warning_count=runs.c.warning_count + deltas.warnings,
                    error_count=runs.c.error_count + deltas.errors,
                    items_ok=runs.c.items_ok + deltas.items_ok,
                    items_failed=runs.c.items_failed + deltas.items_failed,
                    items_total=runs.c.items_total + deltas.items_ok + deltas.items_failed,
                    heartbeat_at=self._heartbeat(heartbeat_at),
                )
                .returning(runs.c.event_count)
            ).scalar_one()
            first = last - len(rows) + 1
            conn.exec_driver_sql(
                self._insert_events_sql,
                list(zip(repeat(run_pk), count(first), db_times, types, levels, messages, data)),
            )
            if measured:
                conn.execute(insert(run_metrics), measured)

        measured = _metric_rows(run_pk, types, data, times) if "metric" in types else []
        self.write(work)

    def insert_numbered_events(
        self, conn: Connection, run_pk: int, rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """Insert events that already have their numbers: (seq, time, type, level, message,
        data JSON text), the data kept byte for byte (``db copy`` relies on it)."""
        db_time = self._db_time
        conn.exec_driver_sql(
            self._insert_events_sql,
            [(run_pk, seq, db_time(ts), et, lv, msg, data) for seq, ts, et, lv, msg, data in rows],
        )

    def _heartbeat(self, local: datetime) -> Any:
        """A heartbeat time. On a server shared by many hosts it is the server's own clock, so
        the reaper on another host compares it with that same clock, whatever the skew."""
        return local if self.is_sqlite else func.now()

    def beat(self, run_pk: int, local: datetime) -> None:
        """Mark a quiet run alive."""
        self.update_run(run_pk, {"heartbeat_at": self._heartbeat(local)})

    def now(self) -> datetime:
        """The time that heartbeats are written in: this machine's, or the server's."""
        if self.is_sqlite:
            return datetime.now(timezone.utc)
        with self.read() as conn:
            moment: datetime = conn.execute(select(func.now())).scalar_one()
        return moment.astimezone(timezone.utc)

    def finish_run(self, run_pk: int, values: dict[str, Any]) -> None:
        """Record a run's end. A run already finished by someone else keeps its status."""

        def work(conn: Connection) -> None:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_pk, runs.c.status.in_(("running", "abandoned")))
                .values(**values)
            )

        self.write(work)

    def update_run(self, run_pk: int, values: dict[str, Any]) -> None:
        self.write(
            lambda conn: conn.execute(update(runs).where(runs.c.id == run_pk).values(**values))
        )

    def get_run(self, run_pk: int) -> dict[str, Any]:
        with self.read() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_pk)).mappings().first()
        if row is None:
            raise RunNotFound(str(run_pk))
        return dict(row)

    def first_error_message(self, run_pk: int) -> str | None:
        """The message of a run's first error event (by any writer), if it has one."""
        query = (
            select(events.c.message)
            .where(events.c.run_pk == run_pk, events.c.level == "error")
            .order_by(events.c.seq)
            .limit(1)
        )
        with self.read() as conn:
            return conn.execute(query).scalar()

    def run_tags(self, run_pk: int) -> dict[str, str]:
        query = select(run_tags.c.key, run_tags.c.value).where(run_tags.c.run_pk == run_pk)
        with self.read() as conn:
            return {key: value for key, value in conn.execute(query.order_by(run_tags.c.key))}

    def find_run(self, ref: str) -> dict[str, Any]:
        """A run by its exact id, else by a unique prefix of it."""
        with self.read() as conn:
            row = conn.execute(select(runs).where(runs.c.run_id == ref)).mappings().first()
            if row is not None:
                return dict(row)
            matches = (
                conn.execute(
                    select(runs)
                    .where(_starts_with(runs.c.run_id, ref, sqlite=self.is_sqlite))
                    .order_by(*NEWEST_FIRST)
                    .limit(51)
                )
                .mappings()
                .all()
            )
        if not matches:
            raise RunNotFound(ref)
        if len(matches) > 1:
            raise AmbiguousRunId(ref, [m["run_id"] for m in matches])
        return dict(matches[0])

    def iter_event_rows(
        self, run_pk: int, only: EventFilter | None = None, batch_size: int = 5000
    ) -> Iterator[tuple[Any, ...]]:
        """A run's events (those ``only`` lets through) as tuples (seq, ISO-8601 UTC time, type,
        level, message, data JSON text), in order, streamed without per-row type conversion:
        the fast path behind run_log.json, ``show`` and ``logs``."""
        only = only or EventFilter()
        if only.tail is None:
            with self.read() as conn:
                yield from event_rows(conn, run_pk, only, batch_size)
            return
        with self.read() as conn:  # the last N, read newest first; the connection let go
            last = list(event_rows(conn, run_pk, only, batch_size))
        yield from reversed(last)

    def count_runs(self) -> int:
        with self.read() as conn:
            return int(conn.execute(select(func.count()).select_from(runs)).scalar_one())


def _inspect(cls: type[Store], url: str, path: Path | None) -> Store:
    """The store as it is: no creation, no upgrade, no WAL switch."""
    why = _only_readable(path) if path is not None else None
    if path is not None and why is not None:
        store = cls(url, engines.get_read_only_engine(path), read_only=why)
    else:
        store = cls(url, engines.get_engine(url))
    if store.revision() is None:
        raise StoreMissing(store.where)
    return store


def _open_read_only(cls: type[Store], url: str, path: Path, why: str) -> Store:
    """A store file we cannot write (``why``): readable as a snapshot; every write fails
    clearly."""
    store = cls(url, engines.get_read_only_engine(path), read_only=why)
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        warnings.warn(
            f"{store.where} has recent changes in its write-ahead log that cannot be read "
            f"now ({why}); showing the store as of its last checkpoint",
            StoreWarning,
            stacklevel=3,
        )
    revision = store.revision()
    if revision != SCHEMA_REVISION:
        raise StoreError(
            f"{store.where} is read-only and at schema revision {revision}; this runstore "
            f"needs {SCHEMA_REVISION} and cannot upgrade it"
        )
    return store


def _starts_with(column: Any, prefix: str, *, sqlite: bool) -> Any:
    """A case-sensitive prefix match that can use the column's index."""
    if sqlite:
        # SQLite's LIKE ignores case and skips the index; GLOB does neither.
        escaped = "".join(f"[{c}]" if c in "*?[" else c for c in prefix)
        return column.op("GLOB")(escaped + "*")
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped + "%", escape="\\")


def _writable(path: Path) -> bool:
    """Can this user write the store file and create its -wal/-shm companions?"""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def _only_readable(path: Path) -> str | None:
    """Why an existing store file can be read but not opened for writing; None if it can be."""
    if not path.exists():
        return None
    if not _writable(path):
        return "the store is read-only for this user"
    try:
        full = os.statvfs(path.parent).f_bavail == 0
    except OSError:
        full = False
    # Opening a WAL store creates its -shm and -wal files: on a full disk only a snapshot reads.
    return "the disk holding it is full" if full else None


def _check_sqlite_file(path: Path, *, create: bool) -> None:
    """Say plainly why a store file cannot be used (before SQLite says "unable to open database
    file"); with ``create``, create a missing one (and its directory), readable by its owner
    only, else StoreMissing."""
    try:
        info = path.stat()
    except FileNotFoundError:
        info = None
    except OSError as exc:  # a path under a file, a directory we may not enter
        raise StoreError(f"cannot open the store {path}: {exc.strerror}") from None
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise StoreError(f"{path} is a directory, not a store file")
        if not os.access(path, os.R_OK):
            raise StoreError(f"cannot read the store {path}: Permission denied")
        return
    if not create:
        raise StoreMissing(str(path))
    _check_directory(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    except FileExistsError:
        return  # another process created it first
    except OSError as exc:
        raise StoreError(f"cannot create the store at {path}: {exc.strerror}") from exc


def _check_directory(path: Path) -> None:
    """The directory for a new store file: the default location's is created (readable by its
    owner only); a path the user named must be in a directory that exists, as a typo in --db
    should not grow a directory tree."""
    parent = path.parent
    if parent.is_dir():
        return
    if path != default_db_path().expanduser().absolute():
        if parent.exists() or any(p.is_file() for p in parent.parents):
            raise StoreError(f"cannot create the store at {path}: Not a directory")
        raise StoreError(
            f"cannot create the store at {path}: no directory {parent} (create it first)"
        )
    try:
        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:  # the parent, or one above it, is a file
        raise StoreError(f"cannot create the store at {path}: Not a directory") from None
    except OSError as exc:
        raise StoreError(f"cannot create the store at {path}: {exc.strerror}") from exc


def _metric_rows(
    run_pk: int, types: Sequence[str], data: Sequence[str | None], times: Sequence[Any]
) -> list[dict[str, Any]]:
    """The ``run_metrics`` rows of a batch's ``metric`` events (written with the events, in
    one transaction): their data is ``{"name", "value", "step"?}``, checked when logged."""
    import json

    rows = []
    for event_type, text, ts in zip(types, data, times):
        if event_type != "metric" or text is None:
            continue
        try:
            fields = json.loads(text)
            name, value, step = fields["name"], float(fields["value"]), fields.get("step")
        except (ValueError, TypeError, KeyError):
            continue  # not a metric's data (logged raw): an event only
        rows.append({"run_pk": run_pk, "name": name, "value": value, "step": step,
                     "ts": ts if isinstance(ts, datetime) else datetime_from_ns(ts)})  # fmt: skip
    return rows
