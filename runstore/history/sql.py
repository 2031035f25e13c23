"""``runstore sql``: ad hoc queries that cannot change the store, bounded in time and memory.

On SQLite the query runs on a separate connection opened read-only (``mode=ro``), with
``PRAGMA query_only``, and an authorizer that allows reading and nothing else: no ATTACH, no
PRAGMA that sets anything, no extension loading. One value may hold at most ``MAX_VALUE_BYTES``
(SQLite's length limit), one row as much. In a process that runs nothing else (``runstore sql``'s
own), all of SQLite's memory is held to ``SQLITE_HEAP_BYTES`` too (its hard heap limit, which is
process-wide and can only be lowered: a library caller chooses, ``heap_bytes``). ``printf`` is
checked before it runs: a huge width or precision is one call that no time limit can interrupt.

The time limit covers the whole query, the reading of its rows too: at the deadline the query is
interrupted (SQLite stops between two steps of its program, PostgreSQL at its next check). One
step can outlast that (a single function call over a big value); under a second later the caller's
``on_overrun`` is told, and a command line gives up there (``Watch``).

On PostgreSQL it must be one statement that starts like a query, and it runs in a READ ONLY
transaction with a statement timeout, always rolled back. Its rows are streamed from a server-side
cursor; a row larger than ``MAX_VALUE_BYTES`` stops the query on the server before it is sent,
and the time limit covers the reading of the rows as well.
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from runstore.errors import QueryError, UsageError, driver_problem, first_line
from runstore.history import SQL_MAX_ROWS, SQL_TIMEOUT_S
from runstore.humanize import format_duration, human_bytes
from runstore.store.engine import limited_memory_connection, query_connection
from runstore.store.store import Store

# The most one string or blob (on PostgreSQL: one row) may hold: far more than any stored value.
MAX_VALUE_BYTES = 16 << 20
# All of SQLite's memory in a process that runs ad hoc queries: page caches, sorters, values.
# Sorters and temporary tables spill to disk beyond a few MB, so queries need far less; with
# Python's copy of a row as big, the whole process stays well under 300 MB.
SQLITE_HEAP_BYTES = 64 << 20
# How long after the time limit a query still inside one call is given up on (``on_overrun``).
OVERRUN_GRACE_S = 0.75
# What one query may return in all, unless told otherwise: more is an export, not a question.
MAX_RESULT_BYTES = 1 << 30

# Pragmas that only read: allowed bare; the table-valued ones also with a table/index argument.
_READ_PRAGMAS = {
    "table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list",
    "table_list", "database_list", "collation_list", "function_list", "compile_options",
    "page_count", "page_size", "freelist_count", "schema_version", "user_version",
    "quick_check", "integrity_check", "foreign_key_check", "encoding", "journal_mode",
}  # fmt: skip
_PRAGMAS_WITH_ARGUMENT = {
    "table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list",
    "quick_check", "integrity_check", "foreign_key_check",
}  # fmt: skip
_DENIED_FUNCTIONS = {"load_extension", "writefile", "readfile", "edit", "fts3_tokenizer"}

# On a server, what a query may start with (after comments and parentheses). COPY ... TO PROGRAM,
# DO, CALL, SET or COMMIT are refused before they reach the server.
_SERVER_QUERY_START = re.compile(
    r"^(?:\s+|--[^\n]*|/\*.*?\*/|\()*(select|with|values|table|explain|show)\b",
    re.IGNORECASE | re.DOTALL,
)


@dataclass
class QueryResult:
    columns: list[str]
    rows: Iterator[tuple[Any, ...]]


def _authorizer(action: int, arg1: str | None, arg2: str | None, _db: Any, _src: Any) -> int:
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_UPDATE and arg1 in ("sqlite_master", "sqlite_schema"):
        # SQLite asks this while it sets up a table-valued pragma (pragma_table_info('runs'));
        # the connection is read-only, so no update of the schema can happen.
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        return (
            sqlite3.SQLITE_DENY if (arg2 or "").lower() in _DENIED_FUNCTIONS else sqlite3.SQLITE_OK
        )
    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        if name in _READ_PRAGMAS and (arg2 is None or name in _PRAGMAS_WITH_ARGUMENT):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


@contextmanager
def run_query(
    store: Store,
    sql: str,
    params: Mapping[str, Any] | None = None,
    *,
    timeout_s: float | None = SQL_TIMEOUT_S,
    allow_superuser: bool = False,
    on_overrun: Callable[[], None] | None = None,
    max_rows: int | None = SQL_MAX_ROWS,
    heap_bytes: int | None = None,
) -> Iterator[QueryResult]:
    """Run one read-only statement; yields its columns and a row iterator. ``timeout_s`` None
    is no time limit (the memory bounds hold all the same). ``on_overrun`` is called (on
    another thread) when the query is still inside one call OVERRUN_GRACE_S past the limit.
    The rows stop with a QueryError past ``max_rows`` or ``MAX_RESULT_BYTES`` (None: no cap).
    ``heap_bytes`` holds all of SQLite's memory in this process to that, from now on (see above).
    On PostgreSQL a role that can reach outside the database is refused unless
    ``allow_superuser``."""
    if not sql.strip():
        raise UsageError("no SQL given")
    watch = Watch(timeout_s, on_overrun)
    try:
        if store.is_sqlite:
            with _sqlite_query(store, sql, params or {}, watch, heap_bytes) as result:
                yield _capped(result, max_rows)
        else:
            with _server_query(store, sql, params or {}, watch, allow_superuser) as result:
                yield _capped(result, max_rows)
    finally:
        watch.stop()


def _capped(result: QueryResult, max_rows: int | None) -> QueryResult:
    """The rows, each at most MAX_VALUE_BYTES; with ``max_rows``, at most that many and
    MAX_RESULT_BYTES in all."""
    most_rows = max_rows if max_rows is not None else math.inf
    most_bytes = MAX_RESULT_BYTES if max_rows is not None else math.inf

    def rows() -> Iterator[tuple[Any, ...]]:
        total = 0
        for count, row in enumerate(result.rows, 1):
            size = _row_size(row)
            if size > MAX_VALUE_BYTES:
                raise _row_too_large()
            total += size
            if count > most_rows:
                raise QueryError(
                    f"query stopped after {max_rows:,} rows (--max-rows raises the cap)"
                )
            if total > most_bytes:
                raise QueryError(
                    f"query stopped after {human_bytes(MAX_RESULT_BYTES)} of rows (--max-rows 0 "
                    "lifts the caps)"
                )
            yield row

    return QueryResult(result.columns, rows())


class Watch:
    """The time limit of one query. ``interrupt`` (set once the query runs) is called at the
    deadline (and again while OVERRUN_GRACE_S lasts); ``on_overrun`` after that if the query is
    still inside one call (``calls`` counts those, ``inside`` marks them). A watcher thread
    sleeps until then."""

    def __init__(self, timeout_s: float | None, on_overrun: Callable[[], None] | None) -> None:
        self.timeout_s = timeout_s
        self.deadline = _deadline(timeout_s)
        self.interrupt: Callable[[], None] | None = None
        self._on_overrun = on_overrun
        self.calls = 0  # calls under way (0 or 1): the query is working, not waiting for us
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, interrupt: Callable[[], None]) -> None:
        self.interrupt = interrupt
        if self.timeout_s is not None:
            self._thread = threading.Thread(target=self._watch, name="sql-watch", daemon=True)
            self._thread.start()

    @contextmanager
    def inside(self) -> Iterator[None]:
        self.calls += 1
        try:
            yield
        finally:
            self.calls -= 1

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def stop(self) -> None:
        """Before the connection goes back (an interrupt must never reach its next user)."""
        self._done.set()
        if self._thread is not None:
            # A cancel request to a server that stopped answering may hang: not us with it.
            self._thread.join(timeout=OVERRUN_GRACE_S)

    def _watch(self) -> None:
        if self._done.wait(max(0.0, self.deadline - time.monotonic())):
            return
        # Interrupted again and again: SQLite forgets an interrupt that comes between two
        # statements' steps (while the query is being prepared, say).
        given_up_at = time.monotonic() + OVERRUN_GRACE_S
        while time.monotonic() < given_up_at:
            if self.interrupt is not None:
                with suppress(Exception):
                    self.interrupt()
            if self._done.wait(0.1):
                return
        if self.calls and self._on_overrun is not None:
            self._on_overrun()


@contextmanager
def _sqlite_query(
    store: Store, sql: str, params: Mapping[str, Any], watch: Watch, heap_bytes: int | None
) -> Iterator[QueryResult]:
    assert store.path is not None
    # A store this user cannot write is read as it stands (see engine.get_read_only_engine).
    conn = query_connection(
        store.path,
        immutable=bool(store.read_only),
        value_bytes=MAX_VALUE_BYTES,
        heap_bytes=heap_bytes,
    )
    bounds = _Bounds(conn)
    timeout_s = watch.timeout_s
    try:
        conn.set_authorizer(_authorizer)
        watch.start(conn.interrupt)
        try:
            with watch.inside():
                cursor = conn.execute(sql, dict(params))
        except (sqlite3.DatabaseError, sqlite3.ProgrammingError, sqlite3.Warning) as exc:
            raise _explain(exc, timeout_s, bounds) from None
        except MemoryError:
            raise _out_of_memory(heap_bytes) from None
        columns = [d[0] for d in cursor.description or ()]

        def rows() -> Generator[tuple[Any, ...], None, None]:
            try:
                while True:
                    watch.calls += 1  # inline (not watch.inside()): this is per row
                    try:
                        row = cursor.fetchone()
                    finally:
                        watch.calls -= 1
                    if row is None:
                        return
                    yield row
            except sqlite3.DatabaseError as exc:
                raise _explain(exc, timeout_s, bounds) from None
            except MemoryError:
                raise _out_of_memory(heap_bytes) from None

        stream = rows()
        try:
            yield QueryResult(columns, stream)
        finally:
            stream.close()  # before the connection: a reader that left early (| head) is no error
    finally:
        watch.stop()
        conn.close()
        bounds.close()


class _Bounds:
    """What one query on ``conn`` may build: values up to MAX_VALUE_BYTES, SQLite's memory up
    to SQLITE_HEAP_BYTES, and ``printf``/``format`` widths within the value limit."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.problem: str | None = None
        self._helper = limited_memory_connection(MAX_VALUE_BYTES)
        for name in ("printf", "format"):
            conn.create_function(name, -1, self._printf)

    def _printf(self, *args: Any) -> Any:
        """SQLite's own printf, run on a helper connection once its widths are known to fit."""
        if not args:
            raise sqlite3.ProgrammingError("printf needs a format")
        if isinstance(args[0], str) and _printf_too_wide(args[0], args[1:]):
            self.problem = f"a printf width or precision over {MAX_VALUE_BYTES:,} characters"
            raise ValueError(self.problem)
        marks = ", ".join("?" * len(args))
        result = self._helper.execute(f"SELECT printf({marks})", args).fetchone()[0]
        if result is None and args[0] is not None:  # SQLite's printf says "too big" by NULL
            self.problem = f"a printf result over {MAX_VALUE_BYTES:,} bytes"
            raise ValueError(self.problem)
        return result

    def close(self) -> None:
        self._helper.close()


