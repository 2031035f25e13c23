"""``runstore db backup`` and ``runstore db check``."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import text

from runstore.errors import RunstoreError
from runstore.history.backup import backup
from runstore.history.check import check
from runstore.record.logger import RunLogger
from runstore.store import engine as engines
from runstore.store.schema import SCHEMA_REVISION
from runstore.store.store import Store


def make_runs(db: str, n: int = 3, events: int = 20) -> list[str]:
    ids = []
    for i in range(n):
        with RunLogger(job=f"job{i % 2}", db=db) as run:
            for k in range(events):
                run.log_event("item_processed", {"k": k})
            if i == 1:
                run.log_error("broken row")
        ids.append(run.run_id)
    return ids


def consistency(copy: Path) -> tuple[set[str], list[str]]:
    """Run ids in a copy, and what is wrong with it: integrity, counters vs events, seq gaps."""
    conn = sqlite3.connect(copy)
    try:
        wrong = [r[0] for r in conn.execute("PRAGMA integrity_check")] + [
            f"fk {r}" for r in conn.execute("PRAGMA foreign_key_check")
        ]
        wrong = [w for w in wrong if w != "ok"]
        for run_id, counted, stored, top in conn.execute(
            "SELECT r.run_id, r.event_count, count(e.id), coalesce(max(e.seq), 0) "
            "FROM runs r LEFT JOIN events e ON e.run_pk = r.id GROUP BY r.id"
        ):
            if not counted == stored == top:
                wrong.append(f"{run_id}: event_count {counted}, {stored} events, last seq {top}")
        ids = {r[0] for r in conn.execute("SELECT run_id FROM runs")}
    finally:
        conn.close()
    return ids, wrong


# -- backup --------------------------------------------------------------------------------------


def test_backup_is_a_private_complete_store(sqlite_cli, tmp_path):
    ids = make_runs(sqlite_cli.db)
    target = tmp_path / "copy.db"

    result = sqlite_cli("db", "backup", str(target))

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"backed up 3 runs to {target} (")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    copied, wrong = consistency(target)
    assert copied == set(ids) and wrong == []
    # The copy is a store runstore can use as it is.
    shown = sqlite_cli("show", ids[1], "--json", env={"RUNSTORE_DB": str(target)})
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["status"] == "failed"
    assert not list(tmp_path.glob(".copy.db*")), "no temporary file left behind"


def test_backup_library_reports_what_it_copied(sqlite_db, tmp_path):
    make_runs(sqlite_db, n=2)
    result = backup(sqlite_db, tmp_path / "b.db")
    assert (result.runs, result.schema_revision) == (2, SCHEMA_REVISION)
    assert result.bytes == (tmp_path / "b.db").stat().st_size
    assert result.source == str(Path(sqlite_db).absolute())


WRITER = textwrap.dedent(
    """
    import os, sys
    from runstore.record.logger import RunLogger

    db, stop = sys.argv[1], sys.argv[2]
    while not os.path.exists(stop):
        with RunLogger(job="busy", db=db, events_per_flush=5, flush_interval=0.05) as run:
            for i in range(300):
                run.log_event("item_processed", {"i": i})
                if i % 50 == 0:
                    run.log_warning("slow", i=i)
            print("wrote a run", flush=True)
    """
)


def test_backup_while_another_process_writes_is_consistent(sqlite_db, tmp_path):
    before = set(make_runs(sqlite_db, n=5, events=200))
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, sqlite_db, str(stop)], stdout=subprocess.PIPE, text=True
    )
    copies = []
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "wrote a run"
        for i in range(4):
            copies.append(tmp_path / f"during-{i}.db")
            backup(sqlite_db, copies[-1])
            time.sleep(0.05)
    finally:
        stop.touch()
        writer.wait(timeout=60)
    assert writer.returncode == 0
    seen = set()
    for copy in copies:
        ids, wrong = consistency(copy)
        assert wrong == [], copy
        assert before <= ids
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        with closing(sqlite3.connect(copy)) as conn:
            seen.add(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    assert len(seen) > 1, "the writer should have logged between the copies"


def test_backup_refuses_to_overwrite_without_force(sqlite_cli, tmp_path):
    make_runs(sqlite_cli.db, n=1)
    target = tmp_path / "copy.db"
    target.write_text("precious")
    target.chmod(0o644)

    result = sqlite_cli("db", "backup", str(target))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {target} already exists; use --force to replace it\n"
    assert target.read_text() == "precious"

    result = sqlite_cli("db", "backup", "--force", str(target))
    assert result.exit_code == 0, result.output
    assert consistency(target)[1] == []
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("store", "names the store itself"),
        ("missing-dir", "its directory does not exist"),
        ("directory", "is a directory"),
    ],
)
def test_backup_bad_targets_are_one_line_errors(sqlite_cli, tmp_path, where, message):
    make_runs(sqlite_cli.db, n=1)
    target = {
        "store": Path(sqlite_cli.db),
        "missing-dir": tmp_path / "nowhere" / "copy.db",
        "directory": tmp_path,
    }[where]
    result = sqlite_cli("db", "backup", str(target), "--force")
    assert result.exit_code != 0
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert consistency(Path(sqlite_cli.db))[1] == []


def _stale_wal(target: Path) -> None:
    """Leave at ``target``'s name the write-ahead log of another database, not yet checkpointed."""
    other = target.with_name("other.db")
    conn = sqlite3.connect(other)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE notes (line TEXT)")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.commit()
    conn.executemany("INSERT INTO notes VALUES (?)", [("x" * 500,)] * 200)
    conn.commit()
    Path(str(other) + "-wal").rename(str(target) + "-wal")
    conn.close()


