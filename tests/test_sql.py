"""``runstore sql``: ad hoc queries in every format, read-only for real, with a time limit; the
documented views; the README's example queries run against a real store."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import BACKENDS, REPO, Cli, error_line, reader_url
from helpers import (
    NOW,
    Handful,
    handful_store,
    insert_runs,
    record_handful,
    runstore,
    snapshot,
)

from runstore.errors import QueryError
from runstore.history.sql import run_query
from runstore.record.logger import RunLogger
from runstore.store import engine as engines
from runstore.store.store import Store


@pytest.fixture
def qcli(handful: Handful) -> Cli:
    return Cli(reader_url(handful.db))


@pytest.fixture(scope="module", params=BACKENDS[1:])
def server_handful(request, tmp_path_factory) -> Iterator[Handful]:
    """The handful on PostgreSQL only, for statements that exist only there."""
    yield from handful_store(request, tmp_path_factory)


@pytest.fixture
def lite(sqlite_db: str, tmp_path: Path) -> Handful:
    """The handful in a SQLite file of this test's own, for tests that check its bytes."""
    return record_handful(sqlite_db, tmp_path)


def ok(result: Any) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stderr == ""
    return result.stdout


def refused(result: Any) -> str:
    """Exit 1, nothing on stdout, one ``Error: refused ...`` line."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: refused"), lines[0]
    return lines[0]


def as_utc(value: Any) -> datetime:
    """A time as a view returns it: timestamptz on PostgreSQL, UTC text on SQLite."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


# -- queries that work ----------------------------------------------------------------------------

QUERY = "select run_id, job, status, duration_ms from runs where job = :job order by started_at"


def test_select_with_a_parameter_in_every_format(qcli):
    expected = [
        {"run_id": "etl-ok", "job": "etl", "status": "completed", "duration_ms": 1500},
        {"run_id": "etl-fail", "job": "etl", "status": "failed", "duration_ms": 4000},
    ]
    assert qcli.json("sql", QUERY, "-p", "job=etl") == expected
    lines = ok(qcli("sql", QUERY, "--param", "job=etl", "--jsonl")).splitlines()
    assert [json.loads(line) for line in lines] == expected
    from_csv = list(csv.DictReader(io.StringIO(ok(qcli("sql", QUERY, "-p", "job=etl", "--csv")))))
    assert from_csv == [{k: str(v) for k, v in row.items()} for row in expected]
    text = ok(qcli("sql", QUERY, "-p", "job=etl")).splitlines()
    assert text[0].split() == ["run_id", "job", "status", "duration_ms"]
    assert [line.split() for line in text[1:]] == [
        ["etl-ok", "etl", "completed", "1500"], ["etl-fail", "etl", "failed", "4000"],
    ]  # fmt: skip
    assert text[0].index(" job ") == text[1].index(" etl ")  # aligned


def test_query_from_stdin_and_several_parameters(qcli):
    sql = "select count(*) as n from runs where job = :job and status = :status\n"
    got = qcli("sql", "-", "-p", "job=backup", "-p", ":status=cancelled", "--json", input=sql)
    assert json.loads(ok(got)) == [{"n": 1}]


def test_parameters_compare_with_numbers(qcli):
    got = qcli.json("sql", "select run_id from runs where duration_ms > :ms order by run_id",
                    "-p", "ms=1000")  # fmt: skip
    assert [r["run_id"] for r in got] == ["etl-fail", "etl-ok"]


def test_json_values_and_times_come_out_raw(qcli):
    rows = qcli.json(
        "sql",
        "select e.data, r.started_at from events e join runs r on r.id = e.run_pk "
        "where r.run_id = 'etl-fail' and e.level = 'error'",
    )
    data = rows[0]["data"]
    assert (json.loads(data) if isinstance(data, str) else data) == {"message": "boom",
                                                                     "where": "load"}  # fmt: skip
    assert as_utc(rows[0]["started_at"]) == NOW - timedelta(hours=2)


def test_duplicate_column_names_keep_both_values(qcli):
    got = qcli.json("sql", "select r.id, e.id, e.seq from runs r join events e on e.run_pk = r.id "
                    "where r.run_id = 'etl-ok' and e.seq = 3")  # fmt: skip
    assert list(got[0]) == ["id", "id_2", "seq"]
    runs_id = qcli.json("sql", "select id from runs where run_id = 'etl-ok'")[0]["id"]
    event_id = qcli.json("sql", "select e.id from events e join runs r on r.id = e.run_pk "
                         "where r.run_id = 'etl-ok' and e.seq = 3")[0]["id"]  # fmt: skip
    assert (got[0]["id"], got[0]["id_2"], got[0]["seq"]) == (runs_id, event_id, 3)


