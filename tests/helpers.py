"""Builders and readers the tests share: reading the store the way another process would, and
stores of known runs to ask questions of. (Fixtures are in conftest.py.)"""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLE_INPUT, Cli, postgres_database, query
from sqlalchemy import insert, select, update

from runstore import procinfo
from runstore.record.logger import RunLogger
from runstore.store.schema import NOT_COMPLETED_STATUSES
from runstore.store.schema import events as events_table
from runstore.store.schema import runs as runs_table
from runstore.store.store import Store


def run_row(db: str, run_id: str) -> dict[str, Any]:
    rows = query(db, "SELECT * FROM runs WHERE run_id = :r", r=run_id)
    assert len(rows) == 1, f"expected one run {run_id!r}, found {len(rows)}"
    return rows[0]


def event_rows(db: str, run_id: str) -> list[dict[str, Any]]:
    """A run's events in seq order, ``data`` parsed (None when empty), ``ts`` as aware UTC."""
    rows = query(
        db,
        "SELECT e.seq, e.ts, e.event_type, e.level, e.message, CAST(e.data AS TEXT) AS data "
        "FROM events e JOIN runs r ON r.id = e.run_pk WHERE r.run_id = :r ORDER BY e.seq",
        r=run_id,
    )
    for row in rows:
        row["data"] = json.loads(row["data"]) if row["data"] is not None else None
        row["ts"] = as_utc(row["ts"])
    return rows


def event_types(db: str, run_id: str) -> list[str]:
    return [e["event_type"] for e in event_rows(db, run_id)]


def as_utc(value: Any) -> datetime:
    """A timestamp column as an aware UTC datetime (SQLite hands back text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def wait_for(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def recorded_runs(db: str) -> list[dict[str, Any]]:
    return query(db, "SELECT * FROM runs ORDER BY id")


def last_run(db: str) -> dict[str, Any]:
    rows = recorded_runs(db)
    assert rows, "no run was recorded"
    return rows[-1]


def recorded_events(db: str, run_id: str, event_type: str | None = None) -> list[dict[str, Any]]:
    rows = query(
        db,
        "SELECT e.seq, e.event_type, e.level, e.message, CAST(e.data AS TEXT) AS data "
        "FROM events e JOIN runs r ON r.id = e.run_pk WHERE r.run_id = :r ORDER BY e.seq",
        r=run_id,
    )
    for row in rows:
        row["data"] = json.loads(row["data"]) if row["data"] else {}
    return [r for r in rows if event_type is None or r["event_type"] == event_type]


def output_lines(db: str, run_id: str) -> list[tuple[str, str]]:
    return [(e["data"]["stream"], e["data"]["line"]) for e in recorded_events(db, run_id, "output")]


NOW = datetime.now(timezone.utc).replace(microsecond=0)


def set_run(db: str, run_id: str, **values: Any) -> None:
    """Overwrite columns of one run, e.g. to give it a known start time and duration."""
    Store.open(db).write(
        lambda conn: conn.execute(
            update(runs_table).where(runs_table.c.run_id == run_id).values(**values)
        )
    )


def place_run(
    db: str, run_id: str, *, ago: timedelta, duration_ms: int | None, **values: Any
) -> None:
    """Move a run to a known start (``ago`` before NOW) with a known duration."""
    started = NOW - ago
    finished = started + timedelta(milliseconds=duration_ms) if duration_ms is not None else None
    set_run(
        db,
        run_id,
        started_at=started,
        finished_at=finished,
        duration_ms=duration_ms,
        heartbeat_at=finished or started,
        **values,
    )


def insert_runs(db: str, rows: list[dict[str, Any]]) -> None:
    """Many runs at once, straight into the runs table (percentile and paging tests)."""
    Store.open(db).write(lambda conn: conn.execute(insert(runs_table), rows))


def snapshot(db: str) -> tuple[list[Any], list[Any]]:
    """Every row of runs and events, to prove that something changed nothing."""
    store = Store.open(db)
    with store.read() as conn:
        run_rows = [tuple(r) for r in conn.execute(select(runs_table).order_by(runs_table.c.id))]
        event_rows = [
            (r.id, r.run_pk, r.seq, r.ts, r.event_type, r.level, r.message)
            for r in conn.execute(select(events_table).order_by(events_table.c.id))
        ]
    return run_rows, event_rows


@dataclass
class Handful:
    """What ``record_handful`` made: the store, and each run's status by run id."""

    db: str
    statuses: dict[str, str]

    def not_completed(self) -> set[str]:
        return {rid for rid, st in self.statuses.items() if st in NOT_COMPLETED_STATUSES}


