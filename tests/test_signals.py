"""SIGTERM, SIGINT and SIGHUP end a run as cancelled: events flushed, run_log.json written, exit
128+N, whatever the run was doing when the signal came."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import SAMPLE_INPUT as SAMPLE
from conftest import query

from runstore.store.store import Store


def _wait_for_run(db: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Store.open(db).count_runs():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError("the run never started")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_runstore_run_is_cancelled_by_a_signal(tmp_path: Path, signum: int) -> None:
    source = tmp_path / "big.txt"
    source.write_text("".join(f"item {i}\n" for i in range(3_000_000)))
    db = str(tmp_path / "store.db")
    log = tmp_path / "run_log.json"
    child = subprocess.Popen(
        [sys.executable, "-m", "runstore", "run", "--input", str(source), "--output",
         str(tmp_path / "p.json"), "--log", str(log), "--run-id", "sig", "--db", db],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for_run(db)
    time.sleep(0.5)
    child.send_signal(signum)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 128 + signum
    assert err.strip() == f"Error: cancelled by {signal.Signals(signum).name}"
    run = Store.open(db).find_run("sig")
    assert (run["status"], run["exit_code"], run["signal"]) == ("cancelled", 128 + signum, signum)
    written = json.loads(log.read_text())
    assert written["status"] == "cancelled"
    assert written["event_count"] == run["event_count"] == len(written["events"])
    assert not (tmp_path / "p.json").exists()


# A job that logs nothing more after its last write: the signal comes while it is quiet, or
# while that write is under way (then it is held until the write is over).
QUIET_JOB = textwrap.dedent(
    """
    import sys, threading, time
    from runstore.record.logger import RunLogger
    from runstore.signals import cancel_on_signals

    db, mode = sys.argv[1], sys.argv[2]
    run = RunLogger(job="quiet", run_id="quiet", db=db)
    with cancel_on_signals(), run:
        if mode == "worker":  # another thread logs while the main thread waits
            def work():
                for i in range(200):
                    run.log_event("tick", {"i": i})
                    time.sleep(0.01)
            worker = threading.Thread(target=work)
            worker.start()
            print("ready", flush=True)
            worker.join()
            time.sleep(30)
        else:
            run.log_warning("last words")  # flushed at once
            print("ready", flush=True)
            time.sleep(30)
    """
)


@pytest.mark.parametrize("mode", ["quiet", "worker"])
def test_a_library_run_is_cancelled_however_quiet_and_whoever_logs(tmp_path, mode):
    db = str(tmp_path / "store.db")
    child = subprocess.Popen(
        [sys.executable, "-c", QUIET_JOB, db, mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=30)
    run = Store.open(db).find_run("quiet")
    assert (run["status"], run["exit_code"], run["signal"]) == ("cancelled", 143, 15)
    assert run["finished_at"] is not None


def test_a_signal_held_during_a_write_is_raised_after_it(tmp_path, monkeypatch):
    """In-process: the signal arrives inside the store transaction of a flush."""
    import os

    from runstore.errors import Cancelled
    from runstore.record.logger import RunLogger
    from runstore.signals import cancel_on_signals

    db = str(tmp_path / "store.db")
    run = RunLogger(job="held", run_id="held", db=db)
    real_append = run.store.append_events

    def append_then_signal(*args, **kwargs):
        real_append(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the write is still "under way"
        time.sleep(0.05)

    monkeypatch.setattr(run.store, "append_events", append_then_signal)
    with pytest.raises(Cancelled), cancel_on_signals(), run:
        run.log_warning("stored, then the signal")
        pytest.fail("the held signal should have been raised when the flush ended")
    stored = Store.open(db).find_run("held")
    assert stored["status"] == "cancelled"
    assert stored["warning_count"] == 2  # the warning stored once, and the cancellation


# -- signals at the edges: while runstore starts, and after the run is over ----------------------


@pytest.fixture
def restored_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    from runstore import signals

    signals.take_held()
    signals.exit_on_signal(-1)


def test_a_signal_held_since_start_up_cancels_the_run_once_it_exists(tmp_path, restored_handlers):
    import os

    from runstore.job.pipeline import run_job
    from runstore.signals import hold_signals

    hold_signals()
    os.kill(os.getpid(), signal.SIGTERM)  # arrives before the store is even opened
    db = str(tmp_path / "store.db")
    summary, problem = run_job(input_path=SAMPLE, output_path=tmp_path / "p.json",
                               log_path=None, run_id="early", job="j", db=db)  # fmt: skip
    assert summary["status"] == "cancelled" and summary["exit_code"] == 143
    assert problem == "cancelled by SIGTERM"
    assert Store.open(db).find_run("early")["status"] == "cancelled"
    assert not (tmp_path / "p.json").exists()


def test_after_the_run_a_signal_exits_with_the_runs_own_code(restored_handlers):
    import os

    from runstore.signals import exit_on_signal, hold_signals

    hold_signals()
    exit_on_signal(0)
    with pytest.raises(SystemExit) as exited:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs at the next bytecode
    assert exited.value.code == 0


def _latest(db: str) -> tuple[int, str, int] | None:
    """(id, status, exit code) of the newest run; None before there is a store."""
    import sqlite3

    try:
        with sqlite3.connect(db) as conn:
            query = "select id, status, exit_code from runs order by id desc"
            return conn.execute(query).fetchone()
    except sqlite3.OperationalError:
        return None


def _python_start_up_interrupted(err: str) -> bool:
    """Ctrl-C while Python itself starts (``site``, ``runpy``, the imports that lead to
    ``main``), before the first function of runstore ran: Python's own KeyboardInterrupt, in
    which runstore's frames, if any, are module imports (``in <module>``)."""
    lines = err.strip().splitlines()
    return (
        bool(lines)
        and lines[0].startswith("Traceback")
        and lines[-1] == "KeyboardInterrupt"
        and all(line.endswith("in <module>") for line in lines if "/runstore/" in line)
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "exec"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_at_any_moment_of_start_up_agrees_with_the_store(tmp_path, command, signum):
    """Whenever the signal comes, the exit code is what the store says (or, before runstore's
    first line of code ran, the signal's own death with nothing recorded); never a traceback."""
    db = str(tmp_path / "store.db")
    argv = {
        "run": ["run", "--db", db, "--input", str(SAMPLE), "--output", str(tmp_path / "p.json")],
        "exec": ["exec", "--db", db, "--", "sleep", "0.3"],
    }[command]
    for delay in (0.0, 0.03, 0.08, 0.15, 0.25, 0.4, 0.6, 0.9):
        before = _latest(db)
        child = subprocess.Popen([sys.executable, "-m", "runstore", *argv], text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        time.sleep(delay)
        child.send_signal(signum)
        _, err = child.communicate(timeout=60)
        latest = _latest(db)
        if _python_start_up_interrupted(err):
            assert latest == before, delay  # before runstore's own code ran: nothing recorded
            continue
        assert "Traceback" not in err and "Exception" not in err, err
        if child.returncode < 0:  # the signal's own death, before runstore took its signals
            assert latest == before, delay
            continue
        assert latest is not None and latest != before, (delay, child.returncode)
        expected = ("completed", 0) if child.returncode == 0 else ("cancelled", 128 + signum)
        assert latest[1:] == expected, (delay, latest, child.returncode)


@pytest.mark.slow
def test_a_signal_right_after_the_summary_line_keeps_the_exit_code(tmp_path):
    db = str(tmp_path / "store.db")
    for _ in range(20):
        child = subprocess.Popen(
            [sys.executable, "-m", "runstore", "run", "--input", str(SAMPLE), "--output",
             str(tmp_path / "p.json"), "--db", db],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert child.stdout is not None
        line = child.stdout.readline()
        time.sleep(random.uniform(0, 0.012))  # into the closing of the store's connections
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
        assert "completed" in line
        assert err == "", err  # no "Exception closing connection", no traceback
        assert child.returncode == 0
        latest = _latest(db)
        assert latest is not None and latest[1:] == ("completed", 0)


@pytest.mark.slow
def test_a_signal_as_exec_ends_agrees_with_the_store_and_prints_nothing(tmp_path):
    db = str(tmp_path / "store.db")
    for _ in range(20):
        child = subprocess.Popen([sys.executable, "-m", "runstore", "exec", "--db", db, "--",
                                  "echo", "DONE"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)  # fmt: skip
        assert child.stdout is not None
        assert child.stdout.readline() == "DONE\n"
        time.sleep(random.uniform(0, 0.012))
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
        latest = _latest(db)
        assert latest is not None
        if child.returncode == 0:
            assert latest[1:] == ("completed", 0)
            assert err == "", err
        else:
            assert latest[1:] == ("cancelled", 143), (latest, child.returncode)
            assert child.returncode == 143
        assert "Traceback" not in err and "Exception" not in err, err


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_early_signal_agrees_with_the_store_on_both_backends(db, tmp_path, signum):
    """On PostgreSQL too, the run a signal catches while runstore starts is recorded cancelled
    with the exit code runstore gives, or not at all when the process died before its code
    ran; never a traceback."""

    def runs() -> list[tuple[str, int]]:
        try:
            rows = query(db, "SELECT status, exit_code FROM runs ORDER BY id")
        except Exception:  # no store yet
            return []
        return [(row["status"], row["exit_code"]) for row in rows]

    for delay in (0.05, 0.15, 0.3, 0.5):
        before = runs()
        child = subprocess.Popen([sys.executable, "-m", "runstore", "exec", "--db", db, "--",
                                  "sleep", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)  # fmt: skip
        time.sleep(delay)
        child.send_signal(signum)
        _, err = child.communicate(timeout=60)
        after = runs()
        if _python_start_up_interrupted(err) or child.returncode < 0:
            assert after == before, delay
            continue
        assert "Traceback" not in err, err
        assert child.returncode == 128 + signum, (delay, err)
        assert after[len(before) :] == [("cancelled", 128 + signum)], delay
