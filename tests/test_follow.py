"""``logs --follow`` and ``show --follow``, on both backends: a running run's output and events
are printed as they are stored, following ends when the run does (or its process is gone), a
finished run prints and exits, and Ctrl-C stops following quietly."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time

import pytest
from conftest import query
from helpers import runstore, wait_for

from runstore.record.logger import RunLogger


class Follower:
    """``runstore ARGS`` running apart, its stdout read line by line as it comes (from the pipe
    itself: a buffered reader would hold lines that a wait on the pipe cannot see)."""

    def __init__(self, db: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runstore", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "RUNSTORE_DB": db},
        )  # fmt: skip
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        self._held = b""
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)

    def line(self, timeout: float = 15.0) -> str | None:
        """The next line, or None when none came within ``timeout`` (or the output ended)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._held:
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(left):
                return None
            chunk = os.read(self._fd, 65536)
            if not chunk:
                return None
            self._held += chunk
        line, self._held = self._held.split(b"\n", 1)
        return line.decode()

    def lines_until(self, wanted: str, timeout: float = 15.0) -> list[str]:
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.line(deadline - time.monotonic())
            if line is None:
                break
            seen.append(line)
            if wanted in line:
                return seen
        raise AssertionError(f"{wanted!r} never came; saw {seen}")

    def finish(self, timeout: float = 15.0) -> tuple[int, str, str]:
        """The exit code, the rest of stdout (what no ``line`` took) and stderr."""
        self._selector.close()
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, self._held.decode() + out, err


def _output(run: RunLogger, line: str, stream: str = "stdout") -> None:
    run.log_event("output", {"stream": stream, "line": line})
    run.flush()


def test_logs_follow_prints_output_as_it_is_stored_and_ends_with_the_run(db):
    run = RunLogger("etl", "live", db=db)
    _output(run, "first")
    follower = Follower(db, "logs", "live", "--follow")
    assert follower.line() == "first"
    _output(run, "second", "stderr")
    assert follower.line() == "second"  # before the run ends
    _output(run, "third")
    run.finish()
    code, rest, err = follower.finish()
    assert (code, rest, err) == (0, "third\n", "")


def test_show_follow_streams_events_and_jsonl(db):
    run = RunLogger("etl", "shown", db=db)
    run.log_warning("disk is filling")
    run.flush()
    lines = Follower(db, "show", "shown", "--follow", "--level", "warning")
    as_json = Follower(db, "show", "shown", "--follow", "--jsonl", "--type", "metric")
    seen = lines.lines_until("disk is filling")
    assert seen[0].split()[:2] == ["run_id", "shown"]  # the run's fields first
    assert "SEQ" in seen[-2] and "warning" in seen[-1]
    run.log_metric("rows_loaded", 120)
    run.flush()
    first = json.loads(as_json.line() or "null")
    assert (first["event_type"], first["data"]) == ("metric", {"name": "rows_loaded", "value": 120})
    run.log_error("lost the source")
    run.finish()
    code, rest, _ = lines.finish()
    assert code == 0 and "lost the source" in rest
    code, rest, _ = as_json.finish()
    assert code == 0 and rest == ""


def test_follow_on_a_finished_run_prints_and_exits(db):
    with RunLogger("etl", "done", db=db) as run:
        run.log_event("output", {"stream": "stdout", "line": "all of it"})
    done = runstore(db, "logs", "done", "--follow", timeout=20)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"all of it\n", b"")
    shown = runstore(db, "show", "done", "-f", "--jsonl", timeout=20)
    assert [json.loads(x)["event_type"] for x in shown.stdout.splitlines()][-1] == "run_finished"


def test_following_ends_when_the_run_s_process_is_gone(db):
    code = (
        "import os, sys, time\n"
        "from runstore.record.logger import RunLogger\n"
        "run = RunLogger(job='dies', run_id='dying', db=sys.argv[1])\n"
        "run.log_event('output', {'stream': 'stdout', 'line': 'alive'}); run.flush()\n"
        "time.sleep(60)\n"
    )
    RunLogger("other", db=db).finish()  # the store exists before the child starts
    child = subprocess.Popen([sys.executable, "-c", code, db])
    assert wait_for(lambda: query(db, "SELECT 1 FROM runs WHERE run_id = 'dying'"), timeout=20)
    follower = Follower(db, "logs", "dying", "--follow")
    try:
        assert follower.line(timeout=20) == "alive"
    finally:
        child.kill()
        child.wait()
    status, _, err = follower.finish(timeout=30)  # the reaper notices within seconds
    assert (status, err) == (0, "")
    assert runstore(db, "history", "--json").stdout.count(b'"abandoned"') == 1


def test_ctrl_c_stops_following_quietly(db):
    run = RunLogger("etl", "endless", db=db)
    _output(run, "tick")
    follower = Follower(db, "logs", "endless", "--follow")
    assert follower.line() == "tick"
    follower.proc.send_signal(signal.SIGINT)
    code, _, err = follower.finish()
    assert code == 130 and "Traceback" not in err
    run.finish()


def test_follow_with_json_or_csv_is_a_usage_error(db):
    RunLogger("etl", "r", db=db).finish()
    for fmt in ("--json", "--csv"):
        done = runstore(db, "show", "r", "--follow", fmt)
        assert done.returncode == 2
        assert done.stderr.decode().startswith("Error: --follow prints events as they come")


@pytest.mark.parametrize("command", ["logs", "show"])
def test_follow_of_an_unknown_run_is_one_error_line(db, command):
    RunLogger("etl", "r", db=db).finish()
    done = runstore(db, command, "nope", "--follow")
    assert done.returncode == 1
    assert done.stderr.decode().count("\n") == 1 and b"Error:" in done.stderr