def test_a_semicolon_that_ends_the_statement_or_sits_in_a_string_is_fine(qcli):
    assert qcli.json("sql", "select 1 as one;") == [{"one": 1}]
    assert qcli.json("sql", "select ';' as s, 'x' as t") == [{"s": ";", "t": "x"}]


def test_no_rows_and_errors(qcli):
    assert qcli.json("sql", "select run_id from runs where 1 = 0") == []
    assert ok(qcli("sql", "select run_id from runs where 1 = 0", "--csv")) == "run_id\n"
    result = qcli("sql", "select nope from runs")
    assert result.exit_code == 1 and result.stderr.startswith("Error: SQL error: ")
    assert "Traceback" not in result.stderr
    result = qcli("sql", "select * from runs where job = :job")  # no value given
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_usage_errors(sqlite_cli):
    for args in (["   "], ["select 1", "-p", "novalue"], ["select 1", "-p", "=x"],
                 ["select 1", "--timeout", "soon"], ["select 1", "--json", "--jsonl"]):  # fmt: skip
        result = sqlite_cli("sql", *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_library_run_query_yields_columns_and_rows(handful):
    store = Store.open(reader_url(handful.db))
    with run_query(store, "select job, count(*) as n from runs group by job order by job") as got:
        assert got.columns == ["job", "n"]
        assert list(got.rows) == [("backup", 3), ("etl", 2), ("process-lines", 2)]
    with pytest.raises(QueryError, match="refused"), run_query(store, "delete from runs"):
        pass


# -- read-only for real: SQLite -------------------------------------------------------------------


def file_state(db: str) -> tuple[str, int]:
    """The store file's bytes (as a digest) and mtime, with every connection closed first."""
    engines.dispose_all()
    path = Path(db)
    assert not Path(db + "-wal").exists() or Path(db + "-wal").stat().st_size == 0
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


WRITES = [
    "delete from runs",
    "DELETE FROM events WHERE 1 = 1",
    "update runs set status = 'completed'",
    "insert into runs (run_id, job, status, started_at) values ('x', 'x', 'completed', '2026')",
    "insert into events select * from events",
    "drop table events",
    "drop view job_stats",
    "create table t (x)",
    "create index ix_t on runs (cwd)",
    "create temp table t (x)",
    "alter table runs add column x",
    "select 1; delete from runs",
    "select 1; select 2",
    "with gone as (select 1) delete from runs",
    "pragma journal_mode=delete",
    "pragma user_version=5",
    "pragma query_only=0",
    "pragma foreign_keys=off",
    "pragma wal_checkpoint(truncate)",
    "select load_extension('x')",
    "vacuum",
    "vacuum into '/tmp/runstore-test-vacuum.db'",
    "reindex",
    "analyze",
    "begin immediate",
    "replace into runs (id, run_id, job, status, started_at) select id, run_id, 'x', status, "
    "started_at from runs",
]


def test_writes_are_refused_and_change_nothing_on_sqlite(lite, tmp_path):
    cli = Cli(lite.db)
    before_rows = snapshot(lite.db)
    before_file = file_state(lite.db)
    for sql in WRITES:
        refused(cli("sql", sql))
    assert snapshot(lite.db) == before_rows
    assert file_state(lite.db) == before_file
    assert not Path("/tmp/runstore-test-vacuum.db").exists()


def test_attach_is_refused_and_creates_no_file(lite, tmp_path):
    cli = Cli(lite.db)
    other = tmp_path / "other.db"
    before = file_state(lite.db)
    refused(cli("sql", f"attach database '{other}' as other"))
    refused(cli("sql", "attach database ':memory:' as m"))
    refused(cli("sql", "select * from pragma_database_list; attach ':memory:' as m"))
    assert not other.exists()
    assert file_state(lite.db) == before


def test_reading_pragmas_still_work_and_writing_ones_leave_the_settings(lite):
    cli = Cli(lite.db)
    assert cli.json("sql", "pragma journal_mode") == [{"journal_mode": "wal"}]
    assert cli.json("sql", "pragma user_version") == [{"user_version": 0}]
    names = [r["name"] for r in cli.json("sql", "pragma table_info(runs)")]
    assert names[:3] == ["id", "run_id", "job"]
    refused(cli("sql", "pragma journal_mode=delete"))
    refused(cli("sql", "pragma user_version=5"))
    assert cli.json("sql", "pragma journal_mode") == [{"journal_mode": "wal"}]
    assert cli.json("sql", "pragma user_version") == [{"user_version": 0}]


def test_without_the_authorizer_the_connection_still_cannot_write(lite, monkeypatch):
    """Defence in depth: the file is opened mode=ro with query_only, whatever the authorizer."""
    import runstore.history.sql as adhoc

    monkeypatch.setattr(adhoc, "_authorizer", lambda *args: sqlite3.SQLITE_OK)
    before = snapshot(lite.db)
    for sql in ("delete from runs", "pragma user_version=5", "create table t (x)"):
        with pytest.raises(QueryError, match="read-only"), run_query(Store.open(lite.db), sql):
            pass
    assert snapshot(lite.db) == before


def test_a_store_whose_path_holds_uri_characters_is_read_read_only(tmp_path):
    """file:.../odd#dir/store.db?mode=ro would open ".../odd", read-write: the path is quoted."""
    where = tmp_path / "odd#dir"
    where.mkdir()
    db = str(where / "store.db")
    with RunLogger(job="j", run_id="r1", db=db):
        pass
    cli = Cli(db)
    assert cli.json("sql", "select run_id from runs") == [{"run_id": "r1"}]
    refused(cli("sql", "delete from runs"))
    assert cli.json("sql", "select count(*) as n from runs") == [{"n": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd#dir"]  # no stray file


# -- read-only for real: PostgreSQL ---------------------------------------------------------------


def test_writes_are_refused_and_change_nothing_on_every_backend(qcli, handful):
    before = snapshot(handful.db)
    for sql in [
        "delete from runs",
        "update runs set status = 'completed'",
        "insert into runs (run_id, job, status, started_at) "
        "values ('x', 'x', 'completed', current_timestamp)",
        "drop table events",
        "create table t (x int)",
        "select 1; delete from runs",
        "select 1; commit; delete from runs",
        "commit; delete from runs",
        "commit",
    ]:
        refused(qcli("sql", sql))
    assert snapshot(handful.db) == before


def test_server_escapes_are_refused_on_postgres(server_handful, tmp_path):
    handful, qcli = server_handful, Cli(reader_url(server_handful.db))
    before = snapshot(handful.db)
    marker = tmp_path / "program-ran"
    for sql in [
        "rollback; delete from runs",
        "select 1; commit; select pg_sleep(5)",
        "with gone as (delete from runs returning 1) select count(*) from gone",
        "select nextval('runs_id_seq')",
        "select * into t2 from runs",
        f"copy (select 1) to program 'touch {marker}'",
        "do $$ begin delete from runs; end $$",
        "set transaction read write",
        "truncate runs cascade",
        "/* comment */ delete from runs",
    ]:
        refused(qcli("sql", sql))
    assert snapshot(handful.db) == before
    assert not marker.exists()


def test_postgres_takes_parameters_leading_comments_explain_and_show(server_handful):
    qcli = Cli(reader_url(server_handful.db))
    sql = "-- failures\n/* per job */ (select job, count(*) as n from runs where status = :s\n" \
          "group by job)"  # fmt: skip
    got = qcli("sql", "-", "-p", "s=failed", "--json", input=sql)
    assert json.loads(ok(got)) == [{"job": "etl", "n": 1}]
    assert qcli.json("sql", "explain select 1")[0]
    assert qcli.json("sql", "show statement_timeout") == [{"statement_timeout": "10s"}]


# -- the time limit -------------------------------------------------------------------------------

RUNAWAY = "with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c"


def test_a_runaway_query_is_stopped_by_the_time_limit(qcli):
    started = time.monotonic()
    result = qcli("sql", RUNAWAY, "--timeout", "1s")
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert result.stderr == "Error: query stopped after the 1s time limit\n"
    assert elapsed < 5


def test_timeout_0_is_no_time_limit(qcli):
    slow = "with recursive c(x) as (select 1 union all select x + 1 from c where x < 3000000) " \
        "select count(*) as n from c"  # fmt: skip
    assert "time limit" in qcli("sql", slow, "--timeout", "10ms").stderr
    assert qcli.json("sql", slow, "--timeout", "0") == [{"n": 3000000}]
    assert "has no unit" in qcli("sql", "select 1", "--timeout", "5").stderr


# -- the documented views -------------------------------------------------------------------------


def test_job_stats_view(qcli, handful):
    rows = {r["job"]: r for r in qcli.json("sql", "select * from job_stats order by job")}
    assert list(rows) == ["backup", "etl", "process-lines"]
    assert list(rows["etl"]) == [
        "job", "runs", "completed", "failed", "running", "failure_rate", "avg_duration_ms",
        "max_duration_ms", "first_started_at", "last_started_at",
    ]  # fmt: skip
    etl = rows["etl"]
    assert (etl["runs"], etl["completed"], etl["failed"], etl["running"]) == (2, 1, 1, 0)
    assert etl["failure_rate"] == 0.5
    assert (etl["avg_duration_ms"], etl["max_duration_ms"]) == (2750, 4000)
    assert as_utc(etl["first_started_at"]) == NOW - timedelta(hours=3)
    assert as_utc(etl["last_started_at"]) == NOW - timedelta(hours=2)
    backup = rows["backup"]
    assert (backup["runs"], backup["completed"], backup["failed"], backup["running"]) == (
        3, 0, 2, 1,
    )  # fmt: skip
    assert backup["failure_rate"] == 1.0
    assert (backup["avg_duration_ms"], backup["max_duration_ms"]) == (200, 200)
    lines = rows["process-lines"]
    assert lines["runs"] == 2 and lines["max_duration_ms"] == 900
    assert lines["avg_duration_ms"] == 600


def test_job_stats_view_agrees_with_the_stats_command(qcli):
    view = {r["job"]: r for r in qcli.json("sql", "select * from job_stats")}
    command = {r["job"]: r for r in qcli.json("stats")}
    assert set(view) == set(command)
    for job, row in view.items():
        for key in ("runs", "completed", "failed", "running", "failure_rate"):
            assert row[key] == command[job][key], (job, key)
        assert row["max_duration_ms"] == command[job]["max_ms"]


def test_run_summary_view(qcli):
    rows = qcli.json("sql", "select * from run_summary order by started_at")
    assert [r["run_id"] for r in rows] == ["bk-abandon", "etl-ok", "etl-fail", "bk-cancel",
                                           "lines-empty", "lines-sample", "bk-live"]  # fmt: skip
    assert list(rows[0]) == [
        "run_id", "job", "status", "started_at", "finished_at", "duration_ms", "duration_s",
        "exit_code", "items_total", "items_ok", "items_failed", "warning_count", "error_count",
        "event_count", "error_summary", "host", "username", "command",
    ]  # fmt: skip
    by_id = {r["run_id"]: r for r in rows}
    assert by_id["etl-ok"]["duration_s"] == 1.5 and by_id["etl-ok"]["duration_ms"] == 1500
    assert by_id["bk-cancel"]["duration_s"] == 0.2
    assert by_id["bk-live"]["duration_s"] is None
    assert by_id["etl-fail"]["error_summary"] == "boom" and by_id["etl-fail"]["error_count"] == 1
    assert by_id["lines-sample"]["items_total"] == 9
    assert by_id["etl-ok"]["event_count"] == 6
    assert as_utc(by_id["etl-ok"]["started_at"]) == NOW - timedelta(hours=3)


def test_run_summary_rounds_to_milliseconds(cli, db):
    insert_runs(db, [{"run_id": "r", "job": "j", "status": "completed",
                      "started_at": NOW, "duration_ms": 12_345}])  # fmt: skip
    reader = Cli(reader_url(db))
    assert reader.json("sql", "select duration_s from run_summary") == [{"duration_s": 12.345}]


# -- a real pipe ----------------------------------------------------------------------------------


def test_sql_into_head_ends_quietly(sqlite_db, tmp_path):
    """`runstore sql ... | head -1`: no traceback, no "Exception ignored", exit 0."""
    started = datetime.now(timezone.utc)
    insert_runs(
        sqlite_db,
        [
            {"run_id": f"many-{i:05d}", "job": "j", "status": "completed",
             "started_at": started - timedelta(seconds=i)}
            for i in range(4000)
        ],
    )  # fmt: skip
    script = (
        f'{sys.executable} -m runstore sql "select * from runs" | head -1 > /dev/null; '
        'echo "${PIPESTATUS[0]}"'
    )
    env = {**os.environ, "RUNSTORE_DB": sqlite_db, "PYTHONPATH": str(REPO)}
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)  # fmt: skip
    assert done.stderr == ""
    assert done.stdout.split() == ["0"]


def test_a_colon_word_inside_a_string_literal_is_text_on_every_backend(qcli):
    rows = qcli.json("sql", """select 'a :b' as t, '{"rows":120}' as j""")
    assert rows == [{"t": "a :b", "j": '{"rows":120}'}]


# -- bounded in memory as well as in time ---------------------------------------------------------

MANY_BIG_VALUES = "select " + ", ".join(["randomblob(15000000)"] * 20)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("select randomblob(1e9)", "a value would be larger than 16 MB"),
        ("select length(printf('%.*c', 1e9, 'x'))", "a printf width or precision over"),
        ("select format('%.2000000000c', 'x')", "a printf width or precision over"),
        ("with recursive t(s) as (select 'x' union all select s || s from t) "
         "select length(s) from t", "a value would be larger than 16 MB"),
        ("select zeroblob(1e9)", "a value would be larger than 16 MB"),
        (MANY_BIG_VALUES, "needs more than the 64 MB of memory"),
        ("select randomblob(12000000) as a, randomblob(12000000) as b",
         "a row would be larger than 16 MB"),
    ],
    ids=["randomblob", "printf precision", "format precision", "doubling", "zeroblob", "columns",
         "row"],
)  # fmt: skip
def test_a_query_that_would_build_too_much_is_one_error(sqlite_db, sql, message):
    # As the runstore process, whose SQLite memory is held to 64 MB (a test runner's is not).
    assert runstore(sqlite_db, "db", "upgrade", "--quiet").returncode == 0  # the store exists
    done = runstore(sqlite_db, "sql", sql, "--timeout", "2s")
    assert done.returncode == 1
    line = done.stderr.decode().strip()
    assert line.startswith("Error: query stopped: ") and message in line, line
    assert len(line.splitlines()) == 1


