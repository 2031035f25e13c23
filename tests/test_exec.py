"""``runstore exec``: the command cannot tell it is wrapped (output, exit code, signals), and the
run is recorded within bounds.

Acceptance runs go through a real ``runstore`` process; the bounds, the spool and the store's
failures are checked in-process, where they are fast and can be forced.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from helpers import last_run, output_lines, recorded_events, recorded_runs, runstore
from hypothesis import given, settings
from hypothesis import strategies as st

from runstore.errors import StoreError
from runstore.exec import command as exec_command
from runstore.exec.capture import OutputCapture, Spool
from runstore.exec.naming import default_job_name
from runstore.redact import command_line

PY = sys.executable

# -- reading what was recorded ---------------------------------------------------------------------


# -- running runstore ------------------------------------------------------------------------------


def start_runstore(db: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PY, "-m", "runstore", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "RUNSTORE_DB": db, **env},
    )


def run_in_process(
    tmp_path: Path, db: str, argv: list[str], **options: Any
) -> tuple[exec_command.ExecResult, bytes, bytes, list[str]]:
    """``run_command`` here, the command's output caught in files; returns the warnings too."""
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    warnings: list[str] = []
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        result = exec_command.run_command(
            argv,
            exec_command.ExecOptions(db=db, **options),
            stdout_fd=out.fileno(),
            stderr_fd=err.fileno(),
            warn=warnings.append,
        )
    return result, out_path.read_bytes(), err_path.read_bytes(), warnings


def py(code: str) -> list[str]:
    return [PY, "-c", code]


# -- acceptance: a real runstore process -----------------------------------------------------------


