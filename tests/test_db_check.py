"""``runstore db check``: integrity, schema, runs by status and stale runs, changing nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

from helpers import make_runs
from sqlalchemy import text

from runstore.history.check import check
from runstore.record.logger import RunLogger
from runstore.store import engine as engines
from runstore.store.schema import SCHEMA_REVISION
from runstore.store.store import Store

# -- check ---------------------------------------------------------------------------------------


def test_check_healthy_store(cli):
    make_runs(cli.db)
    result = cli("db", "check")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    if cli.db.startswith("postgresql"):
        assert lines["integrity"] == "not checked on this backend"
    else:
        assert lines["integrity"] == "ok (integrity_check)"
    assert lines["schema"] == f"{SCHEMA_REVISION} (current)"
    assert lines["runs"] == "3 (2 completed, 1 failed)"
    assert lines["running"] == "0 (0 stale)"


def test_check_json(cli):
    make_runs(cli.db)
    result = cli("db", "check", "--json", "--quick")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["problems"] == []
    assert doc["runs_total"] == 3
    assert doc["runs_by_status"] == {
        "running": 0, "completed": 2, "failed": 1, "cancelled": 0, "abandoned": 0,
    }  # fmt: skip
    assert (doc["schema_revision"], doc["schema_state"]) == (SCHEMA_REVISION, "current")
    assert doc["integrity_ok"] is (None if cli.db.startswith("postgresql") else True)


def test_check_lists_a_live_running_run_without_complaint(cli):
    with RunLogger(job="long", db=cli.db) as run:
        result = cli("db", "check")
        assert result.exit_code == 0, result.output
        assert f"{run.run_id}  long  running for " in result.stdout
        assert "STALE" not in result.stdout


KILLED = textwrap.dedent(
    """
    import sys, time
    from runstore.record.logger import RunLogger

    run = RunLogger(job="doomed", db=sys.argv[1])
    run.log_warning("about to be killed")
    print(run.run_id, flush=True)
    time.sleep(60)
    """
)


def test_check_reports_a_killed_run_until_it_is_reaped(cli):
    make_runs(cli.db, n=1)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, cli.db], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert run_id

    result = cli("db", "check")
    assert result.exit_code == 1
    problems = result.stderr.splitlines()
    assert len(problems) == 1
    assert problems[0].startswith(f"Error: stale run {run_id} (job doomed, pid {proc.pid} on ")
    assert "runstore reap" in problems[0]
    assert f"STALE {run_id}" in result.stdout
    doc = json.loads(cli("db", "check", "--json").stdout)
    assert [r["run_id"] for r in doc["stale"]] == [run_id] and not doc["ok"]

    assert cli("reap").exit_code == 0
    result = cli("db", "check")
    assert result.exit_code == 0, result.output
    assert "1 abandoned" in result.stdout


def test_check_finds_a_damaged_file(sqlite_cli):
    make_runs(sqlite_cli.db, n=10, events=300)
    engines.dispose_all()
    conn = sqlite3.connect(sqlite_cli.db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    pages = os.path.getsize(sqlite_cli.db) // 4096
    with open(sqlite_cli.db, "r+b") as f:
        for page in range(pages - 20, pages - 15):
            f.seek(page * 4096 + 100)
            f.write(b"\xde\xad\xbe\xef" * 200)

    for quick in ([], ["--quick"]):
        result = sqlite_cli("db", "check", *quick)
        assert result.exit_code == 1
        assert "integrity  FAILED" in result.stdout
        problems = result.stderr.splitlines()
        assert 1 <= len(problems) <= 11
        assert all(line.startswith("Error: integrity: ") for line in problems)
        assert "Traceback" not in result.output


def test_check_changes_nothing_in_an_older_store(sqlite_cli):
    from alembic import command

    from runstore.store.migrate import alembic_config

    make_runs(sqlite_cli.db, n=1)
    with Store.open(sqlite_cli.db).engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")

    result = sqlite_cli("db", "check")
    assert result.exit_code == 0, result.output
    assert "0001, older than this runstore's" in result.stdout
    assert "runstore db upgrade" in result.stdout
    assert sqlite_cli("db", "current").stdout.startswith("0001 ")


def test_check_refuses_a_store_newer_than_the_code(db):
    Store.open(db)
    with Store.open(db).engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    report = check(db)
    assert not report.ok
    assert report.schema_state == "newer"
    assert report.problems[-1].startswith("schema revision 9999 is newer than this runstore")


def test_check_of_a_missing_store_is_one_line_and_creates_nothing(tmp_path):
    from conftest import Cli

    missing = tmp_path / "none.db"
    result = Cli(str(missing))("db", "check")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: no runstore store at {missing} (a store is created")
    assert not missing.exists()


def test_check_of_a_file_that_is_not_a_database(tmp_path):
    from conftest import Cli

    bogus = tmp_path / "notes.db"
    bogus.write_text("just some notes\n" * 100)
    result = Cli(str(bogus))("db", "check")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1
    assert bogus.read_text() == "just some notes\n" * 100