EXPENSIVE_STEPS = ("with recursive c(x) as (select 1 union all select x + 1 from c where x < 2000) "
                   "select sum(length(randomblob(16000000))) from c")  # fmt: skip
ONE_LONG_CALL = "select instr(printf('%.*c', 16000000, 'a'), printf('%.*c', 200000, 'a') || 'b')"


@pytest.mark.parametrize("sql", [EXPENSIVE_STEPS, ONE_LONG_CALL], ids=["steps", "one call"])
def test_the_time_limit_holds_when_each_step_is_slow(sqlite_db, sql):
    # Each takes a minute or more unbounded: the limit used to be checked every 10,000 steps,
    # and one call (instr over 16 MB) is a single step.
    assert runstore(sqlite_db, "db", "upgrade", "--quiet").returncode == 0
    started = time.monotonic()
    done = runstore(sqlite_db, "sql", sql, "--timeout", "1s")
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert done.stderr.decode() == "Error: query stopped after the 1s time limit\n"
    assert elapsed < 15  # generous for a busy machine; unbounded these take over 60 s


def test_rows_past_max_rows_stop_the_query(qcli):
    ten = "with recursive c(x) as (select 1 union all select x + 1 from c where x < 10) " \
        "select x from c"  # fmt: skip
    result = qcli("sql", ten, "--max-rows", "3", "--csv")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["x", "1", "2", "3"]
    assert error_line(result) == "Error: query stopped after 3 rows (--max-rows raises the cap)"
    assert qcli("sql", ten, "--max-rows", "0", "--csv").stdout.splitlines()[-1] == "10"