_PRINTF_CONVERSION = re.compile(r"%[-+ 0#,!]*(\*|\d+)?(?:\.(\*|\d*))?(?:ll|l)?([A-Za-z%])")


def _printf_too_wide(fmt: str, args: Sequence[Any]) -> bool:
    rest = iter(args)
    for width, precision, conversion in _PRINTF_CONVERSION.findall(fmt):
        for spec in (width, precision):
            size = _as_int(next(rest, 0)) if spec == "*" else int(spec or 0)
            if abs(size) > MAX_VALUE_BYTES:
                return True
        if conversion != "%":
            next(rest, None)
    return False


def _as_int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return 0


def _row_size(row: tuple[Any, ...]) -> int:
    """About what a row holds: its texts and blobs by length, anything else as 8 bytes."""
    size = 0
    for value in row:  # a plain loop: this runs for every row
        size += len(value) if isinstance(value, (str, bytes)) else 8
    return size


def _row_too_large() -> QueryError:
    return QueryError(f"query stopped: a row would be larger than {MAX_VALUE_BYTES >> 20} MB")


def _out_of_memory(heap_bytes: int | None) -> QueryError:
    if heap_bytes is None:
        return QueryError("query stopped: it needs more memory than there is")
    return QueryError(
        f"query stopped: it needs more than the {heap_bytes >> 20} MB of memory that "
        "runstore sql allows SQLite"
    )


