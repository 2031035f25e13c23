"""``runstore db backup``: a private, whole, checked copy, made while runs write; refused where it
would do harm."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest
from helpers import consistency, make_runs

from runstore.errors import RunstoreError
from runstore.history.backup import backup
from runstore.store.schema import SCHEMA_REVISION
from runstore.store.store import Store

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