def record_handful(db: str, tmp_path: Path) -> Handful:
    """A handful of real runs with known start times (newest last):

    etl-ok       etl            completed   3h ago    1.5 s   2 items, a warning, a debug event
    etl-fail     etl            failed      2h ago    4 s     an item failed, an error
    bk-abandon   backup         abandoned   3d ago    -
    bk-cancel    backup         cancelled   50m ago   200 ms
    lines-empty  process-lines  (whatever an empty input gives)  20m ago  300 ms
    lines-sample process-lines  completed   15m ago   900 ms  9 items (runstore run, with --log)
    bk-live      backup         running     10m ago   -
    """
    with RunLogger(job="etl", run_id="etl-ok", db=db) as run:
        run.log_event("item_processed", {"line": "a"})
        run.log_event("trace", {"detail": 1}, level="debug")
        run.log_event("item_processed", {"line": "b"})
        run.log_warning("slow source", seconds=12)
    place_run(db, "etl-ok", ago=timedelta(hours=3), duration_ms=1500)

    run = RunLogger(job="etl", run_id="etl-fail", db=db)
    run.log_event("item_processed", {"line": "a"})
    run.log_event("item_failed", {"line": "c", "reason": "not a number"}, level="warning")
    run.log_error("boom", where="load")
    run.finish("failed", error_summary="boom")
    place_run(db, "etl-fail", ago=timedelta(hours=2), duration_ms=4000)

    run = RunLogger(job="backup", run_id="bk-abandon", db=db)
    run.finish("cancelled")
    place_run(db, "bk-abandon", ago=timedelta(days=3), duration_ms=None, status="abandoned")

    run = RunLogger(job="backup", run_id="bk-cancel", db=db)
    run.finish("cancelled", exit_code=143, error_summary="terminated")
    place_run(db, "bk-cancel", ago=timedelta(minutes=50), duration_ms=200)

    cli = Cli(db)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = cli("run", "--input", str(empty), "--output", str(tmp_path / "e.json"),
                 "--run-id", "lines-empty", "--job", "process-lines")  # fmt: skip
    assert "Traceback" not in result.output
    place_run(db, "lines-empty", ago=timedelta(minutes=20), duration_ms=300)

    result = cli("run", "--input", str(SAMPLE_INPUT), "--output", str(tmp_path / "p.json"),
                 "--run-id", "lines-sample")  # fmt: skip
    assert result.exit_code == 0, result.output
    place_run(db, "lines-sample", ago=timedelta(minutes=15), duration_ms=900)

    live = RunLogger(job="backup", run_id="bk-live", db=db, flush_interval=3600)
    live.log_event("item_processed", {"line": "x"})
    live.flush()
    place_run(db, "bk-live", ago=timedelta(minutes=10), duration_ms=None)

    store = Store.open(db)
    with store.read() as conn:
        statuses = dict(conn.execute(select(runs_table.c.run_id, runs_table.c.status)).all())
    assert len(statuses) == 7
    return Handful(db, statuses)


NEWEST_FIRST = ["bk-live", "lines-sample", "lines-empty", "bk-cancel", "etl-fail", "etl-ok",
                "bk-abandon"]  # fmt: skip


def fresh_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A new empty store for a module-scoped fixture: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        yield str(tmp_path_factory.mktemp("store") / "store.db")
    else:
        yield from postgres_database()


def handful_store(request, tmp_path_factory) -> Iterator[Handful]:
    for db in fresh_store(request, tmp_path_factory):
        yield record_handful(db, tmp_path_factory.mktemp("handful"))


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["run_id"] for r in rows]