def test_output_and_exit_code_pass_through_and_are_recorded(db):
    result = runstore(db, "exec", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"
    run = last_run(db)
    assert run["status"] == "failed"
    assert run["exit_code"] == 3
    assert run["job"] == "sh"
    assert run["error_summary"] == "exit code 3: err"
    assert run["command"] == "sh -c 'echo out; echo err >&2; exit 3'"
    assert output_lines(db, run["run_id"]) == [("stdout", "out"), ("stderr", "err")]
    assert run["cpu_user_ms"] is not None and run["cpu_system_ms"] is not None
    assert [e["event_type"] for e in recorded_events(db, run["run_id"])] == [
        "run_started",
        "process_started",
        "output",
        "output",
        "process_exited",
        "run_finished",
    ]


def test_term_sent_to_runstore_reaches_the_command_and_cancels_the_run(sqlite_db):
    child = "import time; print('ready', flush=True); time.sleep(30)"
    proc = start_runstore(sqlite_db, "exec", "--", *py(child))
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    run = last_run(sqlite_db)
    assert (run["status"], run["exit_code"], run["signal"]) == ("cancelled", 143, signal.SIGTERM)
    assert run["error_summary"] == "cancelled by SIGTERM"
    [received] = recorded_events(sqlite_db, run["run_id"], "signal")
    assert received["data"] == {"signal": "SIGTERM", "forwarded": True}


def test_a_command_that_handles_the_signal_decides_the_outcome(sqlite_db):
    child = (
        "import signal, sys, time\n"
        "def done(*args):\n"
        "    print('cleaning up', flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGHUP, done)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = start_runstore(sqlite_db, "exec", "--", *py(child))
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=20) == 0
    assert proc.stdout.read() == b"cleaning up\n"
    assert last_run(sqlite_db)["status"] == "completed"


def test_command_not_found_exits_127_with_one_line(db):
    result = runstore(db, "exec", "--", "no-such-command-xyz", "--flag")
    assert result.returncode == 127
    assert result.stdout == b""
    assert result.stderr == b"Error: no-such-command-xyz: command not found\n"
    run = last_run(db)
    assert (run["status"], run["exit_code"]) == ("failed", 127)
    assert run["error_summary"] == "no-such-command-xyz: command not found"
    assert run["job"] == "no-such-command-xyz"


def test_stdin_and_options_after_the_command_belong_to_the_command(sqlite_db):
    script = 'cat; echo "$0 $1"'
    result = runstore(
        sqlite_db, "exec", "sh", "-c", script, "--timeout", "-q", input=b"from stdin\n"
    )
    assert (result.returncode, result.stdout) == (0, b"from stdin\n--timeout -q\n")


def test_unusable_store_still_runs_the_command_with_one_warning(tmp_path):
    store = tmp_path / "broken.db"
    store.write_bytes(b"this is not a database" * 100)
    result = runstore(str(store), "exec", "--", "sh", "-c", "echo still runs; exit 5")
    assert result.returncode == 5
    assert result.stdout == b"still runs\n"
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Warning: this run is not recorded: {store} cannot be opened")
    assert store.read_bytes() == b"this is not a database" * 100


@pytest.mark.parametrize(
    "options", [["--timeout", "soon"], ["--run-id", "bad id!"], ["--kill-after", "later"]]
)
def test_bad_options_are_usage_errors_and_nothing_runs(sqlite_cli, tmp_path, options):
    marker = tmp_path / "ran"
    result = sqlite_cli("exec", *options, "--", "touch", str(marker))
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1
    assert not marker.exists()
    [refused] = recorded_runs(sqlite_cli.db)  # a failed run says why CMD did not run
    assert refused["status"] == "failed" and refused["exit_code"] == 2


# -- exit codes and outcomes, in-process -----------------------------------------------------------


def test_timeout_terminates_the_command_with_124(sqlite_db, tmp_path):
    started = time.monotonic()
    result, *_ = run_in_process(tmp_path, sqlite_db, ["sleep", "30"], timeout=0.3)
    assert result.exit_code == 124
    assert time.monotonic() - started < 5
    run = last_run(sqlite_db)
    assert (run["status"], run["exit_code"], run["signal"]) == ("failed", 124, signal.SIGTERM)
    assert run["error_summary"] == "timed out after 300ms"
    assert [e["message"] for e in recorded_events(sqlite_db, run["run_id"], "timeout")] == [
        "timed out after 300ms; sent SIGTERM"
    ]


def test_timeout_kills_a_command_that_ignores_term(sqlite_db, tmp_path):
    child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"
    script = f"trap '' TERM; {PY} -c '{child}'"
    result, *_ = run_in_process(
        tmp_path, sqlite_db, ["sh", "-c", script], timeout=0.3, kill_after=0.3
    )
    assert result.exit_code == 124
    run = last_run(sqlite_db)
    assert (run["signal"], run["error_summary"]) == (
        signal.SIGKILL,
        "timed out after 300ms; killed with SIGKILL 300ms later",
    )


def test_exit_status_survives_an_ignored_sigchld(sqlite_db, tmp_path):
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # as some parents leave it
    try:
        result, *_ = run_in_process(tmp_path, sqlite_db, ["sh", "-c", "exit 3"])
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert result.exit_code == 3


def test_command_not_executable_exits_126(sqlite_db, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result, out, err, _ = run_in_process(tmp_path, sqlite_db, [str(script)])
    assert (result.exit_code, out, err) == (126, b"", b"")
    assert result.spawn_error == f"{script}: permission denied"
    assert (last_run(sqlite_db)["status"], last_run(sqlite_db)["exit_code"]) == ("failed", 126)


def test_death_by_signal_is_128_plus_n(sqlite_db, tmp_path):
    result, *_ = run_in_process(tmp_path, sqlite_db, ["sh", "-c", "kill -KILL $$"])
    assert result.exit_code == 128 + signal.SIGKILL
    run = last_run(sqlite_db)
    assert (run["status"], run["signal"], run["exit_code"]) == ("failed", 9, 137)
    assert run["error_summary"] == "killed by SIGKILL"


def test_child_sees_its_run_and_store_and_can_add_events(sqlite_db, tmp_path):
    script = (
        'echo "$RUNSTORE_RUN_ID $RUNSTORE_DB"; '
        f"{PY} -m runstore event 'rows loaded' --level warning --data '{{\"rows\": 5}}'"
    )
    result, out, err, _ = run_in_process(tmp_path, sqlite_db, ["sh", "-c", script], job="etl")
    assert (result.exit_code, err) == (0, b"")
    assert out.decode() == f"{result.run_id} {sqlite_db}\n"
    run = last_run(sqlite_db)
    assert (run["job"], run["warning_count"]) == ("etl", 1)
    logged = [
        (e["event_type"], e["message"], e["data"])
        for e in recorded_events(sqlite_db, run["run_id"])
    ]
    assert ("warning", "rows loaded", {"message": "rows loaded", "rows": 5}) in logged
    assert [t for t, *_ in logged].index("warning") > 1  # after process_started


def test_a_reader_that_leaves_stops_the_command_as_it_would_unwrapped(sqlite_db, tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)
    options = exec_command.ExecOptions(db=sqlite_db)
    result = exec_command.run_command(["yes"], options, stdout_fd=write_end)
    os.close(write_end)
    assert result.exit_code == 128 + signal.SIGPIPE
    assert last_run(sqlite_db)["signal"] == signal.SIGPIPE


def test_quiet_hides_output_of_a_success_and_shows_a_failure(sqlite_db, tmp_path):
    ok = run_in_process(tmp_path, sqlite_db, ["sh", "-c", "echo fine; echo noise >&2"], quiet=True)
    assert (ok[0].exit_code, ok[1], ok[2]) == (0, b"", b"")
    script = "echo a; echo b >&2; echo c; exit 4"
    bad = run_in_process(tmp_path, sqlite_db, ["sh", "-c", script], quiet=True)
    assert (bad[0].exit_code, bad[1], bad[2]) == (4, b"a\nc\n", b"b\n")
    assert [r["status"] for r in recorded_runs(sqlite_db)] == [
        "completed",
        "failed",
    ]  # recorded either way
    assert output_lines(sqlite_db, ok[0].run_id) == [("stdout", "fine"), ("stderr", "noise")]


def test_log_writes_run_log_json(sqlite_db, tmp_path):
    log = tmp_path / "run_log.json"
    run_in_process(tmp_path, sqlite_db, ["echo", "hi"], log_path=log, run_id="r1")
    written = json.loads(log.read_text())
    assert (written["run_id"], written["status"], written["exit_code"]) == ("r1", "completed", 0)
    assert written["events"][2]["data"] == {"stream": "stdout", "line": "hi"}


# -- the terminal: Ctrl-C reaches the command once -------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_at_a_terminal_is_delivered_once(sqlite_db, tmp_path):
    import pty

    counter = tmp_path / "count"
    child = (
        "import signal, time, sys\n"
        "n = 0\n"
        "def h(*a):\n"
        "    global n; n += 1\n"
        "signal.signal(signal.SIGINT, h)\n"
        "print('ready', flush=True)\n"
        "end = time.time() + 3\n"
        "while time.time() < end: time.sleep(0.05)\n"
        f"open({str(counter)!r}, 'w').write(str(n))\n"
    )
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child, in a new session on the pty
        os.environ["RUNSTORE_DB"] = sqlite_db
        os.execv(PY, [PY, "-m", "runstore", "exec", "--", PY, "-c", child])
    seen = b""
    deadline = time.monotonic() + 30
    while b"ready" not in seen and time.monotonic() < deadline:
        seen += os.read(master, 1024)
    os.write(master, b"\x03")  # Ctrl-C
    while True:
        try:
            if not os.read(master, 1024):
                break
        except OSError:
            break
    _, status = os.waitpid(pid, 0)
    os.close(master)
    assert counter.read_text() == "1"
    assert os.waitstatus_to_exitcode(status) == 0
    run = last_run(sqlite_db)
    [received] = recorded_events(sqlite_db, run["run_id"], "signal")
    assert received["data"] == {"signal": "SIGINT", "forwarded": False}


# -- bounded output --------------------------------------------------------------------------------


def test_many_lines_pass_through_and_storage_stays_bounded(sqlite_db, tmp_path):
    code = "import sys; sys.stdout.writelines(f'{i}\\n' for i in range(200_000))"
    result, out, _, _ = run_in_process(tmp_path, sqlite_db, py(code), head_lines=50, tail_lines=100)
    assert out == "".join(f"{i}\n" for i in range(200_000)).encode()
    stored = output_lines(sqlite_db, result.run_id)
    assert [line for _, line in stored] == [str(i) for i in range(50)] + [
        str(i) for i in range(199_900, 200_000)
    ]
    [marker] = recorded_events(sqlite_db, result.run_id, "output_omitted")
    assert marker["data"]["lines_omitted"] == 200_000 - 150
    assert marker["data"]["lines_total"] == 200_000
    assert marker["data"]["bytes_total"] == len(out)
    assert marker["data"]["stdout_lines"] == 200_000
    seqs = [e["event_type"] for e in recorded_events(sqlite_db, result.run_id)]
    assert seqs.index("output_omitted") == seqs.index("output") + 50  # between head and tail


@pytest.mark.slow
def test_millions_of_lines_keep_runstore_memory_flat(sqlite_db, tmp_path):
    """The command reads runstore's own peak RSS from /proc just before it exits."""

    def peak_after(lines: int) -> int:
        report = tmp_path / f"peak-{lines}"
        code = (
            "import os, sys\n"
            f"sys.stdout.writelines(f'line {{i}} of output\\n' for i in range({lines}))\n"
            "sys.stdout.flush()\n"
            "status = open(f'/proc/{os.getppid()}/status').read()\n"
            f"open({str(report)!r}, 'w').write(status)\n"
        )
        proc = start_runstore(sqlite_db, "exec", "--", *py(code))
        assert proc.stdout is not None
        total = sum(chunk.count(b"\n") for chunk in iter(lambda: proc.stdout.read(1 << 20), b""))
        assert proc.wait(timeout=300) == 0
        assert total == lines
        status = report.read_text()
        return int(status.split("VmHWM:")[1].split()[0])

    small, large = peak_after(100_000), peak_after(3_000_000)
    assert large < 100 * 1024
    assert large - small < 16 * 1024
    run = last_run(sqlite_db)
    assert run["event_count"] < 1100


# -- OutputCapture: the bounds, exactly ------------------------------------------------------------


def reference_lines(chunks: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    """Lines in the order they completed; unfinished lines last, stdout first."""
    pending = {"stdout": b"", "stderr": b""}
    done = []
    for stream, data in chunks:
        pending[stream] += data
        *complete, pending[stream] = pending[stream].split(b"\n")
        done += [(stream, line.decode()) for line in complete]
    done += [(s, pending[s].decode()) for s in ("stdout", "stderr") if pending[s]]
    return done


def captured(capture: OutputCapture, chunks: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    head = [line for stream, data in chunks for line in capture.feed(stream, data)]
    return [(line.stream, line.text) for line in head + capture.tail()]


chunk_lists = st.lists(
    st.tuples(
        st.sampled_from(["stdout", "stderr"]),
        st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\n\n", b"line\n"]), max_size=8).map(
            b"".join
        ),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(chunks=chunk_lists, head=st.integers(0, 6), tail=st.integers(0, 8), one_stream=st.booleans())
def test_capture_keeps_the_first_and_last_lines_exactly(chunks, head, tail, one_stream):
    if one_stream:
        chunks = [("stdout", data) for _, data in chunks]
    every = reference_lines(chunks)
    got = captured(OutputCapture(head, tail), chunks)
    if len(every) <= head + tail:
        assert got == every
    else:
        assert got == every[:head] + (every[-tail:] if tail else [])


def test_capture_counts_and_cuts_long_lines():
    capture = OutputCapture(1, 1, line_max_bytes=10)
    head = capture.feed("stdout", b"x" * 25 + b"\nshort\n" + b"y" * 1000)
    head += capture.feed("stdout", b"y" * 1000)
    tail = capture.tail()
    assert [(line.text, line.truncated) for line in head + tail] == [
        ("x" * 10, True),
        ("y" * 10, True),
    ]
    assert capture.totals() == {
        "stdout_lines": 3,
        "stdout_bytes": 2032,
        "stderr_lines": 0,
        "stderr_bytes": 0,
    }
    assert capture.stored_bytes == 10 + 1 + 10  # what the stored lines hold, newline included


def test_capture_memory_is_bounded_without_newlines():
    capture = OutputCapture(5, 10, tail_max_bytes=1 << 20)
    capture.feed("stdout", b"1\n2\n3\n4\n5\n")  # the head is full: the rest is the tail's
    block = b"z" * (64 << 10)
    for _ in range(200):  # 12.5 MiB on one endless line
        capture.feed("stdout", block)
    assert capture.held_bytes <= (1 << 20) + len(block) + capture.line_max_bytes
    for i in range(100_000):  # tiny chunks, alternating streams, no newline
        capture.feed("stdout" if i % 2 else "stderr", b".")
    assert capture.held_chunks <= 2
    for i in range(100_000):  # short lines, alternating streams
        capture.feed("stdout" if i % 2 else "stderr", b"%d\n" % i)
    assert capture.held_chunks <= 2 * (capture.tail_lines + 1)
    lines = capture.tail()
    assert [line.text for line in lines][-3:] == ["99997", "99998", "99999"]
    assert all(len(line.text) <= 4096 for line in lines)


def test_capture_stores_undecodable_bytes_and_nul_readably():
    capture = OutputCapture()
    [line] = capture.feed("stderr", b"bad \xff\xfe byte \x00 here\r\n")
    assert line.text == "bad \ufffd\ufffd byte \\x00 here"  # NUL: the store's one policy


# -- --quiet's spool -------------------------------------------------------------------------------


def test_spool_keeps_head_and_tail_on_disk_in_order(tmp_path):
    spool = Spool(head_bytes=10, tail_bytes=20, directory=str(tmp_path))
    pieces = [(1 + i % 2, f"{i:04d}\n".encode()) for i in range(100)]  # 5 bytes each
    for fd, data in pieces:
        spool.write(fd, data)
    out: list[tuple[int, bytes]] = []
    notes: list[int] = []
    spool.replay(lambda fd, data: out.append((fd, data)), notes.append)
    spool.close()
    assert out[:2] == pieces[:2]  # the head
    assert out[-4:] == pieces[-4:]  # the most recent output, at least half of tail_bytes
    assert len(out) <= 2 + 20 // 5 + 2
    assert notes == [5 * (100 - len(out))]


# -- the store fails: the job does not -------------------------------------------------------------


def test_store_failing_mid_run_warns_once_and_keeps_the_exit_code(sqlite_db, tmp_path, monkeypatch):
    from runstore.store.store import Store

    append_events = Store.append_events
    calls = []

    def disk_full_after_the_start(self: Store, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) > 1:
            raise StoreError(f"cannot write to {sqlite_db}: database or disk is full")
        append_events(self, *args, **kwargs)

    monkeypatch.setattr(Store, "append_events", disk_full_after_the_start)
    code = "import sys; print('\\n'.join(map(str, range(5000)))); sys.exit(7)"
    result, out, _, warnings = run_in_process(tmp_path, sqlite_db, py(code))
    assert result.exit_code == 7
    assert out.count(b"\n") == 5000
    assert warnings == [
        f"the run is not fully recorded: cannot write to {sqlite_db}: database or disk is full"
    ]


def test_locked_store_does_not_hold_the_command_up(sqlite_db, tmp_path):
    import sqlite3

    from runstore.store.store import Store

    Store.open(sqlite_db)  # an existing store, then another process holds its write lock
    holder = sqlite3.connect(sqlite_db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        result, out, _, warnings = run_in_process(
            tmp_path, sqlite_db, ["echo", "on time"], start_wait=0.3, finish_wait=0.3
        )
        assert time.monotonic() - started < 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (result.exit_code, out) == (0, b"on time\n")
    assert warnings == [
        "the store did not answer within 300ms; the command starts before its run is recorded",
        "this run is not recorded: database is locked",  # said again at the end, and why
    ]


def test_a_signal_before_the_command_started_cancels_without_running_it(sqlite_db, tmp_path):
    import sqlite3
    import threading

    from runstore.store.store import Store

    Store.open(sqlite_db)
    holder = sqlite3.connect(sqlite_db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # the run row cannot be written: runstore waits for it
    marker = tmp_path / "ran"
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        result, *_ = run_in_process(
            tmp_path, sqlite_db, ["touch", str(marker)], start_wait=10, finish_wait=0.2
        )
    finally:
        timer.join()
        holder.execute("ROLLBACK")
        holder.close()
    assert (result.exit_code, result.status) == (143, "cancelled")
    assert result.reason == "cancelled by SIGTERM before the command started"
    assert not marker.exists()


def test_taken_run_id_records_under_a_new_one(sqlite_db, tmp_path):
    first, *_ = run_in_process(tmp_path, sqlite_db, ["true"], run_id="nightly")
    second, _, _, warnings = run_in_process(tmp_path, sqlite_db, ["true"], run_id="nightly")
    assert first.run_id == "nightly" and second.run_id != "nightly"
    assert warnings == [
        f"run id 'nightly' is already taken; this run is recorded as {second.run_id}"
    ]
    assert [r["status"] for r in recorded_runs(sqlite_db)] == ["completed", "completed"]


# -- what is stored about the command --------------------------------------------------------------


def test_resource_use_is_the_commands_own(sqlite_db, tmp_path):
    code = (
        "import time; b = bytearray(80 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.2)"
    )
    run_in_process(tmp_path, sqlite_db, py(code))
    run = last_run(sqlite_db)
    assert 80 * 1024 < run["max_rss_kb"] < 200 * 1024
    run_in_process(tmp_path, sqlite_db, ["sleep", "0.3"])
    rss = last_run(sqlite_db)["max_rss_kb"]
    assert rss is not None and rss < 20 * 1024  # not runstore's own memory


@pytest.mark.parametrize("argv", [["true"], ["echo", "hi"], [sys.executable, "-c", "pass"]])
def test_even_the_shortest_command_has_a_max_rss_and_says_where_it_comes_from(
    sqlite_db, tmp_path, argv
):
    run_in_process(tmp_path, sqlite_db, argv)
    run = last_run(sqlite_db)
    exited = recorded_events(sqlite_db, run["run_id"], "process_exited")[0]["data"]
    assert run["max_rss_kb"] is not None and run["max_rss_kb"] > 0
    assert exited["max_rss_kb"] == run["max_rss_kb"]
    assert exited["max_rss_source"] in ("kernel", "sampled", "upper_bound")


def test_secrets_in_the_command_are_redacted(sqlite_db, tmp_path):
    argv = ["sh", "-c", "true --password=hunter2", "--token", "abc", "API_KEY=k1", "--user=bob"]
    run_in_process(tmp_path, sqlite_db, argv)
    stored = last_run(sqlite_db)["command"]
    assert "hunter2" not in stored and "abc" not in stored and "k1" not in stored
    assert "--user=bob" in stored


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["mysql", "--password", "pw", "db"], "mysql --password '***' db"),
        (["sh", "-c", "curl -H 'Authorization: Bearer t0k' x"], "Bearer ***"),
        (
            ["sh", "-c", "cd /x && DB_PASSWORD=s3 ./load --token=a"],
            "PASSWORD=*** ./load --token=***",
        ),
        (["sh", "-c", "DB_PASSWORD=s3 ./load"], "'DB_PASSWORD=*** ./load'"),  # the rest stays
        (["mysql", "--password=two words"], "'--password=***'"),
        (["psql", "postgresql://u:pw@h/db"], "postgresql://u:***@h/db"),
        (["sh", "-c", "echo the password is in the vault"], "echo the password is in the vault"),
    ],
)
def test_redaction_inside_shell_scripts(argv, expected):
    assert expected in command_line(argv)


@pytest.mark.parametrize(
    ("argv", "job"),
    [
        (["./scripts/backup.sh", "--full"], "backup"),
        (["/usr/bin/env"], "env"),
        (["python", "-m", "etl.load", "--day", "1"], "etl.load"),
        (["python3.11", "-u", "-X", "dev", "scripts/nightly.py", "--fast"], "nightly"),
        (["python3", "-c", "print(1)"], "python3"),
        (["bash", "-e", "-o", "pipefail", "backup.sh"], "backup"),
        (["sh", "-c", "pg_dump db | gzip > db.gz"], "sh"),
        (["/usr/bin/node", "--require", "dotenv/config", "sync.js"], "sync"),
        (["env", "-u", "HOME", "TZ=UTC", "nice", "-n", "10", "./sync.sh"], "sync"),
        (["nohup", "ruby", "-I", "lib", "report.rb"], "report"),
        (["pg_dump", "-Fc", "db"], "pg_dump"),
        (["PGPASSWORD=x", "psql", "-c", "select 1"], "psql"),
        (["./.sh"], ".sh"),
    ],
)
def test_job_name_defaults_to_what_the_command_runs(argv, job):
    assert default_job_name(argv) == job


# -- a store another process keeps locked ---------------------------------------------------------


def _hold_write_lock(db: str, seconds: float) -> subprocess.Popen[str]:
    """Another process that takes the store's write lock and keeps it for ``seconds``."""
    code = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "time.sleep(float(sys.argv[2]))\n"
        "c.execute('COMMIT')\n"
    )
    holder = subprocess.Popen([PY, "-c", code, db, str(seconds)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


@pytest.fixture
def impatient_store(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store whose every wait for the write lock gives up after 0.2 s (30 s in real use): a
    lock held for seconds outlasts many waits, as a 40 s lock outlasts the real one."""
    from runstore.store import engine as engines
    from runstore.store.store import Store

    Store.open(sqlite_db)
    engines.dispose_all()
    monkeypatch.setattr(engines, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    return sqlite_db


def test_a_run_is_recorded_once_a_long_write_lock_frees(impatient_store, tmp_path):
    from runstore.store.store import Store

    sqlite_db = impatient_store
    holder = _hold_write_lock(sqlite_db, 4)
    try:
        result, _, _, warnings = run_in_process(
            tmp_path, sqlite_db, ["sh", "-c", "exit 5"], start_wait=0.3, finish_wait=60
        )
    finally:
        holder.wait()
    assert result.exit_code == 5
    assert "waiting up to 1m to record this run" in " ".join(warnings)
    run = Store.open(sqlite_db).find_run(result.run_id)
    assert (run["status"], run["exit_code"]) == ("failed", 5)
    # the run lasted as long as the command (after its 0.3 s wait to start), not the lock
    assert run["duration_ms"] < 3000


def test_when_the_lock_never_frees_the_last_warning_says_so(impatient_store, tmp_path):
    sqlite_db = impatient_store
    holder = _hold_write_lock(sqlite_db, 30)
    try:
        result, _, _, warnings = run_in_process(
            tmp_path, sqlite_db, ["sh", "-c", "exit 5"], start_wait=0.3, finish_wait=6
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 5
    assert warnings[0].startswith("the store did not answer within 300ms")
    assert warnings[-1] == (
        f"this run is not recorded: cannot write to {sqlite_db}: database is locked"
    )


@pytest.mark.slow
def test_exec_under_a_40_second_write_lock_records_its_run(sqlite_db, tmp_path):
    """The case as it was found: another process holds the lock longer than SQLite's busy wait;
    the command exits 5 at once; the run is recorded when the lock frees."""
    from runstore.store.store import Store

    Store.open(sqlite_db)
    holder = _hold_write_lock(sqlite_db, 40)
    try:
        done = subprocess.run([PY, "-m", "runstore", "exec", "--db", sqlite_db, "--run-id", "late",
                               "--", "sh", "-c", "exit 5"], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)  # fmt: skip
    finally:
        holder.wait()
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr
    # With SQLite's own busy wait (30 s a try), the wait is said, and why.
    assert "Warning: the store is busy (database is locked); waiting up to 2m" in done.stderr
    run = Store.open(sqlite_db).find_run("late")
    assert (run["status"], run["exit_code"]) == ("failed", 5)
    # The run ended when the command did (after the 10 s wait for its run row), not when the
    # lock freed 40 s in and its end could be written.
    assert run["finished_at"] - run["started_at"] < timedelta(seconds=20)
    assert run["duration_ms"] < 20_000


@pytest.mark.parametrize(
    ("options", "job", "said"),
    [
        (["--job", "nightly", "--timeout", "banana"], "nightly", "--timeout: cannot read 'banana'"),
        (["--bogus"], "touch", "No such option: --bogus"),
        (["-j", "etl", "--head-lines", "abc"], "etl", "'--head-lines'"),
        (["--job", "x" * 300], "touch", "--job"),
    ],
    ids=["bad duration", "unknown option", "bad number", "bad job name"],
)
def test_a_refused_exec_is_recorded_as_a_failed_run_that_says_why(
    sqlite_db, tmp_path, options, job, said
):
    marker = tmp_path / "ran"
    done = runstore(sqlite_db, "exec", *options, "--", "touch", str(marker))
    assert done.returncode == 2 and not marker.exists()  # CMD never ran
    [line] = done.stderr.decode().splitlines()
    assert line.startswith("Error: ") and said in line
    run = last_run(sqlite_db)
    assert (run["job"], run["status"], run["exit_code"]) == (job, "failed", 2)
    assert run["error_summary"] == line.removeprefix("Error: ").split(" (see `")[0][:500]
    assert run["error_count"] == 1
