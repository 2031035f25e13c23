"""Runs whose process is gone are marked abandoned; live and finished runs never are."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from runstore.history.reaper import find_stale, reap
from runstore.record.logger import RunLogger
from runstore.store.schema import runs
from runstore.store.store import Store


def _set(store: Store, run_id: str, **values) -> None:
    store.write(
        lambda conn: conn.execute(update(runs).where(runs.c.run_id == run_id).values(**values))
    )


def test_run_of_a_dead_process_on_this_host_is_abandoned(db, cli):
    code = (
        "import os, sys\n"
        "from runstore.record.logger import RunLogger\n"
        "run = RunLogger(job='dies', run_id='dead', db=sys.argv[1])\n"
        "run.log_warning('about to vanish')\n"
        "os._exit(9)\n"
    )
    subprocess.run([sys.executable, "-c", code, db], check=False)
    store = Store.open(db)
    assert store.find_run("dead")["status"] == "running"
    result = cli("history", "--json")  # read commands reap first
    (row,) = [r for r in json.loads(result.stdout) if r["run_id"] == "dead"]
    assert row["status"] == "abandoned"
    assert row["finished_at"] is not None
    assert "is gone" in row["error_summary"]


def test_live_run_is_left_alone_and_finished_run_never_downgraded(db):
    store = Store.open(db)
    live = RunLogger(job="alive", run_id="alive", store=store)
    with RunLogger(job="done", run_id="done", store=store):
        pass
    # Even with an ancient heartbeat, a run whose process exists on this host is alive.
    _set(store, "alive", heartbeat_at=datetime.now(timezone.utc) - timedelta(days=3))
    assert reap(store) == []
    assert store.find_run("alive")["status"] == "running"
    assert store.find_run("done")["status"] == "completed"
    live.finish()


def test_reused_pid_or_reboot_means_the_run_is_gone(db):
    store = Store.open(db)
    first = RunLogger(job="j", run_id="pid-reused", store=store)
    second = RunLogger(job="j", run_id="rebooted", store=store)
    _set(store, "pid-reused", process_start=1)  # our pid, but another process's start time
    _set(store, "rebooted", boot_id="00000000-0000-0000-0000-000000000000")
    reasons = {r["run_id"]: r["reason"] for r in reap(store)}
    assert "another process" in reasons["pid-reused"]
    assert "rebooted" in reasons["rebooted"]
    # the loggers' own finish still records the real end, over the mistaken abandonment
    first.finish()
    second.finish()


def test_other_hosts_are_judged_by_their_heartbeat(db):
    store = Store.open(db)
    now = datetime.now(timezone.utc)
    beats = {
        "quiet": now - timedelta(minutes=20),
        "beating": now - timedelta(seconds=20),
        "never-beat": None,
    }
    for name, beat in beats.items():
        # stands in for a process on another machine: no flush, no heartbeat from here
        RunLogger(job="remote", run_id=name, store=store, flush_interval=3600)
        _set(store, name, host="worker-7.example", pid=4242, heartbeat_at=beat,
             started_at=now - timedelta(hours=1))  # fmt: skip
    stale = {r["run_id"]: r for r in find_stale(store, stale_after_s=300)}
    assert set(stale) == {"quiet", "never-beat"}
    assert "no heartbeat from worker-7.example" in stale["quiet"]["reason"]
    marked = {r["run_id"] for r in reap(store, stale_after_s=300)}
    assert marked == {"quiet", "never-beat"}
    quiet = store.find_run("quiet")
    assert quiet["status"] == "abandoned"
    # finished at the last sign of life, not when it was noticed
    assert abs((quiet["finished_at"] - (now - timedelta(minutes=20))).total_seconds()) < 1
    assert store.find_run("beating")["status"] == "running"


def test_reap_command_lists_and_marks(db, cli):
    code = (
        "import os, sys\n"
        "from runstore.record.logger import RunLogger\n"
        "RunLogger(job='dies', run_id='gone', db=sys.argv[1])\n"
        "os._exit(1)\n"
    )
    subprocess.run([sys.executable, "-c", code, db], check=False)
    dry = cli("reap", "--dry-run", "--json")
    assert [r["run_id"] for r in json.loads(dry.stdout)] == ["gone"]
    assert Store.open(db).find_run("gone")["status"] == "running"
    done = cli("reap", "--json")
    assert [r["run_id"] for r in json.loads(done.stdout)] == ["gone"]
    assert Store.open(db).find_run("gone")["status"] == "abandoned"
    again = cli("reap")
    assert again.exit_code == 0
    assert "no stale runs" in again.stderr


def test_a_writer_whose_clock_is_behind_is_not_taken_for_dead(postgres_db, monkeypatch):
    """On a shared server heartbeats are in the server's time: a host whose clock runs ten
    minutes slow still looks alive to the reapers of other hosts."""
    from runstore.record import batcher

    store = Store.open(postgres_db)
    slow = datetime.now(timezone.utc) - timedelta(minutes=10)
    monkeypatch.setattr(batcher, "local_now", lambda: slow)
    run = RunLogger(job="remote", run_id="slow-clock", store=store, flush_interval=3600)
    _set(store, "slow-clock", host="worker-9.example", pid=4242)
    run.log_warning("a beat")  # flushed at once, with the heartbeat
    assert find_stale(store, stale_after_s=300) == []
    run.finish()
