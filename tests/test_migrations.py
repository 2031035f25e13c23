"""The schema and its migrations: created at head through Alembic, the same as the models,
upgraded when older, refused when newer or not a store at all, and safe to create from two
processes at once."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, closing
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import query
from helpers import event_rows, run_row
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from runstore.errors import SchemaTooNew, StoreError
from runstore.record.logger import RunLogger
from runstore.store import engine as engines
from runstore.store.location import resolve_db
from runstore.store.migrate import alembic_config, migrations_dir, upgrade
from runstore.store.schema import KNOWN_REVISIONS, SCHEMA_REVISION, compared, metadata
from runstore.store.store import Store

VIEWS = tuple(metadata.info.get("views", ()))


def execute(db: str, *statements: str) -> None:
    """Change the store behind runstore's back, from a connection of our own."""
    engine = create_engine(resolve_db(db), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def store_version(db: str) -> list[str]:
    return [r["version_num"] for r in query(db, "SELECT version_num FROM alembic_version")]


def files_beside(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


# -- the models and the migrations agree ---------------------------------------------------------


def test_autogenerate_finds_no_difference(db):
    store = Store.open(db)
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"compare_type": True, "include_object": compared},
        )
        differences = compare_metadata(context, metadata)
    assert differences == [], "the models and the migrations differ; generate a revision"


def test_revision_constants_match_the_migration_scripts():
    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_heads() == [SCHEMA_REVISION]
    chain = [rev.revision for rev in scripts.walk_revisions()]  # newest first
    assert tuple(reversed(chain)) == KNOWN_REVISIONS
    assert KNOWN_REVISIONS[-1] == SCHEMA_REVISION


def test_migrations_are_found_from_a_checkout():
    found = migrations_dir()
    assert (found / "env.py").is_file()
    assert any((found / "versions").glob("*.py"))


# -- a new store --------------------------------------------------------------------------------


def test_new_store_is_created_at_head(db):
    Store.open(db)
    assert store_version(db) == [SCHEMA_REVISION]
    tables = {r["n"] for r in query(db, "SELECT COUNT(*) AS n FROM runs")}
    assert tables == {0}
    for view in VIEWS:  # the documented views are there and answer
        query(db, f"SELECT * FROM {view}")


def test_new_sqlite_store_uses_wal(sqlite_db):
    Store.open(sqlite_db)
    engines.dispose_all()
    conn = sqlite3.connect(sqlite_db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


RACER = """
import sys, time
from pathlib import Path
from runstore.record.logger import RunLogger
from runstore.store.store import Store

db, index, signals = sys.argv[1], sys.argv[2], Path(sys.argv[3])
(signals / f"ready-{index}").touch()
while not (signals / "go").exists():
    time.sleep(0.001)
store = Store.open(db)
with RunLogger(job="race", run_id=f"racer-{index}", store=store) as run:
    run.log_event("hello", {"index": int(index)})
"""


def test_two_processes_creating_a_new_store_at_once_both_succeed(db, tmp_path):
    racers = 3
    signals = tmp_path / "signals"
    signals.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, db, str(i), str(signals)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(racers)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(signals.glob("ready-*"))) < racers and time.monotonic() < deadline:
            time.sleep(0.01)
        (signals / "go").touch()  # all imported and waiting: let them open the store together
        outcomes = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert [p.returncode for p in procs] == [0] * racers, outcomes
    assert store_version(db) == [SCHEMA_REVISION]
    for i in range(racers):
        assert run_row(db, f"racer-{i}")["status"] == "completed"
        assert [e["event_type"] for e in event_rows(db, f"racer-{i}")] == [
            "run_started",
            "hello",
            "run_finished",
        ]


def test_losing_the_creation_race_leaves_foreign_keys_on(sqlite_db):
    store = Store.open(sqlite_db)
    with RunLogger(job="j", run_id="keep", store=store) as run:
        run.log_event("step")
    # What a process that lost the race to create the store does: it finds head and stops.
    upgrade(store.engine)

    pooled = max(store.engine.pool.checkedin(), 1)  # type: ignore[attr-defined]
    with ExitStack() as stack:
        conns = [stack.enter_context(store.engine.connect()) for _ in range(pooled)]
        assert [c.exec_driver_sql("PRAGMA foreign_keys").scalar() for c in conns] == [1] * pooled

    store.write(lambda conn: conn.execute(text("DELETE FROM runs WHERE run_id = 'keep'")))
    assert query(sqlite_db, "SELECT COUNT(*) AS n FROM events")[0]["n"] == 0  # cascaded