def test_a_query_returning_too_many_bytes_stops(qcli, monkeypatch):
    from runstore.history import sql as sql_module

    monkeypatch.setattr(sql_module, "MAX_RESULT_BYTES", 1 << 20)  # 1 MB for the test
    rows = "with recursive c(x) as (select 1 union all select x + 1 from c where x < {n}) " \
        "select x, '" + "y" * 64 + "' as filler from c"  # fmt: skip
    assert qcli("sql", rows.format(n=100), "--csv").exit_code == 0  # 100 short rows fit
    result = qcli("sql", rows.format(n=100000), "--csv")
    assert result.exit_code == 1
    assert error_line(result) == (
        "Error: query stopped after 1.0 MB of rows (--max-rows 0 lifts the caps)"
    )


def test_printf_within_bounds_is_sqlites_own(sqlite_cli):
    assert sqlite_cli("db", "upgrade", "--quiet").exit_code == 0
    got = sqlite_cli.json("sql", "select printf('%5.2f|%-3d|%%|%s', 3.14159, 7, 'x') as p, "
                          "format('%.3c', 'y') as f, printf(null) as n")  # fmt: skip
    assert got == [{"p": " 3.14|7  |%|x", "f": "yyy", "n": None}]


def test_blobs_show_as_their_size_and_travel_as_base64(sqlite_cli):
    assert sqlite_cli("db", "upgrade", "--quiet").exit_code == 0
    sql = "select x'00ff10' as b, 'text' as t"
    text = ok(sqlite_cli("sql", sql)).splitlines()
    assert text[1].split() == ["<blob", "3", "bytes>", "text"]
    assert sqlite_cli.json("sql", sql) == [{"b": {"$base64": True, "encoded": "AP8Q"}, "t": "text"}]
    assert ok(sqlite_cli("sql", sql, "--csv")).splitlines() == ["b,t", "AP8Q,text"]


