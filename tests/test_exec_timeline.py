"""An exec run's timeline as ``show`` tells it: in the order things happened (as runstore read
them), across stdout, stderr, the events channel and ``runstore event``, with times that never
go backwards; and what the run's end says agrees with the store's counters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import event_rows, last_run, recorded_events, run_row, runstore

from runstore.channel import Channel, decode
from runstore.record.logger import RunLogger

# Each step apart in time: lines are stored in the order they were read.
STEP = "sleep 0.1"
RUNSTORE = f"{sys.executable} -m runstore"


def _timeline(db: str, run_id: str) -> list[tuple[str, str]]:
    """(type, what) for each event between the start and the exit."""
    shown = []
    for event in event_rows(db, run_id):
        kind, data = event["event_type"], event["data"] or {}
        if kind in ("run_started", "process_started", "process_exited", "run_finished"):
            continue
        shown.append((kind, data.get("line") or event["message"] or json.dumps(data)))
    return shown


def _times_never_go_back(db: str, run_id: str) -> None:
    rows = event_rows(db, run_id)
    assert [e["seq"] for e in rows] == list(range(1, len(rows) + 1))
    assert [e["ts"] for e in rows] == sorted(e["ts"] for e in rows)


def test_output_channel_events_and_runstore_event_keep_the_order_they_happened(sqlite_db):
    script = "; ".join([
        "echo first", STEP,
        """echo '{"type": "rows_loaded", "rows": 120}' >> "$RUNSTORE_EVENTS" """, STEP,
        "echo 'to stderr' >&2", STEP,
        f"{RUNSTORE} event 'loaded the rows' --data '{{\"n\": 1}}'", STEP,
        "echo last",
    ])  # fmt: skip
    done = runstore(sqlite_db, "exec", "--run-id", "order", "--", "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    assert _timeline(sqlite_db, "order") == [
        ("output", "first"),
        ("rows_loaded", '{"rows": 120}'),
        ("output", "to stderr"),
        ("log", "loaded the rows"),
        ("output", "last"),
    ]
    _times_never_go_back(sqlite_db, "order")
    [loaded] = recorded_events(sqlite_db, "order", "log")
    assert loaded["data"] == {"message": "loaded the rows", "n": 1}
    [rows] = recorded_events(sqlite_db, "order", "rows_loaded")
    assert rows["data"] == {"rows": 120} and rows["level"] == "info"


def test_channel_levels_count_and_malformed_lines_become_warnings(sqlite_db):
    lines = [
        '{"type": "disk_low", "level": "warning", "message": "93% full", "free_gb": 12}',
        "not json at all",
        "[1, 2]",
        '{"type": ""}',
        '{"level": "fatal"}',
        '{"level": "error", "message": "lost the connection"}',
    ]
    script = " && ".join(f"echo '{line}' >> \"$RUNSTORE_EVENTS\"" for line in lines)
    done = runstore(sqlite_db, "exec", "--run-id", "bad", "--", "sh", "-c", script)
    assert done.returncode == 0, done.stderr  # a bad line never fails the job
    run = run_row(sqlite_db, "bad")
    assert run["status"] == "completed"  # the command's exit code decides an exec run
    assert (run["warning_count"], run["error_count"]) == (5, 1)
    [disk] = recorded_events(sqlite_db, "bad", "disk_low")
    assert disk["message"] == "93% full" and disk["data"] == {"message": "93% full", "free_gb": 12}
    problems = [e["data"]["problem"] for e in recorded_events(sqlite_db, "bad", "malformed_event")]
    assert problems[0].startswith("not JSON")
    assert problems[1:] == [
        "not a JSON object",
        "type must be text of 1 to 64 characters",
        "level must be one of debug, info, warning, error",
    ]
    [lost] = recorded_events(sqlite_db, "bad", "log")
    assert lost["level"] == "error" and lost["message"] == "lost the connection"
    [finished] = recorded_events(sqlite_db, "bad", "run_finished")
    assert finished["data"]["errors"] == 1  # the run's end agrees with its counters


def test_events_past_the_head_are_stored_in_time_order_with_the_tail(sqlite_db):
    steps = []
    for i in range(1, 7):
        steps += [f"echo line{i}", STEP]
        if i == 4:
            steps += [f"{RUNSTORE} event 'between 4 and 5'", STEP]
    done = runstore(sqlite_db, "exec", "--run-id", "tail", "--head-lines", "2",
                    "--tail-lines", "3", "--", "sh", "-c", "; ".join(steps))  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = _timeline(sqlite_db, "tail")
    assert [what for _, what in shown] == [
        "line1", "line2", shown[2][1], "line4", "between 4 and 5", "line5", "line6",
    ]  # fmt: skip
    assert shown[2][0] == "output_omitted"  # line3, counted and left out
    _times_never_go_back(sqlite_db, "tail")


def test_runstore_event_inside_exec_loads_neither_typer_nor_sqlalchemy(tmp_path):
    channel = Channel()
    try:
        probe = (
            "import atexit, json, sys\n"
            "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
            "sys.argv = ['runstore', 'event', 'rows loaded', '-l', 'warning', '--data', "
            "'{\"rows\": 3}']\n"
            "from runstore.cli import main\n"
            "main()\n"
        )
        env = {**os.environ, "RUNSTORE_EVENTS": channel.path, "RUNSTORE_DB": "/nonexistent/x"}
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              env=env, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        loaded = {name.split(".")[0] for name in json.loads(done.stderr.splitlines()[-1])}
        assert not loaded & {"typer", "sqlalchemy", "click", "rich", "sqlite3", "dataclasses"}
        sent = decode(channel.read_all().rstrip(b"\n"))
        assert (sent.event_type, sent.level, sent.message) == ("warning", "warning", "rows loaded")
        assert sent.data == {"message": "rows loaded", "rows": 3}
    finally:
        channel.close()


def test_runstore_event_without_a_channel_reader_falls_back_to_the_store(sqlite_db, tmp_path):
    with RunLogger(job="j", run_id="direct", db=sqlite_db):
        gone = Channel()
        path = gone.path
        gone.close()  # the exec that made it has ended
        done = runstore(sqlite_db, "event", "still recorded", RUNSTORE_RUN_ID="direct",
                        RUNSTORE_EVENTS=path)  # fmt: skip
        assert done.returncode == 0 and done.stderr == b""
    [sent] = recorded_events(sqlite_db, "direct", "log")
    assert sent["message"] == "still recorded"


def test_run_finished_counts_the_errors_of_every_writer(sqlite_db):
    script = f"{RUNSTORE} event 'first problem' --level error; exit 0"
    done = runstore(sqlite_db, "exec", "--run-id", "errs", "--", "sh", "-c", script)
    assert done.returncode == 0
    [finished] = recorded_events(sqlite_db, "errs", "run_finished")
    assert finished["data"]["errors"] == run_row(sqlite_db, "errs")["error_count"] == 1


def test_a_run_failed_by_log_error_says_its_first_error(sqlite_db):
    with RunLogger(job="etl", run_id="logged", db=sqlite_db) as run:
        run.log_warning("slow")
        run.log_error("source table missing", table="orders")
        run.log_error("second problem")
    row = run_row(sqlite_db, "logged")
    assert row["status"] == "failed" and row["error_summary"] == "source table missing"
    [finished] = recorded_events(sqlite_db, "logged", "run_finished")
    assert finished["data"]["errors"] == 2


def test_a_timeout_is_said_on_stderr_unless_quiet(sqlite_db):
    done = runstore(sqlite_db, "exec", "--timeout", "300ms", "--", "sleep", "5")
    assert done.returncode == 124
    assert done.stderr.decode() == "runstore: timed out after 300ms; sent SIGTERM\n"
    quiet = runstore(sqlite_db, "exec", "--quiet", "--timeout", "300ms", "--", "sleep", "5")
    assert quiet.returncode == 124 and quiet.stderr == b""


@pytest.mark.slow
def test_an_exec_run_killed_mid_way_is_known_to_have_run_until_its_last_heartbeat(sqlite_db):
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runstore", "exec", "--run-id", "killed", "--", "sleep", "60"],
        env={**os.environ, "RUNSTORE_DB": sqlite_db},
    )
    time.sleep(6.5)  # past the first heartbeat, 5 s in
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [spawned] = recorded_events(sqlite_db, "killed", "process_started")
    os.killpg(spawned["data"]["pid"], signal.SIGKILL)  # the command, left behind
    shown = runstore(sqlite_db, "history", "--json")
    [run] = [r for r in json.loads(shown.stdout) if r["run_id"] == "killed"]
    assert run["status"] == "abandoned"
    assert 5000 <= run["duration_ms"] <= (time.monotonic() - started) * 1000
    assert last_run(sqlite_db)["heartbeat_at"] is not None