# -- an older store -----------------------------------------------------------------------------


@pytest.mark.skipif(len(KNOWN_REVISIONS) < 2, reason="only one schema revision so far")
def test_older_store_is_upgraded_keeping_its_runs(db):
    oldest = KNOWN_REVISIONS[0]
    engine = engines.get_engine(resolve_db(db))
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), oldest)
    execute(
        db,
        "INSERT INTO runs (run_id, job, status, started_at, event_count) "
        "VALUES ('old-run', 'legacy', 'completed', '2026-01-02 03:04:05', 0)",
    )
    engines.dispose_all()
    assert store_version(db) == [oldest]

    Store.open(db)
    assert store_version(db) == [SCHEMA_REVISION]
    assert run_row(db, "old-run")["job"] == "legacy"
    leftovers = query(db, "SELECT COUNT(*) AS n FROM runs WHERE run_id LIKE '_alembic_tmp%'")
    assert leftovers[0]["n"] == 0
    if "://" not in db:  # SQLite: a backup copy was taken first, private like the store
        backups = [p for p in Path(db).parent.iterdir() if p.name.endswith(".bak")]
        assert len(backups) == 1
        assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
        # whole and checked before the upgrade began: no journal, no temporary beside it
        assert not [
            p for p in Path(db).parent.iterdir() if p.name.endswith(("-journal", ".partial"))
        ]
        conn = sqlite3.connect(backups[0])
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(oldest,)]
            assert conn.execute("SELECT run_id FROM runs").fetchall() == [("old-run",)]
        finally:
            conn.close()
    with RunLogger(job="after-upgrade", db=db) as run:
        pass
    assert run_row(db, run.run_id)["status"] == "completed"


# -- stores runstore must not touch ---------------------------------------------------------------


def test_newer_store_is_refused_and_left_untouched(db, sqlite_cli, tmp_path):
    with RunLogger(job="j", run_id="existing", db=db):
        pass
    execute(db, "UPDATE alembic_version SET version_num = '9999_from_the_future'")
    engines.dispose_all()
    runs_before = query(db, "SELECT * FROM runs")
    bytes_before = Path(db).read_bytes() if "://" not in db else None

    with pytest.raises(SchemaTooNew) as refused:
        Store.open(db)
    message = str(refused.value)
    assert "9999_from_the_future" in message
    assert "newer" in message and "upgrade runstore" in message

    result = sqlite_cli("run", "--input", "x.txt", "--output", str(tmp_path / "p.json"), "--db", db)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "newer" in lines[0]
    assert "Traceback" not in result.output

    engines.dispose_all()
    assert store_version(db) == ["9999_from_the_future"]
    assert query(db, "SELECT * FROM runs") == runs_before
    if bytes_before is not None:
        assert Path(db).read_bytes() == bytes_before


def test_file_that_is_not_a_database_is_refused_and_left_untouched(sqlite_cli, tmp_path):
    path = tmp_path / "notes.db"
    content = b"These are my notes, not a database.\n" * 50
    path.write_bytes(content)
    path.chmod(0o644)

    with pytest.raises(StoreError, match="not a database") as refused:
        Store.open(path)
    assert str(path) in str(refused.value)

    for args in (
        ["run", "--input", "in.txt", "--output", str(tmp_path / "p.json"), "--db", str(path)],
        ["db", "current", "--db", str(path)],
        ["db", "upgrade", "--db", str(path)],
    ):
        result = sqlite_cli(*args)
        assert result.exit_code == 1, args
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert str(path) in lines[0]
    engines.dispose_all()

    assert path.read_bytes() == content
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert files_beside(path) == ["notes.db"]  # no -wal, -shm or journal left beside it


