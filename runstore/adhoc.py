"""``runstore sql``: ad hoc queries that cannot change the store, with a time limit.

On SQLite the query runs on a separate connection opened read-only (``mode=ro``), with
``PRAGMA query_only``, and an authorizer that allows reading and nothing else: no ATTACH, no
PRAGMA that sets anything, no extension loading. On PostgreSQL it must be one statement that
starts like a query, and it runs in a READ ONLY transaction with a statement timeout, always
rolled back.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from runstore.engine import sqlite_file_uri
from runstore.errors import RunstoreError, UsageError
from runstore.store import Store

DEFAULT_TIMEOUT_S = 10.0

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


class QueryError(RunstoreError):
    """The query was refused or failed."""


@dataclass
class QueryResult:
    columns: list[str]
    rows: Iterator[tuple[Any, ...]]


def _authorizer(action: int, arg1: str | None, arg2: str | None, _db: Any, _src: Any) -> int:
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE):
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
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Iterator[QueryResult]:
    """Run one read-only statement; yields its columns and a row iterator."""
    if not sql.strip():
        raise UsageError("no SQL given")
    if store.dialect == "sqlite":
        with _sqlite_query(store, sql, params or {}, timeout_s) as result:
            yield result
    else:
        with _server_query(store, sql, params or {}, timeout_s) as result:
            yield result


@contextmanager
def _sqlite_query(
    store: Store, sql: str, params: Mapping[str, Any], timeout_s: float
) -> Iterator[QueryResult]:
    assert store.path is not None
    # A store this user cannot write is read as it stands (see engine.get_read_only_engine).
    uri = sqlite_file_uri(store.path, immutable=store.read_only)
    conn = sqlite3.connect(uri, uri=True, timeout=30)
    try:
        conn.execute("PRAGMA query_only=1")
        conn.set_authorizer(_authorizer)
        deadline = time.monotonic() + timeout_s
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            cursor = conn.execute(sql, dict(params))
        except (sqlite3.DatabaseError, sqlite3.ProgrammingError, sqlite3.Warning) as exc:
            raise _explain(exc, timeout_s) from None
        columns = [d[0] for d in cursor.description or ()]

        def rows() -> Generator[tuple[Any, ...], None, None]:
            try:
                yield from cursor
            except sqlite3.DatabaseError as exc:
                raise _explain(exc, timeout_s) from None

        stream = rows()
        try:
            yield QueryResult(columns, stream)
        finally:
            stream.close()  # before the connection: a reader that left early (| head) is no error
    finally:
        conn.close()


def _explain(exc: Exception, timeout_s: float) -> QueryError:
    text = str(exc)
    if "interrupted" in text:
        return QueryError(f"query stopped after the {timeout_s:g} s time limit")
    refusals = ("not authorized", "authorization denied", "readonly", "read-only")
    if any(word in text for word in refusals):
        return QueryError(f"refused: runstore sql is read-only ({text})")
    if "one statement at a time" in text:
        return QueryError("refused: give one statement at a time")
    return QueryError(f"SQL error: {text}")


@contextmanager
def _server_query(
    store: Store, sql: str, params: Mapping[str, Any], timeout_s: float
) -> Iterator[QueryResult]:
    from sqlalchemy import text
    from sqlalchemy.exc import StatementError

    if not _SERVER_QUERY_START.match(sql):
        raise QueryError(
            "refused: runstore sql only runs queries (SELECT, WITH, VALUES, TABLE, EXPLAIN, SHOW)"
        )
    with store.engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        threshold = getattr(raw, "prepare_threshold", False)
        if threshold is not False:
            # psycopg 3 sends a query without parameters by the simple protocol, which runs
            # "select 1; commit; delete from runs" as three statements, the last one outside
            # the read-only transaction. A prepared statement is always exactly one.
            raw.prepare_threshold = 0
        elif ";" in sql.strip().rstrip(";"):
            raise QueryError("refused: give one statement at a time (no ; inside it)")
        trans = conn.begin()
        try:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
            try:
                # Parameters need text()'s :name binding; without any, the query goes as it is,
                # so a ':word' inside a string literal stays text.
                result = (
                    conn.execute(text(sql), dict(params)) if params else conn.exec_driver_sql(sql)
                )
            except StatementError as exc:
                raise _explain_server(exc, timeout_s) from None
            if not result.returns_rows:
                raise QueryError("refused: runstore sql only runs queries that return rows")
            columns = list(result.keys())

            def rows() -> Generator[tuple[Any, ...], None, None]:
                try:
                    for row in result:
                        yield tuple(row)
                except StatementError as exc:
                    raise _explain_server(exc, timeout_s) from None

            stream = rows()
            try:
                yield QueryResult(columns, stream)
            finally:
                stream.close()
        finally:
            trans.rollback()
            if threshold is not False:
                raw.prepare_threshold = threshold


def _explain_server(exc: Exception, timeout_s: float) -> QueryError:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    text = text.split(" (Background on this error")[0]
    if "statement timeout" in text:
        return QueryError(f"query stopped after the {timeout_s:g} s time limit")
    if "read-only transaction" in text:
        return QueryError(f"refused: runstore sql is read-only ({text})")
    if "multiple commands" in text:
        return QueryError("refused: give one statement at a time")
    return QueryError(f"SQL error: {text}")