def _explain(exc: Exception, timeout_s: float | None, bounds: _Bounds | None = None) -> QueryError:
    """What stopped a query, said the same way on both backends."""
    if bounds is not None and bounds.problem is not None:
        return QueryError(f"query stopped: {bounds.problem}")
    text = first_line(exc)
    problem = driver_problem(exc)
    if problem == "interrupted":
        return _timed_out(timeout_s)
    if problem == "too big":
        return QueryError(f"query stopped: a value would be larger than {MAX_VALUE_BYTES >> 20} MB")
    if _ROW_TOO_LARGE in text:
        return _row_too_large()
    if problem in ("refused", "read-only") or any(word in text for word in _SERVER_REFUSALS):
        return QueryError(f"refused: runstore sql is read-only ({text})")
    if problem == "several statements" or 'syntax error at or near ";"' in text:
        return QueryError("refused: give one statement at a time")
    return QueryError(f"SQL error: {text}")


@contextmanager
def _server_query(
    store: Store,
    sql: str,
    params: Mapping[str, Any],
    watch: Watch,
    allow_superuser: bool,
) -> Iterator[QueryResult]:
    from sqlalchemy.exc import DBAPIError

    sql = _server_statement(sql)
    timeout_s = watch.timeout_s
    with store.engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        if not hasattr(raw, "pgconn"):
            raise QueryError("runstore sql on PostgreSQL needs the psycopg 3 driver")
        try:
            if not allow_superuser:
                _refuse_powerful_role(conn)
            trans = conn.begin()
        except DBAPIError as exc:
            raise _explain(exc, timeout_s) from None
        try:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {_timeout_ms(timeout_s)}")
            query, values = _bound(conn, sql, params)
            cursor = raw.cursor()
            # One row at a time (libpq's single-row mode): memory holds one row, however many
            # the query returns; the extended protocol runs exactly one statement.
            stream = cursor.stream(query, values)
            watch.start(raw.cancel)
            try:
                with watch.inside():
                    first = next(stream, None)
                if first is None and cursor.description is None:
                    # No row came, and with it no column names: ask for them alone (prepared,
                    # so again exactly one statement).
                    cursor.execute(f"{query}\nLIMIT 0", values, prepare=True)
            except Exception as exc:
                raise _explain(exc, timeout_s) from None
            if cursor.description is None:
                raise QueryError("refused: runstore sql only runs queries that return rows")
            reader = _server_rows(first, stream, watch)
            try:
                yield QueryResult([d.name for d in cursor.description], reader)
            finally:
                reader.close()
                stream.close()
                cursor.close()
        finally:
            watch.stop()
            with suppress(Exception):  # a broken connection is thrown away by the pool
                trans.rollback()


