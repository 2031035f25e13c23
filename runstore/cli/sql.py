"""``runstore sql``: read-only ad hoc SQL against the store."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from runstore.cli import _app
from runstore.cli._app import DbOption, app, fail, open_store
from runstore.cli.output import Column, CsvOption, JsonlOption, JsonOption, WideOption
from runstore.history import SQL_MAX_ROWS, SQL_TIMEOUT_S
from runstore.humanize import format_duration


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One SELECT statement, or - to read it from stdin.")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="NAME=VALUE",
            help="A named parameter: `-p job=nightly` for :job. Repeatable.",
        ),
    ] = None,
    timeout: Annotated[
        str, typer.Option("--timeout", help="Stop the query after this long; 0 for no limit.")
    ] = format_duration(SQL_TIMEOUT_S),
    max_rows: Annotated[
        int,
        typer.Option(
            "--max-rows",
            min=0,
            metavar="N",
            help="Stop after N rows, or 1 GB of values, whichever comes first; 0 for no cap.",
        ),
    ] = SQL_MAX_ROWS,
    allow_superuser: Annotated[
        bool,
        typer.Option(
            "--allow-superuser",
            help="PostgreSQL: run even as a role that can reach outside the database.",
        ),
    ] = False,
    as_json: JsonOption = False,
    as_jsonl: JsonlOption = False,
    as_csv: CsvOption = False,
    wide: WideOption = False,
    db: DbOption = None,
) -> None:
    """Run a read-only SQL query against the store (tables runs and events, views run_summary
    and job_stats). Anything that would change the store is refused; the query is bounded in
    time (--timeout) and in memory (16 MB a value or a row; on SQLite 64 MB in all).

    Example: `runstore sql "select job, count(*) from runs where status = 'failed' group by job"`
    """
    from runstore.cli.output import Format, choose_format, emit, paged
    from runstore.history.sql import SQLITE_HEAP_BYTES, run_query, time_limit
    from runstore.humanize import parse_duration

    fmt = choose_format(as_json, as_jsonl, as_csv)
    text = sys.stdin.read() if query == "-" else query
    if not text.strip():
        fail("no SQL given", 2)
    params = _named_params(param or [])
    timeout_s = parse_duration(timeout, "--timeout") or None  # 0: no time limit
    store = open_store(db)

    def give_up() -> None:
        # Still inside one call well past the limit: nothing runstore could stop between
        # two steps. The store was only read; leaving now loses nothing. (Only as the runstore
        # process: a test runner or a program that imports the app waits for the call.)
        if not _app.own_process:
            return
        os.write(2, f"Error: query stopped after the {time_limit(timeout_s or 0)} time "
                    "limit\n".encode())  # fmt: skip
        os._exit(1)

    with run_query(
        store, text, params, timeout_s=timeout_s, allow_superuser=allow_superuser,
        on_overrun=give_up, max_rows=max_rows or None,
        heap_bytes=SQLITE_HEAP_BYTES if _app.own_process else None,
    ) as result:  # fmt: skip
        keys = _unique_names(result.columns)
        columns = [Column(key, key) for key in keys]
        with paged(fmt is Format.TABLE) as out:
            rows = (dict(zip(keys, row)) for row in result.rows)
            emit(rows, columns, fmt, out=out, wide=wide, records_when_too_wide=True)


def _unique_names(names: list[str]) -> list[str]:
    """``select * from runs join events ...`` has two ``id`` columns; the second becomes ``id_2``
    instead of overwriting the first."""
    seen: set[str] = set()
    unique = []
    for name in names:
        key, n = name, 1
        while key in seen:
            n += 1
            key = f"{name}_{n}"
        seen.add(key)
        unique.append(key)
    return unique


def _named_params(words: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or not name.strip():
            fail(f"--param takes NAME=VALUE (got {word!r})", 2)
        params[name.strip().lstrip(":")] = value
    return params