def test_a_huge_row_is_stopped_on_the_server(server_handful):
    reader = Cli(reader_url(server_handful.db))
    result = reader("sql", "select repeat('x', 100000000) as big")
    assert result.exit_code == 1
    assert error_line(result) == "Error: query stopped: a row would be larger than 16 MB"


def test_the_time_limit_covers_reading_the_rows_on_postgres(server_handful):
    reader = Cli(reader_url(server_handful.db))
    result = reader("sql", "select n from generate_series(1, 1000000000) as n", "--timeout", "1s",
                    "--csv")  # fmt: skip
    assert result.exit_code == 1
    assert "time limit" in error_line(result)


@pytest.mark.parametrize("timeout", ["0.1ms", "1ms"])
def test_a_tiny_timeout_is_a_limit_not_none_on_postgres(server_handful, timeout):
    reader = Cli(reader_url(server_handful.db))
    result = reader("sql", "select pg_sleep(3)", "--timeout", timeout)
    assert result.exit_code == 1
    assert "time limit" in error_line(result)


def test_a_long_timeout_is_not_a_server_error(server_handful):
    reader = Cli(reader_url(server_handful.db))
    assert reader.json("sql", "select 1 as one", "--timeout", "30d") == [{"one": 1}]


def test_a_superuser_is_refused_unless_allowed(server_handful):
    superuser = Cli(server_handful.db)
    result = superuser("sql", "select count(*) as n from runs")
    assert result.exit_code == 1
    line = error_line(result)
    assert "the role 'postgres' is a superuser" in line and "--allow-superuser" in line
    allowed = superuser.json("sql", "select count(*) as n from runs", "--allow-superuser")
    assert allowed == [{"n": len(server_handful.statuses)}]


