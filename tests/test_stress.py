"""Nothing lost: many writers at once, and runs killed at random moments (slow; .ci/run runs
them)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from sqlalchemy import func, select

from runstore.history.reaper import reap
from runstore.store.schema import events, runs
from runstore.store.store import Store

pytestmark = pytest.mark.slow

WRITERS = 8
EVENTS_PER_WRITER = 2000

WRITER = textwrap.dedent(
    """
    import sys
    from runstore.record.logger import RunLogger

    db, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with RunLogger(job="stress", run_id=name, db=db) as run:
        for i in range(count):
            if i % 100 == 99:
                run.log_warning("every hundredth", i=i)  # flushed at once
            else:
                run.log_event("tick", {"i": i})  # batched
    """
)


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_eight_writers_lose_nothing_while_readers_query(db):
    Store.open(db)  # read commands answer only once a store exists
    writers = [_spawn(WRITER, db, f"w{i}", str(EVENTS_PER_WRITER)) for i in range(WRITERS)]
    reader_failures = []
    reads = 0
    while any(w.poll() is None for w in writers):
        result = subprocess.run(
            [sys.executable, "-m", "runstore", "history", "--json", "--db", db],
            capture_output=True,
            text=True,
        )
        reads += 1
        if result.returncode != 0:
            reader_failures.append(result.stderr)
    for w in writers:
        _, err = w.communicate()
        assert w.returncode == 0, err
        assert err == "", err
    assert reader_failures == []
    assert reads > 0

    store = Store.open(db)
    with store.read() as conn:
        for i in range(WRITERS):
            run = conn.execute(select(runs).where(runs.c.run_id == f"w{i}")).mappings().one()
            assert run["status"] == "completed"
            seqs = (
                conn.execute(
                    select(events.c.seq).where(events.c.run_pk == run["id"]).order_by(events.c.seq)
                )
                .scalars()
                .all()
            )
            # run_started + the events + run_finished, numbered without gaps
            assert seqs == list(range(1, EVENTS_PER_WRITER + 3))
            assert run["event_count"] == EVENTS_PER_WRITER + 2
            assert run["warning_count"] == EVENTS_PER_WRITER // 100


VICTIM = textwrap.dedent(
    """
    import sys
    from runstore.record.logger import RunLogger

    run = RunLogger(job="victim", run_id=sys.argv[2], db=sys.argv[1], events_per_flush=50)
    logged = 1  # run_started
    while True:
        run.log_event("tick", {"n": logged})
        logged += 1
        if logged % 50 == 0:
            run.flush()
            print(logged, flush=True)  # everything up to here is in the store
    """
)


def test_runs_killed_at_random_moments_leave_a_sound_store(sqlite_db):
    rng = random.Random(20261128)
    Store.open(sqlite_db)  # created once, so kills land in runs rather than in set-up
    confirmed: dict[str, int] = {}
    for k in range(30):
        name = f"killed-{k}"
        victim = _spawn(VICTIM, sqlite_db, name)
        time.sleep(rng.uniform(0.3, 1.5))
        victim.send_signal(signal.SIGKILL)
        out, _ = victim.communicate()
        lines = out.split()
        confirmed[name] = int(lines[-1]) if lines else 0
        with sqlite3.connect(sqlite_db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    store = Store.open(sqlite_db)
    marked = {run["run_id"] for run in reap(store)}
    with store.read() as conn:
        recorded = set(conn.execute(select(runs.c.run_id)).scalars())
    # a victim killed while still starting up may not have written its run row yet
    assert all(confirmed[name] == 0 for name in set(confirmed) - recorded)
    assert marked == recorded
    assert len(recorded) >= 20
    with store.read() as conn:
        for name in recorded:
            flushed = confirmed[name]
            run = conn.execute(select(runs).where(runs.c.run_id == name)).mappings().one()
            assert run["status"] == "abandoned"
            assert run["finished_at"] is not None
            stored = conn.execute(
                select(func.count()).select_from(events).where(events.c.run_pk == run["id"])
            ).scalar_one()
            assert stored >= flushed, f"{name}: {flushed} events confirmed, {stored} stored"
    assert os.path.getsize(sqlite_db) > 0