def test_another_programs_sqlite_database_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.commit()
    conn.close()
    content = path.read_bytes()

    with pytest.raises(StoreError, match="not a runstore store") as refused:
        Store.open(path)
    assert str(path) in str(refused.value)
    engines.dispose_all()
    assert path.read_bytes() == content  # not even switched to WAL
    assert files_beside(path) == ["app.db"]


def test_postgres_database_with_other_tables_is_refused(postgres_db):
    execute(postgres_db, "CREATE TABLE customers (id integer primary key, name text)")
    execute(postgres_db, "INSERT INTO customers VALUES (1, 'Ada')")
    with pytest.raises(StoreError, match="not a runstore store"):
        Store.open(postgres_db)
    tables = query(
        postgres_db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    )
    assert [t["table_name"] for t in tables] == ["customers"]
    assert query(postgres_db, "SELECT name FROM customers") == [{"name": "Ada"}]


def test_directory_as_store_is_refused(sqlite_cli, tmp_path):
    with pytest.raises(StoreError, match="directory"):
        Store.open(tmp_path)
    result = sqlite_cli("db", "upgrade", "--db", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")


def test_switching_a_new_store_to_wal_waits_for_another_writer(sqlite_db):
    # A new store is switched to WAL right after its creation, when another process that lost
    # the race to create it may hold the write lock: the switch must wait for it, not fail at
    # once with "database is locked" (SQLite skips the busy handler for this lock upgrade).
    Store.open(sqlite_db)
    engines.dispose_all()
    other = sqlite3.connect(sqlite_db, isolation_level=None, check_same_thread=False)
    assert other.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, other.execute, args=("COMMIT",))
    release.start()
    url = resolve_db(sqlite_db)
    try:  # the schema is checked; now the step that switches
        engines.ensure_wal(engines.get_engine(url), sqlite_db)
    finally:
        release.join()
        other.close()
    engines.dispose_all()
    conn = sqlite3.connect(sqlite_db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_documented_views_in_the_schema_match_the_revision_that_creates_them():
    import importlib.util

    from runstore.store.schema import VIEWS

    path = migrations_dir() / "versions" / "0002_documented_views.py"
    spec = importlib.util.spec_from_file_location("views_revision", path)
    assert spec is not None and spec.loader is not None
    revision = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(revision)
    assert VIEWS["run_summary"] == revision.RUN_SUMMARY
    assert VIEWS["job_stats"] == revision.JOB_STATS


@pytest.mark.slow
def test_an_upgrade_killed_at_any_moment_leaves_the_store_and_any_backup_whole(tmp_path):
    """SIGKILL while the pre-upgrade backup is copied or the upgrade runs: the store is at its
    old revision or the new one with every run, and a .bak that exists is whole and checked
    (it used to be left with a hot journal that rolled it back to nothing)."""
    from alembic import command

    oldest = KNOWN_REVISIONS[0]
    one_run = ("INSERT INTO runs (run_id, job, status, started_at, event_count) "
               "VALUES ('old', 'legacy', 'completed', '2026-01-02 03:04:05', 0)")  # fmt: skip
    many_events = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60000) "
        "INSERT INTO events (run_pk, seq, ts, event_type, level, message, data) "
        "SELECT 1, i, '2026-01-02 03:04:05', 'output', 'info', hex(randomblob(500)), NULL FROM n"
    )
    for delay in (0.05, 0.15, 0.3, 0.5, 0.8, 1.2):
        db = str(tmp_path / f"store-{delay}.db")
        engine = create_engine(f"sqlite:///{db}", poolclass=NullPool)
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), oldest)
            conn.execute(text(one_run))
            conn.execute(text(many_events))
        engine.dispose()
        child = subprocess.Popen([sys.executable, "-m", "runstore", "db", "upgrade", "--db", db],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(delay)
        child.kill()
        child.wait()
        with closing(sqlite3.connect(db)) as conn:  # one revision or the other, runs intact
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            assert version in (oldest, SCHEMA_REVISION), delay
            assert conn.execute("SELECT run_id FROM runs").fetchall() == [("old",)]
            assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (60000,)
        for backup in tmp_path.glob(f"store-{delay}.db.*.bak"):
            assert not Path(f"{backup}-journal").exists(), delay
            with closing(sqlite3.connect(backup)) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
                assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (60000,)