def _server_statement(sql: str) -> str:
    """The statement as it goes to the server: a query, its rows guarded in size."""
    start = _SERVER_QUERY_START.match(sql)
    if start is None:
        raise QueryError(
            "refused: runstore sql only runs queries (SELECT, WITH, VALUES, TABLE, EXPLAIN, SHOW)"
        )
    return sql if start[1].lower() in ("explain", "show") else _row_size_guarded(sql)


def _bound(conn: Any, sql: str, params: Mapping[str, Any]) -> tuple[str, Any]:
    """Parameters need text()'s :name binding; without any, the query goes as it is, so a
    ':word' inside a string literal stays text."""
    if not params:
        return sql, None
    from sqlalchemy import text

    compiled = text(sql).compile(dialect=conn.dialect)
    return str(compiled), compiled.construct_params(dict(params))


def _server_rows(
    first: Any, stream: Iterator[Any], watch: Watch
) -> Generator[tuple[Any, ...], None, None]:
    """The rows as the server sends them, ``first`` already read; the time limit holds
    between rows too."""
    try:
        if first is None:
            return
        yield tuple(first)
        while True:
            watch.calls += 1  # inline (not watch.inside()): this is per row
            try:
                row = next(stream, None)
            finally:
                watch.calls -= 1
            if row is None:
                return
            if watch.expired():
                raise _timed_out(watch.timeout_s)
            yield tuple(row)
    except QueryError:
        raise
    except Exception as exc:
        raise _explain(exc, watch.timeout_s) from None