def expected_stats(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What stats() must say, computed in Python from the rows themselves."""
    out: dict[str, dict[str, Any]] = {}
    for job in sorted({r["job"] for r in rows}):
        mine = sorted(
            (r for r in rows if r["job"] == job), key=lambda r: r["started_at"], reverse=True
        )
        statuses = [r["status"] for r in mine]
        durations = [r["duration_ms"] for r in mine if r.get("duration_ms") is not None]
        completed = statuses.count("completed")
        failed = sum(s in NOT_COMPLETED_STATUSES for s in statuses)
        streak = 0
        for status in (s for s in statuses if s != "running"):
            if status == "completed":
                break
            streak += 1
        successes = [r["started_at"] for r in mine if r["status"] == "completed"]
        out[job] = {
            "job": job,
            "runs": len(mine),
            "completed": completed,
            "failed": failed,
            "running": statuses.count("running"),
            "failure_rate": round(failed / (completed + failed), 4) if completed + failed else None,
            "p50_ms": nearest_rank(durations, 50),
            "p95_ms": nearest_rank(durations, 95),
            "max_ms": max(durations) if durations else None,
            "last_status": statuses[0],
            "last_started_at": mine[0]["started_at"],
            "failure_streak": streak,
            "last_success_at": successes[0] if successes else None,
        }
    return out


def known_runs(seed: int = 7) -> list[dict[str, Any]]:
    """Runs of four jobs with known durations, duplicates, gaps and a failure streak."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    # Running rows belong to this live process, so the read commands' reaper leaves them be.
    # (Every row has the same keys: an executemany insert takes its columns from the first.)
    pid = os.getpid()
    alive = {"host": procinfo.hostname(), "pid": pid, "boot_id": procinfo.boot_id(),
             "process_start": procinfo.process_start(pid)}  # fmt: skip

    def add(job: str, i: int, status: str, duration: int | None, hours_ago: float) -> None:
        started = NOW - timedelta(hours=hours_ago)
        rows.append(
            {
                "run_id": f"{job}-{i:03d}",
                "job": job,
                "status": status,
                "started_at": started,
                "finished_at": None
                if duration is None
                else started + timedelta(milliseconds=duration),
                "duration_ms": duration,
                **(alive if status == "running" else dict.fromkeys(alive)),
            }
        )

    for i in range(137):  # many distinct durations, a few failures
        status = "failed" if i % 9 == 4 else "completed"
        add("nightly", i, status, rng.randint(100, 90_000), hours_ago=200 - i)
    for i in range(20):  # heavy duplicates: percentiles land on ties
        add("dup", i, "completed", [5, 5, 5, 7, 7, 9, 9, 9, 9, 12][i % 10], hours_ago=50 - i)
    # newest first: running, failed, cancelled, abandoned, then a success, then older failures
    tail = [("running", None), ("failed", 4000), ("cancelled", 10), ("abandoned", None),
            ("completed", 2500), ("failed", 30), ("completed", 2400)]  # fmt: skip
    for i, (status, duration) in enumerate(tail):
        add("flaky", i, status, duration, hours_ago=1 + i)
    add("single", 0, "completed", 1234, hours_ago=300)
    add("only-running", 0, "running", None, hours_ago=0.5)
    return rows


def nearest_rank(values: list[int], percent: int) -> int | None:
    """The textbook nearest-rank percentile, in integer arithmetic."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-percent * len(ordered) // 100))
    return ordered[rank - 1]


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


# -- what a command printed ----------------------------------------------------------------


def ok(result: Any) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stderr == ""
    return result.stdout


def usage_error(result: Any, *fragments: str) -> str:
    """A malformed value: exit 2, nothing on stdout, the message on stderr naming what is wrong."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    return result.stderr


def one_error_line(result: Any, code: int = 1) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0].removeprefix("Error: ")


def text_table(out: str) -> tuple[str, list[str]]:
    lines = out.splitlines()
    return lines[0], lines[1:]


def jsonl(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def run_ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["run_id"] for r in rows]


ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Screen:
    """What ``runstore`` printed at a terminal: ``lines`` as shown (colours removed), stderr
    apart, and its exit code."""

    lines: list[str]
    stderr: str
    code: int

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def at_terminal(
    *args: str, columns: int = 80, env: dict[str, str] | None = None, timeout: float = 60
) -> Screen:
    """Run ``runstore ARGS`` with stdout on a real terminal (a pty) ``columns`` wide, stderr
    piped apart; ``PAGER`` is off unless ``env`` sets it."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    full_env = {**os.environ, "PAGER": "", **(env or {})}
    full_env.pop("COLUMNS", None)
    full_env.pop("LINES", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runstore", *args],
        stdin=slave, stdout=slave, stderr=subprocess.PIPE, env=full_env, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    code = proc.wait(timeout=timeout)
    shown = ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")
    return Screen(shown.splitlines(), stderr, code)


def runstore(
    db: str, *args: str, input: bytes | None = None, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[bytes]:
    """``runstore ARGS`` as a separate process, the way cron would start it."""
    return subprocess.run(
        [sys.executable, "-m", "runstore", *args],
        input=input,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "RUNSTORE_DB": db, **env},
    )