def test_a_role_that_can_use_dblink_is_refused(server_handful):
    from sqlalchemy import create_engine, text

    admin = create_engine(server_handful.db, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS dblink"))
    try:
        result = Cli(reader_url(server_handful.db))("sql", "select 1")
        assert result.exit_code == 1
        assert "use dblink" in error_line(result)
    finally:
        with admin.connect() as conn:
            conn.execute(text("DROP EXTENSION dblink"))
        admin.dispose()


def test_an_in_process_query_leaves_sqlites_memory_limit_alone(sqlite_db):
    # The heap limit is process-wide and can only be lowered: only the runstore process sets it.
    # A fresh interpreter that imports the app (as a program embedding runstore would) keeps its
    # own; this test runner's may already be lowered by a real `runstore sql` elsewhere.
    script = textwrap.dedent(f"""
        import sqlite3
        from typer.testing import CliRunner
        from runstore.cli import app
        from runstore.record.logger import RunLogger
        with RunLogger("made", db={sqlite_db!r}):
            pass
        probe = sqlite3.connect(":memory:")
        before = probe.execute("PRAGMA hard_heap_limit").fetchone()[0]
        done = CliRunner().invoke(app, ["sql", "select 1 as one", "--db", {sqlite_db!r}])
        assert done.exit_code == 0, done.output
        print(before, probe.execute("PRAGMA hard_heap_limit").fetchone()[0])
    """)
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, cwd=REPO)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    before, after = ran.stdout.split()
    assert after == before == "0"  # 0: no limit