def _row_size_guarded(sql: str) -> str:
    """The query as a subquery whose rows the server refuses to send when larger than
    MAX_VALUE_BYTES: a value that size is built on the server and would arrive whole."""
    body = _TRAILING_SEMICOLONS.sub("", sql)
    size = "pg_column_size(runstore_query.*)"
    return (
        f"SELECT * FROM (\n{body}\n) AS runstore_query WHERE CASE WHEN {size} <= "
        f"{MAX_VALUE_BYTES} THEN true ELSE CAST('{_ROW_TOO_LARGE}' || {size} AS boolean) END"
    )


_TRAILING_SEMICOLONS = re.compile(r"(?:;|\s+|--[^\n]*|/\*.*?\*/)*\Z", re.DOTALL)
_ROW_TOO_LARGE = "runstore: row too large: "
# What PostgreSQL says when our wrapping of a query refuses what it would do.
_SERVER_REFUSALS = ("data-modifying statement", "INTO is not allowed")


def _timeout_ms(timeout_s: float | None) -> int:
    """statement_timeout in whole milliseconds (an int): 0 only for no limit at all."""
    if timeout_s is None:
        return 0
    return min(2**31 - 1, max(1, math.ceil(timeout_s * 1000)))


def _deadline(timeout_s: float | None) -> float:
    return math.inf if timeout_s is None else time.monotonic() + timeout_s


def _timed_out(timeout_s: float | None) -> QueryError:
    if timeout_s is None:
        return QueryError("query interrupted")
    return QueryError(f"query stopped after the {time_limit(timeout_s)} time limit")


def time_limit(timeout_s: float) -> str:
    """The time limit as messages say it: at least the 1ms a server takes."""
    return format_duration(max(timeout_s, 0.001))


# Roles that can reach outside the database from a read-only query: superusers, and roles
# that may write server files or use dblink (whose remote writes a read-only transaction does
# not stop).
_POWERFUL_ROLE = """
SELECT rolsuper
    OR pg_has_role(current_user, 'pg_write_server_files', 'MEMBER')
    OR pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER')
    OR EXISTS (
        SELECT 1 FROM pg_proc
        WHERE proname IN ('dblink', 'dblink_exec', 'dblink_connect', 'lo_export', 'lo_import')
          AND has_function_privilege(pg_proc.oid, 'EXECUTE')
    )
FROM pg_roles WHERE rolname = current_user
"""


def _refuse_powerful_role(conn: Any) -> None:
    with conn.begin():
        powerful = conn.exec_driver_sql(_POWERFUL_ROLE).scalar()
    if powerful:
        user = conn.exec_driver_sql("SELECT current_user").scalar()
        raise QueryError(
            f"refused: the role {user!r} is a superuser or can write server files or use "
            "dblink, which a read-only transaction does not stop; connect as a read-only role "
            "(see README: Ad hoc SQL), or pass --allow-superuser"
        )