@pytest.mark.parametrize("leftover", ["-wal", "-journal"])
def test_backup_refuses_a_path_with_a_leftover_log_and_force_replaces_it(
    sqlite_cli, tmp_path, leftover
):
    ids = set(make_runs(sqlite_cli.db, n=2))
    target = tmp_path / "b.db"
    if leftover == "-wal":
        _stale_wal(target)
    else:
        Path(str(target) + "-journal").write_bytes(os.urandom(4096))
    stale = Path(str(target) + leftover)
    before = stale.read_bytes()
    refused = sqlite_cli("db", "backup", str(target))
    assert refused.exit_code == 1
    assert "left over from another database" in refused.stderr and "--force" in refused.stderr
    assert stale.read_bytes() == before and not target.exists()
    done = sqlite_cli("db", "backup", str(target), "--force")
    assert done.exit_code == 0, done.stderr
    assert "integrity ok" in done.stdout
    assert not stale.exists()
    assert consistency(target) == (ids, [])


def test_a_copy_that_fails_its_integrity_check_is_never_put_in_place(
    sqlite_cli, tmp_path, monkeypatch
):
    from runstore.store import sqlite_file

    make_runs(sqlite_cli.db, n=1)
    real = sqlite_file.check_copy

    def damaged(path: Path) -> sqlite_file.CopyCheck:
        found = real(path)
        found.problems = ["*** in database main ***", "Page 3 is never used"]
        return found

    monkeypatch.setattr(sqlite_file, "check_copy", damaged)
    result = sqlite_cli("db", "backup", str(tmp_path / "b.db"))
    assert result.exit_code == 1
    assert "failed its integrity check" in result.stderr
    assert not (tmp_path / "b.db").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".b.db")] == []


def test_backup_of_a_missing_store_does_not_create_one(tmp_path):
    missing = tmp_path / "none.db"
    with pytest.raises(RunstoreError, match="no runstore store at"):
        backup(missing, tmp_path / "copy.db")
    assert not missing.exists() and not (tmp_path / "copy.db").exists()


def test_backup_of_a_postgresql_store_points_to_pg_dump(postgres_db, tmp_path):
    from conftest import Cli

    Store.open(postgres_db)
    result = Cli(postgres_db)("db", "backup", str(tmp_path / "copy.db"))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "pg_dump" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "copy.db").exists()


def test_backup_of_a_store_whose_path_has_a_hash(tmp_path):
    folder = tmp_path / "team#1"
    folder.mkdir()
    db = str(folder / "store.db")
    make_runs(db, n=1)
    result = backup(db, tmp_path / "copy.db")
    assert result.runs == 1


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
