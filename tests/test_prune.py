"""``runstore prune``: the right runs go, with their events; the rest stay; the file shrinks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, insert, select

from runstore.errors import StoreError, UsageError
from runstore.history import prune as pruning
from runstore.history.prune import prune
from runstore.store.schema import events, runs
from runstore.store.store import CounterDeltas, Store

NOW = datetime.now(timezone.utc)


def add_run(
    store: Store,
    run_id: str,
    *,
    job: str = "nightly",
    status: str = "completed",
    days_ago: float = 0,
    n_events: int = 3,
    payload: int = 0,
) -> int:
    """A run started ``days_ago`` days ago with ``n_events`` events, written as the logger does."""
    started = NOW - timedelta(days=days_ago)
    values = {
        "run_id": run_id,
        "job": job,
        "status": status,
        "started_at": started,
        "heartbeat_at": started,
        "host": "test-host",
        "pid": os.getpid(),
    }
    if status != "running":
        values |= {"finished_at": started + timedelta(seconds=5), "duration_ms": 5000}
    run_pk = store.create_run(values)
    rows = [
        (started, "item_processed", "info", None, json.dumps({"i": i, "pad": "x" * payload}))
        for i in range(n_events)
    ]
    store.append_events(run_pk, rows, CounterDeltas(), heartbeat_at=started)
    return run_pk


def run_ids(store: Store) -> set[str]:
    with store.read() as conn:
        return set(conn.execute(select(runs.c.run_id)).scalars())


def events_of(store: Store, run_pks: list[int]) -> int:
    with store.read() as conn:
        query = select(func.count()).select_from(events).where(events.c.run_pk.in_(run_pks))
        return int(conn.execute(query).scalar_one())


def total_events(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


@pytest.fixture
def mixed(db: str) -> tuple[Store, dict[str, int]]:
    """Old and recent runs of every status across two jobs."""
    store = Store.open(db)
    plan = [
        ("old-ok-1", "nightly", "completed", 200),
        ("old-ok-2", "nightly", "completed", 150),
        ("old-failed", "nightly", "failed", 120),
        ("old-cancelled", "nightly", "cancelled", 110),
        ("old-abandoned", "nightly", "abandoned", 100),
        ("old-running", "nightly", "running", 130),
        ("new-ok", "nightly", "completed", 10),
        ("new-failed", "nightly", "failed", 5),
        ("etl-old-1", "etl", "completed", 300),
        ("etl-old-2", "etl", "failed", 200),
        ("etl-new", "etl", "completed", 1),
    ]
    keys = {
        run_id: add_run(store, run_id, job=job, status=status, days_ago=days)
        for run_id, job, status, days in plan
    }
    return store, keys


ALL = {
    "old-ok-1", "old-ok-2", "old-failed", "old-cancelled", "old-abandoned", "old-running",
    "new-ok", "new-failed", "etl-old-1", "etl-old-2", "etl-new",
}  # fmt: skip
OLD_FINISHED = {
    "old-ok-1", "old-ok-2", "old-failed", "old-cancelled", "old-abandoned", "etl-old-1",
    "etl-old-2",
}  # fmt: skip


def test_old_finished_runs_go_with_their_events_and_the_rest_stay(mixed):
    store, keys = mixed
    before = total_events(store)

    result = prune(store, 90 * 86400)

    assert run_ids(store) == ALL - OLD_FINISHED
    assert result.runs == len(OLD_FINISHED)
    assert result.events == 3 * len(OLD_FINISHED)
    assert result.by_job == {"etl": 2, "nightly": 5}
    assert result.kept_older == 1  # the running one
    assert events_of(store, [keys[r] for r in OLD_FINISHED]) == 0
    assert total_events(store) == before - result.events


def test_a_running_run_is_never_pruned_whatever_its_age(mixed):
    store, _ = mixed
    prune(store, 0)
    assert run_ids(store) == {"old-running"}


def test_keep_failed_keeps_failed_cancelled_and_abandoned_runs(mixed):
    store, _ = mixed
    result = prune(store, 90 * 86400, keep_failed=True)
    assert run_ids(store) == ALL - {"old-ok-1", "old-ok-2", "etl-old-1"}
    assert result.kept_older == 5


def test_keep_last_keeps_each_jobs_newest_runs_counting_recent_ones(mixed):
    store, _ = mixed
    # nightly, newest first: new-failed, new-ok, old-abandoned | old-cancelled, old-failed, ...
    # etl, newest first: etl-new, etl-old-2, etl-old-1: all three kept.
    prune(store, 90 * 86400, keep_last=3)
    assert run_ids(store) == ALL - {"old-cancelled", "old-failed", "old-ok-2", "old-ok-1"}


def test_keep_last_and_keep_failed_together_protect_either_way(mixed):
    store, _ = mixed
    prune(store, 90 * 86400, keep_last=3, keep_failed=True)
    # etl-old-1 (completed) stays by --keep-last; old-failed (beyond the newest 3) by --keep-failed.
    assert run_ids(store) == ALL - {"old-ok-1", "old-ok-2"}


def test_job_limits_the_prune_to_that_job(mixed):
    store, _ = mixed
    result = prune(store, 90 * 86400, jobs=["etl"])
    assert run_ids(store) == ALL - {"etl-old-1", "etl-old-2"}
    assert result.by_job == {"etl": 2}


def test_dry_run_changes_nothing_and_predicts_the_real_prune(mixed):
    store, _ = mixed
    before, events_before = run_ids(store), total_events(store)

    planned = prune(store, 90 * 86400, keep_last=3, dry_run=True)
    assert run_ids(store) == before
    assert total_events(store) == events_before

    done = prune(store, 90 * 86400, keep_last=3)
    assert (planned.runs, planned.events, planned.by_job, planned.kept_older) == (
        done.runs,
        done.events,
        done.by_job,
        done.kept_older,
    )


def test_deletes_in_batches(db, monkeypatch):
    store = Store.open(db)
    keys = [add_run(store, f"r{i:02d}", days_ago=100 + i, n_events=4) for i in range(7)]
    batches = []
    result = prune(store, 90 * 86400, batch_size=3, progress=lambda r, e: batches.append((r, e)))
    assert batches == [(3, 12), (6, 24), (7, 28)]
    assert result.runs == 7 and events_of(store, keys) == 0

    # A batch also stops early once it holds many events, to keep each write lock short.
    keys = [add_run(store, f"big{i}", days_ago=100, n_events=10) for i in range(4)]
    monkeypatch.setattr(pruning, "PRUNE_BATCH_EVENTS", 25)
    batches.clear()
    prune(store, 90 * 86400, progress=lambda r, e: batches.append((r, e)))
    assert batches == [(2, 20), (4, 40)]
    assert run_ids(store) == set()


WRITER = """
import os, sys, time
from runstore.record.logger import RunLogger

