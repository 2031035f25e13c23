"""``runstore exec --retries``, on both backends: a failed command runs again, every attempt is
one run's (its number on the events, the count on the run), the outcome and the exit code are the
last attempt's, and alerts see only that outcome."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Cli
from helpers import last_run, ok, recorded_events, runstore, usage_error, wait_for

# Fails until its third attempt: each attempt counts itself in a file.
THIRD_TIME_LUCKY = 'n=$(cat "$1" 2>/dev/null || echo 0); n=$((n+1)); echo "$n" > "$1"; ' \
    'echo "attempt $n"; [ "$n" -ge 3 ] || { echo "not yet" >&2; exit 75; }'  # fmt: skip


def _flaky(tmp_path: Path) -> list[str]:
    return ["sh", "-c", THIRD_TIME_LUCKY, "flaky", str(tmp_path / "count")]


def test_a_command_that_succeeds_on_its_third_attempt_is_one_completed_run(db, tmp_path):
    done = runstore(db, "exec", "--job", "flaky", "--retries", "3", "--retry-delay", "100ms",
                    "--", *_flaky(tmp_path))  # fmt: skip
    assert done.returncode == 0
    assert done.stdout == b"attempt 1\nattempt 2\nattempt 3\n"  # every attempt's output, as it ran
    said = done.stderr.decode().splitlines()
    assert said == [
        "not yet",
        "runstore: attempt 1 of 4 failed (exit code 75: not yet); trying again in 100ms",
        "not yet",
        "runstore: attempt 2 of 4 failed (exit code 75: not yet); trying again in 100ms",
    ]
    run = last_run(db)
    assert (run["status"], run["exit_code"], run["attempts"], run["warning_count"]) == (
        "completed", 0, 3, 2,
    )  # fmt: skip
    started = recorded_events(db, run["run_id"], "process_started")
    exited = recorded_events(db, run["run_id"], "process_exited")
    assert [e["data"]["attempt"] for e in started] == [1, 2, 3]
    assert [(e["data"]["attempt"], e["data"]["exit_code"]) for e in exited] == [
        (1, 75), (2, 75), (3, 0),
    ]  # fmt: skip
    retries = recorded_events(db, run["run_id"], "retry")
    assert [e["data"] for e in retries] == [
        {"attempt": 1, "exit_code": 75, "delay_s": 0.1},
        {"attempt": 2, "exit_code": 75, "delay_s": 0.1},
    ]
    lines = [e["data"]["line"] for e in recorded_events(db, run["run_id"], "output")]
    assert lines == ["attempt 1", "not yet", "attempt 2", "not yet", "attempt 3"]


def test_the_last_attempt_decides_the_outcome(db, tmp_path):
    done = runstore(db, "exec", "--job", "flaky", "--retries", "1", "--retry-delay", "0",
                    "--", *_flaky(tmp_path))  # fmt: skip
    assert done.returncode == 75
    run = last_run(db)
    assert (run["status"], run["exit_code"], run["attempts"]) == ("failed", 75, 2)
    assert run["error_summary"] == "exit code 75: not yet"


def test_retry_on_lists_the_exit_codes_worth_another_attempt(db, tmp_path):
    other = runstore(db, "exec", "--retries", "3", "--retry-delay", "0", "--retry-on", "1,2",
                     "--", *_flaky(tmp_path))  # fmt: skip
    assert other.returncode == 75 and last_run(db)["attempts"] == 1  # 75 is not listed
    (tmp_path / "count").unlink()
    listed = runstore(db, "exec", "--retries", "3", "--retry-delay", "0", "--retry-on", "75",
                      "--", *_flaky(tmp_path))  # fmt: skip
    assert listed.returncode == 0 and last_run(db)["attempts"] == 3


def test_a_command_not_found_is_not_retried(db):
    done = runstore(db, "exec", "--retries", "3", "--retry-delay", "0", "--", "no-such-cmd-x")
    assert done.returncode == 127
    assert last_run(db)["attempts"] == 1


def test_a_timeout_is_a_failure_worth_a_retry(db):
    done = runstore(db, "exec", "--retries", "1", "--retry-delay", "0", "--timeout", "200ms",
                    "--", "sleep", "10")  # fmt: skip
    assert done.returncode == 124
    run = last_run(db)
    assert (run["attempts"], run["status"]) == (2, "failed")
    assert len(recorded_events(db, run["run_id"], "timeout")) == 2


def test_a_cancel_while_waiting_to_retry_ends_the_run(db, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "runstore", "exec", "--job", "waits", "--retries", "3",
         "--retry-delay", "1m", "--", "sh", "-c", "exit 1"],
        env={**__import__("os").environ, "RUNSTORE_DB": db},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert "trying again in 1m" in line
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 143
    run = last_run(db)
    assert (run["status"], run["attempts"]) == ("cancelled", 1)
    assert run["error_summary"] == "cancelled by SIGTERM after attempt 1"


def test_alerts_see_only_the_final_outcome(db, tmp_path):
    said = tmp_path / "alerts.jsonl"
    cli = Cli(db)
    ok(cli("job", "set", "flaky", "--notify", f"command:cat >> {said}"))
    assert runstore(db, "exec", "--job", "flaky", "--", "true").returncode == 0
    done = runstore(db, "exec", "--job", "flaky", "--retries", "3", "--retry-delay", "0",
                    "--", *_flaky(tmp_path))  # fmt: skip
    assert done.returncode == 0
    assert not said.exists()  # ok, then ok: two failed attempts alerted no one
    (tmp_path / "count").unlink()
    done = runstore(db, "exec", "--job", "flaky", "--retries", "1", "--retry-delay", "0",
                    "--", *_flaky(tmp_path))  # fmt: skip
    assert done.returncode == 75
    assert wait_for(said.exists)
    told = [json.loads(line) for line in said.read_text().splitlines()]
    assert [(t["state"], t["run_status"]) for t in told] == [("failed", "failed")]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--retries", "-1"], "--retries"),
        (["--retries", "101"], "--retries"),
        (["--retries", "2", "--retry-on", "1,x"], "--retry-on: exit codes, comma-separated"),
        (["--retries", "2", "--retry-on", "0"], "--retry-on: exit codes are 1 to 255"),
        (["--retries", "2", "--retry-delay", "5"], "--retry-delay"),
    ],
)
def test_bad_retry_options_are_usage_errors_and_the_command_does_not_run(db, tmp_path, args, said):
    marker = tmp_path / "ran"
    done = runstore(db, "exec", "--job", "j", *args, "--", "touch", str(marker))
    assert done.returncode == 2 and said in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()
    assert not marker.exists()


def test_help_documents_the_retry_options(sqlite_cli):
    shown = ok(sqlite_cli("exec", "--help"))
    assert "--retries" in shown and "--retry-delay" in shown and "--retry-on" in shown
    usage_error(sqlite_cli("exec", "--retries", "x", "--", "true"), "--retries")