with RunLogger(job="live", db=sys.argv[1], events_per_flush=5, flush_interval=0.02) as run:
    print(run.run_id, flush=True)
    i = 0
    while not os.path.exists(sys.argv[2]):
        run.log_event("item_processed", {"i": i})
        if i % 100 == 0:
            run.log_warning("checkpoint", i=i)
        i += 1
        time.sleep(0.001)
"""


def test_prune_and_vacuum_while_another_process_logs(sqlite_db):
    store = Store.open(sqlite_db)
    started = NOW - timedelta(days=100)
    with store.engine.begin() as conn:
        keys = (
            conn.execute(
                insert(runs).returning(runs.c.id),
                [
                    {
                        "run_id": f"old{i}",
                        "job": "bulk",
                        "status": "completed",
                        "started_at": started,
                        "finished_at": started,
                        "event_count": 2,
                    }
                    for i in range(600)
                ],
            )
            .scalars()
            .all()
        )
        conn.execute(
            insert(events),
            [
                {"run_pk": k, "seq": seq, "ts": started, "event_type": "x", "level": "info"}
                for k in keys
                for seq in (1, 2)
            ],
        )
    stop = Path(sqlite_db).with_name("stop")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, sqlite_db, str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        live = writer.stdout.readline().strip()
        deadline = time.monotonic() + 10
        while _logged(store, live) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)  # until the writer is in full swing
        logged_before = _logged(store, live)
        result = prune(store, 90 * 86400, batch_size=50)
        logged_during = _logged(store, live) - logged_before
    finally:
        stop.touch()
        writer.wait(timeout=60)

    assert writer.returncode == 0
    assert (result.runs, result.events, result.vacuumed) == (600, 1200, True)
    assert run_ids(store) == {live}
    with store.read() as conn:
        counted, status = conn.execute(select(runs.c.event_count, runs.c.status)).one()
        top = conn.execute(select(func.max(events.c.seq))).scalar_one()
    assert status == "completed"
    assert counted == total_events(store) == top  # nothing the writer logged was lost
    assert logged_during > 0, "the writer should have been logging all along"


def _logged(store: Store, run_id: str) -> int:
    with store.read() as conn:
        return conn.execute(select(runs.c.event_count).where(runs.c.run_id == run_id)).scalar_one()


def test_nothing_to_prune_is_not_an_error(db):
    store = Store.open(db)
    add_run(store, "fresh", days_ago=1)
    result = prune(store, 90 * 86400)
    assert (result.runs, result.events, result.vacuumed) == (0, 0, False)
    assert run_ids(store) == {"fresh"}


def test_vacuum_shrinks_the_sqlite_file(sqlite_db):
    store = Store.open(sqlite_db)
    for i in range(40):
        add_run(store, f"old{i}", days_ago=100, n_events=50, payload=400)
    add_run(store, "keep", days_ago=1)
    size = Path(sqlite_db).stat().st_size + _wal_size(sqlite_db)

    result = prune(store, 90 * 86400)

    assert result.vacuumed and result.vacuum_error is None
    assert result.size_before == size
    after = Path(sqlite_db).stat().st_size + _wal_size(sqlite_db)
    assert result.size_after == after
    assert after < size / 4
    assert result.bytes_freed == size - after
    assert _wal_size(sqlite_db) == 0  # checkpointed and truncated
    assert run_ids(store) == {"keep"}


def test_no_vacuum_leaves_the_space_inside_the_file(sqlite_db):
    store = Store.open(sqlite_db)
    for i in range(20):
        add_run(store, f"old{i}", days_ago=100, n_events=50, payload=400)
    size = Path(sqlite_db).stat().st_size + _wal_size(sqlite_db)

    result = prune(store, 90 * 86400, vacuum=False)

    assert not result.vacuumed
    assert Path(sqlite_db).stat().st_size + _wal_size(sqlite_db) >= size
    assert result.free_bytes and result.free_bytes > 20 * 50 * 400
    # The next prune vacuums even with nothing new to delete: the free pages are still there.
    again = prune(store, 90 * 86400)
    assert again.runs == 0 and again.vacuumed and again.free_bytes == 0
    assert again.size_after is not None and again.size_after < size / 2


def test_vacuum_on_postgresql_runs_outside_a_transaction(postgres_db):
    store = Store.open(postgres_db)
    add_run(store, "old", days_ago=100)
    result = prune(store, 90 * 86400)
    assert result.vacuumed and result.vacuum_error is None
    assert result.size_before is None and result.bytes_freed is None


def test_refuses_to_leave_orphan_events_when_foreign_keys_are_off(sqlite_db):
    Store.open(sqlite_db)  # created and migrated the normal way
    url = f"sqlite:///{sqlite_db}"
    plain = Store(url, create_engine(url))  # an engine without runstore's pragmas
    add_run(plain, "old", days_ago=100)
    with pytest.raises(StoreError, match="foreign keys"):
        prune(plain, 90 * 86400)
    assert run_ids(plain) == {"old"}
    assert total_events(plain) == 3


def test_bad_ages_are_usage_errors(db):
    store = Store.open(db)
    with pytest.raises(UsageError):
        prune(store, -1)
    with pytest.raises(UsageError, match="shorter"):
        prune(store, 1e15)


# -- the command ---------------------------------------------------------------------------------


def test_prune_command_reports_what_it_removed(cli, mixed):
    result = cli("prune", "--older-than", "90d", "--keep-failed")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("removed 3 runs and 9 events started before ")
    assert lines[0].endswith("(older than 90d)")
    assert any(line.split() == ["etl", "1"] for line in lines)
    assert any(line.split() == ["nightly", "2"] for line in lines)
    assert "kept 5 older runs" in result.stdout


def test_prune_command_json(cli, mixed):
    doc = cli.json("prune", "--older-than", "90d", "--dry-run")
    assert doc["dry_run"] is True
    assert (doc["runs"], doc["events"], doc["kept_older"]) == (7, 21, 1)
    assert doc["by_job"] == {"etl": 2, "nightly": 5}
    assert datetime.fromisoformat(doc["cutoff"]) < NOW - timedelta(days=89)
    store, _ = mixed
    assert run_ids(store) == ALL


def test_prune_command_dry_run_says_nothing_changed(cli, mixed):
    result = cli("prune", "--older-than", "90d", "--dry-run", "--job", "etl")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("would remove 2 runs and 6 events")
    assert "dry run: nothing was changed" in result.stdout
    assert run_ids(mixed[0]) == ALL


def test_prune_command_no_vacuum_says_where_the_space_is(sqlite_cli):
    store = Store.open(sqlite_cli.db)
    for i in range(5):
        add_run(store, f"old{i}", days_ago=100, n_events=50, payload=400)
    result = sqlite_cli("prune", "--older-than", "90d", "--no-vacuum")
    assert result.exit_code == 0, result.output
    assert "is free inside the store file" in result.stdout
    result = sqlite_cli("prune", "--older-than", "90d")
    assert "freed " in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "ninety days"], "--older-than: cannot read 'ninety days'"),
        (["--older-than", ""], "--older-than: cannot read ''"),
        (["--older-than", "3"], "--older-than: '3' has no unit: say 3s, 3m, 3h or 3d"),
        (["--older-than", "99999999999d"], "--older-than: '99999999999d' is too long"),
    ],
)
def test_prune_command_bad_older_than_is_one_line_and_exit_2(sqlite_cli, args, message):
    result = sqlite_cli("prune", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {message}")
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.output


def test_prune_command_needs_older_than(sqlite_cli):
    result = sqlite_cli("prune", "--keep-last", "5")
    assert result.exit_code == 2
    assert "--older-than" in result.stderr


def _wal_size(db: str) -> int:
    wal = Path(db + "-wal")
    return wal.stat().st_size if wal.exists() else 0
