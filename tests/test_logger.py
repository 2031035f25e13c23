"""RunLogger, the library API: what a run leaves in the store, read back the way another
process would read it (a separate engine and connection, plain SQL)."""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import query
from helpers import as_utc, event_rows, event_types, run_row, wait_for
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from runstore.errors import DuplicateRunId, RunNotFound, RunstoreError, StoreError, UsageError
from runstore.record import logger as logger_module
from runstore.record.ids import check_run_id, new_run_id
from runstore.record.logger import RunLogger
from runstore.store.schema import RunStatus
from runstore.store.store import Store

# -- reading the store as another process would ---------------------------------------------------


# -- the two ways to use a RunLogger --------------------------------------------------------------


def test_context_manager_records_a_completed_run(db):
    before = datetime.now(timezone.utc)
    with RunLogger(job="etl", db=db) as run:
        run.log_event("rows_loaded", {"rows": 120, "source": "crm"})
    after = datetime.now(timezone.utc)

    row = run_row(db, run.run_id)
    assert row["job"] == "etl"
    assert row["status"] == "completed"
    assert row["exit_code"] == 0
    assert row["event_count"] == 3
    assert row["duration_ms"] >= 0
    started, finished = as_utc(row["started_at"]), as_utc(row["finished_at"])
    slack = timedelta(seconds=1)
    assert before - slack <= started <= finished <= after + slack

    events = event_rows(db, run.run_id)
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert [e["event_type"] for e in events] == ["run_started", "rows_loaded", "run_finished"]
    assert events[0]["data"]["run_id"] == run.run_id
    assert events[1]["data"] == {"rows": 120, "source": "crm"}
    assert events[2]["data"]["status"] == "completed"
    assert events[2]["data"]["duration_ms"] == row["duration_ms"]
    assert all(e["level"] == "info" for e in events)


def test_by_hand_finish_returns_summary_and_is_idempotent(db):
    run = RunLogger(job="by-hand", run_id="hand-1", db=db)
    assert run_row(db, "hand-1")["status"] == "running"  # written before any work
    run.log_event("step", {"n": 1})

    summary = run.finish()
    assert summary["run_id"] == "hand-1"
    assert summary["job"] == "by-hand"
    assert summary["status"] == "completed"
    assert summary["event_count"] == 3
    assert summary["error_count"] == 0
    assert summary["duration_ms"] >= 0
    assert {"start_time", "end_time", "items", "exit_code"} <= summary.keys()
    row_after_first = run_row(db, "hand-1")

    assert run.finish() == summary
    assert run.finish(RunStatus.FAILED) == summary  # a later status changes nothing
    assert run_row(db, "hand-1") == row_after_first
    assert event_types(db, "hand-1") == ["run_started", "step", "run_finished"]

    with pytest.raises(RunstoreError, match="already finished"):
        run.log_event("too_late")
    assert run_row(db, "hand-1")["event_count"] == 3


def test_warnings_errors_and_item_counters(db):
    run = RunLogger(job="counting", db=db)
    run.log_warning("disk almost full", free_mb=12)
    run.log_warning("slow source", seconds=40)
    run.log_error("row rejected", row=7)
    run.log_event("item_processed", {"index": 0})
    run.log_event("item_processed", {"index": 1})
    run.log_event("item_failed", {"index": 2}, level="warning", message="bad line")

    assert (run.event_count, run.warning_count, run.error_count) == (7, 3, 1)
    assert (run.items_total, run.items_ok, run.items_failed) == (3, 2, 1)
    summary = run.finish()
    assert summary["status"] == "failed"  # errors were logged
    assert summary["exit_code"] == 1
    assert summary["error_count"] == 1
    assert summary["warning_count"] == 3
    assert summary["items"] == {"total": 3, "ok": 2, "failed": 1}

    row = run_row(db, run.run_id)
    assert row["status"] == "failed"
    assert (row["event_count"], row["warning_count"], row["error_count"]) == (8, 3, 1)
    assert (row["items_total"], row["items_ok"], row["items_failed"]) == (3, 2, 1)

    events = event_rows(db, run.run_id)
    warning = events[1]
    assert (warning["event_type"], warning["level"]) == ("warning", "warning")
    assert warning["message"] == "disk almost full"
    assert warning["data"] == {"message": "disk almost full", "free_mb": 12}
    error = events[3]
    assert (error["event_type"], error["level"], error["message"]) == (
        "error",
        "error",
        "row rejected",
    )
    assert error["data"] == {"message": "row rejected", "row": 7}
    assert events[-1]["data"]["errors"] == 1


def test_seed_error_counting_two_errors(sqlite_db):
    with RunLogger(job="seed", db=sqlite_db) as run:
        run.log_error("first", code=1)
        run.log_error("second", code=2)
    row = run_row(sqlite_db, run.run_id)
    assert row["error_count"] == 2
    assert row["status"] == "failed"
    errors = [e for e in event_rows(sqlite_db, run.run_id) if e["event_type"] == "error"]
    assert [e["data"]["message"] for e in errors] == ["first", "second"]


def test_explicit_finish_status(sqlite_db):
    run = RunLogger(job="j", db=sqlite_db)
    with pytest.raises(ValueError):
        run.finish("running")
    summary = run.finish(RunStatus.CANCELLED, exit_code=143, error_summary="stopped")
    row = run_row(sqlite_db, run.run_id)
    assert (row["status"], row["exit_code"], row["error_summary"]) == ("cancelled", 143, "stopped")
    assert summary["status"] == "cancelled"


def test_unknown_level_is_refused_at_the_call(sqlite_db):
    run = RunLogger(job="j", db=sqlite_db)
    with pytest.raises(ValueError, match="level"):
        run.log_event("x", level="fatal")
    assert run.finish()["status"] == "completed"


def test_exception_inside_with_fails_the_run_records_it_and_reraises(db, tmp_path):
    log = tmp_path / "run_log.json"
    with (
        pytest.raises(KeyError, match="missing-column"),
        RunLogger(job="etl", db=db, log_path=log) as run,
    ):
        run.log_event("step", {"n": 1})
        raise KeyError("missing-column")

    row = run_row(db, run.run_id)
    assert row["status"] == "failed"
    assert row["exit_code"] == 1
    assert row["error_count"] == 1
    assert row["error_summary"].startswith("KeyError")
    events = event_rows(db, run.run_id)
    assert [e["event_type"] for e in events] == ["run_started", "step", "error", "run_finished"]
    error = events[2]
    assert error["level"] == "error"
    assert error["data"]["exception"] == "KeyError"
    assert "missing-column" in error["data"]["traceback"]
    assert events[-1]["data"]["status"] == "failed"
    assert json.loads(log.read_text())["status"] == "failed"  # the log is written too


def test_ctrl_c_inside_with_cancels_the_run_and_reraises(sqlite_db):
    with pytest.raises(KeyboardInterrupt), RunLogger(job="j", db=sqlite_db) as run:
        raise KeyboardInterrupt
    row = run_row(sqlite_db, run.run_id)
    assert (row["status"], row["exit_code"]) == ("cancelled", 130)


@pytest.mark.parametrize(("code", "status", "exit_code"), [(0, "completed", 0), (3, "failed", 3)])
def test_sys_exit_inside_with_records_the_exit_code(sqlite_db, code, status, exit_code):
    with pytest.raises(SystemExit), RunLogger(job="j", db=sqlite_db) as run:
        sys.exit(code)
    row = run_row(sqlite_db, run.run_id)
    assert (row["status"], row["exit_code"]) == (status, exit_code)


def test_finish_inside_with_is_kept(sqlite_db):
    with RunLogger(job="j", db=sqlite_db) as run:
        summary = run.finish(RunStatus.FAILED, error_summary="gave up")
    assert run.finish() == summary
    assert run_row(sqlite_db, run.run_id)["status"] == "failed"


# -- run ids ------------------------------------------------------------------------------------


def test_generated_run_ids_are_unique_valid_and_sort_by_time():
    # 30 random bits per second: a burst of 200 ids in one second collides about once in 50,000
    # tries, and the store retries a collision anyway (next test).
    now = datetime.now(timezone.utc)
    ids = [new_run_id(now) for _ in range(200)]
    assert len(set(ids)) == len(ids)
    assert all(check_run_id(i) == i for i in ids)

    start = datetime(2026, 1, 31, 23, 59, 58, tzinfo=timezone.utc)
    steps = (0, 0.001, 0.002, 0.5, 1, 2, 61, 3600, 86400 * 40)
    moments = [start + timedelta(seconds=s) for s in steps]
    for _ in range(20):  # the random suffix never overrides the time order
        made = [new_run_id(m) for m in moments]
        assert sorted(made) == made


def test_a_generated_id_that_collides_is_replaced(db, monkeypatch):
    with RunLogger(job="first", run_id="20260101-000000-aaaaaa", db=db):
        pass
    before = query(db, "SELECT * FROM runs")
    made = iter(["20260101-000000-aaaaaa", "20260101-000000-bbbbbb"])
    monkeypatch.setattr(logger_module, "new_run_id", lambda: next(made))
    with RunLogger(job="second", db=db) as run:
        pass
    assert run.run_id == "20260101-000000-bbbbbb"
    assert run_row(db, run.run_id)["job"] == "second"
    assert query(db, "SELECT * FROM runs WHERE run_id = '20260101-000000-aaaaaa'") == before


def test_runs_get_distinct_generated_ids(sqlite_db):
    run_ids = []
    for _ in range(20):
        run = RunLogger(job="j", db=sqlite_db, flush_interval=60)
        run.finish()
        run_ids.append(run.run_id)
    assert len(set(run_ids)) == 20
    assert query(sqlite_db, "SELECT COUNT(*) AS n FROM runs")[0]["n"] == 20


def test_duplicate_run_id_is_refused_and_first_run_untouched(db, tmp_path):
    first = RunLogger(job="nightly", run_id="dup-1", db=db)
    first.log_warning("first run's warning")
    first.log_event("step", {"n": 1})
    first.finish()
    runs_before = query(db, "SELECT * FROM runs ORDER BY id")
    events_before = event_rows(db, "dup-1")

    log = tmp_path / "second.json"
    with pytest.raises(DuplicateRunId, match="dup-1") as refused:
        RunLogger(job="other", run_id="dup-1", db=db, log_path=log)
    assert isinstance(refused.value, UsageError)
    assert refused.value.exit_code == 2

    assert query(db, "SELECT * FROM runs ORDER BY id") == runs_before
    assert event_rows(db, "dup-1") == events_before
    assert not log.exists()


def test_duplicate_of_a_running_run_is_refused(db):
    first = RunLogger(job="j", run_id="live", db=db)
    with pytest.raises(DuplicateRunId):
        RunLogger(job="j", run_id="live", db=db)
    first.log_event("still_mine")
    first.finish()
    assert event_types(db, "live") == ["run_started", "still_mine", "run_finished"]
    assert run_row(db, "live")["status"] == "completed"


@pytest.mark.parametrize("bad", ["", "-starts-with-dash", "has space", "a/b", "x" * 65, "ends\n"])
def test_invalid_run_id_is_refused_before_anything_is_written(sqlite_db, bad):
    Store.open(sqlite_db)
    with pytest.raises(UsageError, match="invalid run id"):
        RunLogger(job="j", run_id=bad, db=sqlite_db)
    assert query(sqlite_db, "SELECT COUNT(*) AS n FROM runs")[0]["n"] == 0


# -- time ---------------------------------------------------------------------------------------


def test_duration_comes_from_a_monotonic_clock(sqlite_db, monkeypatch):
    run = RunLogger(job="j", db=sqlite_db)
    # The wall clock steps back an hour mid-run (NTP, a VM resumed): duration must not care.
    stepped = datetime.now(timezone.utc) - timedelta(hours=1)
    monkeypatch.setattr(logger_module, "_now", lambda: stepped)
    time.sleep(0.05)
    summary = run.finish()
    assert 50 <= summary["duration_ms"] < 60_000
    assert run_row(sqlite_db, run.run_id)["duration_ms"] == summary["duration_ms"]


def test_duration_is_bounded_by_the_elapsed_time(sqlite_db):
    began = time.monotonic()
    with RunLogger(job="j", db=sqlite_db) as run:
        time.sleep(0.02)
    elapsed_ms = (time.monotonic() - began) * 1000
    duration = run_row(sqlite_db, run.run_id)["duration_ms"]
    assert 20 <= duration <= elapsed_ms + 1


def test_timestamps_are_utc(db):
    with RunLogger(job="j", db=db) as run:
        pass
    assert run.started_at.utcoffset() == timedelta(0)
    assert run.finish()["start_time"].endswith("+00:00")
    assert run.finish()["end_time"].endswith("+00:00")


# -- batching and durability --------------------------------------------------------------------


def test_info_events_are_flushed_by_count(db):
    run = RunLogger(job="j", db=db, events_per_flush=5, flush_interval=3600)
    for i in range(4):
        run.log_event("tick", {"i": i})
    assert event_types(db, run.run_id) == ["run_started"]  # written at start, before any work
    run.log_event("tick", {"i": 4})
    assert event_types(db, run.run_id) == ["run_started"] + ["tick"] * 5
    assert run_row(db, run.run_id)["event_count"] == 6
    run.finish()


def test_info_events_are_flushed_by_time_without_more_logging(db):
    run = RunLogger(job="j", db=db, events_per_flush=10_000, flush_interval=0.3)
    run.log_event("tick", {"i": 0})
    began = time.monotonic()
    assert wait_for(lambda: event_types(db, run.run_id) == ["run_started", "tick"])
    assert time.monotonic() - began < 3
    assert run_row(db, run.run_id)["event_count"] == 2
    run.finish()


def test_warnings_and_errors_reach_the_store_at_once(db):
    run = RunLogger(job="j", db=db, events_per_flush=10_000, flush_interval=3600)
    run.log_event("step")
    assert event_types(db, run.run_id) == ["run_started"]

    run.log_warning("careful")  # flushes itself and what was pending before it
    assert event_types(db, run.run_id) == ["run_started", "step", "warning"]
    assert run_row(db, run.run_id)["warning_count"] == 1

    run.log_error("broken")
    assert event_types(db, run.run_id)[-1] == "error"
    assert run_row(db, run.run_id)["error_count"] == 1
    assert run_row(db, run.run_id)["status"] == "running"
    run.finish()
    assert run_row(db, run.run_id)["status"] == "failed"


def test_finish_flushes_everything_pending(db):
    run = RunLogger(job="j", db=db, events_per_flush=10_000, flush_interval=3600)
    for i in range(50):
        run.log_event("tick", {"i": i})
    run.finish()
    events = event_rows(db, run.run_id)
    assert len(events) == 52
    assert [e["seq"] for e in events] == list(range(1, 53))
    assert [e["data"]["i"] for e in events[1:-1]] == list(range(50))


# -- attaching to a run started elsewhere ----------------------------------------------------------


def test_attach_appends_with_continuing_seq_numbers(db):
    owner = RunLogger(job="wrapper", run_id="parent", db=db, flush_interval=3600)
    owner.log_event("child_started")
    owner.flush()

    child = RunLogger.attach("parent", db=db, flush_interval=3600)
    assert child.run_id == "parent"
    child.log_event("rows_loaded", {"rows": 3})
    child.log_warning("odd row", row=2)
    child_summary = child.finish()
    assert child_summary["attached"] is True
    assert run_row(db, "parent")["status"] == "running"  # only the owner finishes the run

    owner.log_event("child_exited")
    owner.finish()

    events = event_rows(db, "parent")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["event_type"] for e in events] == [
        "run_started",
        "child_started",
        "rows_loaded",
        "warning",
        "child_exited",
        "run_finished",
    ]
    row = run_row(db, "parent")
    assert row["event_count"] == len(events)
    assert row["warning_count"] == 1
    assert row["status"] == "completed"


def test_attach_interleaved_with_the_owner_leaves_no_gaps(db):
    owner = RunLogger(job="w", run_id="mix", db=db, events_per_flush=3, flush_interval=3600)
    child = RunLogger.attach("mix", db=db, events_per_flush=2, flush_interval=3600)
    for i in range(10):
        owner.log_event("owner", {"i": i})
        child.log_event("child", {"i": i})
    child.finish()
    owner.finish()
    events = event_rows(db, "mix")
    assert [e["seq"] for e in events] == list(range(1, 23))
    assert [e["data"]["i"] for e in events if e["event_type"] == "owner"] == list(range(10))
    assert [e["data"]["i"] for e in events if e["event_type"] == "child"] == list(range(10))


def test_attach_finds_the_run_from_the_environment(sqlite_db, monkeypatch):
    owner = RunLogger(job="w", run_id="from-env", db=sqlite_db)
    monkeypatch.setenv("RUNSTORE_RUN_ID", "from-env")
    child = RunLogger.attach(db=sqlite_db)
    child.log_event("hello")
    child.finish()
    owner.finish()
    assert "hello" in event_types(sqlite_db, "from-env")


def test_attach_refuses_finished_or_unknown_runs(sqlite_db):
    with RunLogger(job="w", run_id="done", db=sqlite_db):
        pass
    with pytest.raises(RunstoreError, match="completed, not running"):
        RunLogger.attach("done", db=sqlite_db)
    with pytest.raises(RunNotFound):
        RunLogger.attach("no-such-run", db=sqlite_db)
    with pytest.raises(RunstoreError, match="RUNSTORE_RUN_ID"):
        RunLogger.attach(db=sqlite_db)


# -- the verbose echo ---------------------------------------------------------------------------


def test_echo_shows_each_event_as_it_is_logged(sqlite_db):
    lines: list[str] = []
    run = RunLogger(job="j", db=sqlite_db, echo=lines.append)
    assert len(lines) == 1 and "run_started" in lines[0]
    run.log_event("step", {"n": 1})
    assert len(lines) == 2 and "step" in lines[1] and '"n": 1' in lines[1]
    run.log_warning("careful")
    assert len(lines) == 3 and "warning" in lines[2]
    run.finish()
    assert len(lines) == 4 and "run_finished" in lines[3]
    assert all("\n" not in line for line in lines)


def test_verbose_prints_events_to_stdout(sqlite_db, capsys):
    with RunLogger(job="j", db=sqlite_db, verbose=True) as run:
        run.log_event("step")
        assert capsys.readouterr().out.splitlines()[-1].split()[2] == "step"
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "run_finished" in out[0]


def test_quiet_by_default(sqlite_db, capsys):
    with RunLogger(job="j", db=sqlite_db) as run:
        run.log_event("step")
        run.log_warning("w")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# -- run_log.json from a hand-made run ------------------------------------------------------------


def test_run_log_written_at_finish_matches_rows(db, tmp_path):
    log = tmp_path / "logs" / "run_log.json"
    log.parent.mkdir()
    with RunLogger(job="j", run_id="rl-1", db=db, log_path=log) as run:
        run.log_event("unicode", {"text": "Zürich → 東京", "nested": {"a": [1, 2.5, None]}})
        run.log_warning("careful", attempt=2)
        assert not log.exists()  # written at finish, not before
    doc = json.loads(log.read_text(encoding="utf-8"))
    assert doc["run_id"] == "rl-1"
    assert doc["status"] == "completed"
    assert doc["event_count"] == len(doc["events"]) == 4
    assert doc["events"][1]["data"] == {"text": "Zürich → 東京", "nested": {"a": [1, 2.5, None]}}
    rows = event_rows(db, "rl-1")
    assert [(e["seq"], e["event_type"], e["data"] or {}) for e in doc["events"]] == [
        (r["seq"], r["event_type"], r["data"] or {}) for r in rows
    ]
    assert list(tmp_path.joinpath("logs").iterdir()) == [log]  # no temporary file left


# -- values the store's columns cannot take as they are --------------------------------------------


def test_non_finite_numbers_do_not_break_recording(db, tmp_path):
    log = tmp_path / "run_log.json"
    with RunLogger(job="j", db=db, log_path=log) as run:
        run.log_event("metrics", {"ratio": float("nan"), "limit": float("inf")})
        run.log_warning("odd value", value=float("-inf"))
    assert run_row(db, run.run_id)["status"] == "completed"

    def strict(constant: str) -> None:
        raise AssertionError(f"run_log.json holds {constant}, which is not JSON")

    doc = json.loads(log.read_text(), parse_constant=strict)
    assert doc["event_count"] == 4
    assert doc["events"][1]["event_type"] == "metrics"
    assert set(doc["events"][1]["data"]) == {"ratio", "limit"}


def test_nul_character_in_a_message_does_not_break_recording(db):
    with RunLogger(job="j", db=db) as run:
        run.log_warning("bad byte \x00 in input", where="line 3")
    assert run_row(db, run.run_id)["status"] == "completed"
    warning = event_rows(db, run.run_id)[1]
    assert warning["message"].startswith("bad byte ")
    assert warning["data"]["where"] == "line 3"


def test_overlong_event_type_is_refused_at_the_call(db):
    run = RunLogger(job="j", db=db)
    with pytest.raises(ValueError, match="event type"):
        run.log_event("x" * 65)
    run.log_event("fine")
    assert run.finish()["status"] == "completed"
    assert event_types(db, run.run_id) == ["run_started", "fine", "run_finished"]


def test_unwritable_store_fails_fast_instead_of_retrying_forever(tmp_path):
    path = tmp_path / "ro.db"
    Store.open(path)
    read_only = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=NullPool)
    store = Store(f"sqlite:///{path}", read_only)
    outcome: list[BaseException | RunLogger] = []

    def start() -> None:
        try:
            outcome.append(RunLogger(job="j", store=store))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=start, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "RunLogger kept retrying a store it cannot write"
    assert len(outcome) == 1 and isinstance(outcome[0], StoreError)
    assert "readonly" in str(outcome[0]).replace(" ", "").replace("-", "")
    read_only.dispose()


def test_store_file_given_as_path_object(tmp_path):
    (tmp_path / "dir").mkdir()
    path: Path = tmp_path / "dir" / "store.db"
    with RunLogger(job="j", db=path) as run:
        pass
    assert path.is_file()
    assert run_row(str(path), run.run_id)["status"] == "completed"


def test_job_name_too_long_for_the_store_is_a_usage_error(db):
    Store.open(db)
    with pytest.raises(UsageError, match="job name"):
        RunLogger(job="j" * 201, db=db)
    assert query(db, "SELECT COUNT(*) AS n FROM runs")[0]["n"] == 0


def test_secrets_in_the_command_line_never_reach_the_store(db):
    argv = [
        "etl.py",
        "--db",
        "postgresql://ops:s3cret-pg@db.example/runs",
        "--cache",
        "redis://:s3cret-redis@cache:6379/0",
        "--password",
        "s3cret-opt",
        "--api-key=s3cret-key",
        "DB_PASSWORD=s3cret-env",
        "--rows",
        "120",
    ]
    with RunLogger(job="j", db=db, argv=argv) as run:
        pass
    command = run_row(db, run.run_id)["command"]
    assert "s3cret" not in command
    assert "--rows 120" in command and "db.example/runs" in command


def test_threads_logging_into_one_run_lose_nothing(db):
    run = RunLogger(job="threads", db=db, events_per_flush=7, flush_interval=0.05)

    def work(worker: int) -> None:
        for i in range(100):
            run.log_event("tick", {"worker": worker, "i": i})
            if i % 25 == 0:
                run.log_warning("checkpoint", worker=worker, i=i)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.finish()

    events = event_rows(db, run.run_id)
    assert [e["seq"] for e in events] == list(range(1, 4 * 104 + 3))
    for worker in range(4):
        ticks = [e["data"]["i"] for e in events if e["data"] and e["data"].get("worker") == worker]
        assert ticks == sorted(ticks) and len(ticks) == 104
    row = run_row(db, run.run_id)
    assert (row["event_count"], row["warning_count"]) == (4 * 104 + 2, 16)


def test_finish_retried_after_a_failed_write_ends_the_run_once(sqlite_db, monkeypatch):
    run = RunLogger(job="retry", run_id="retry", db=sqlite_db)
    real_finish_run = run.store.finish_run
    calls = []

    def fail_once(run_pk, values):
        calls.append(values)
        if len(calls) == 1:
            raise StoreError("cannot write to the store: database or disk is full")
        real_finish_run(run_pk, values)

    monkeypatch.setattr(run.store, "finish_run", fail_once)
    with pytest.raises(StoreError):
        run.finish()
    summary = run.finish()
    assert summary["status"] == "completed"
    assert calls[0] == calls[1]  # the same ending, decided once
    finished = query(
        sqlite_db, "SELECT COUNT(*) AS n FROM events WHERE event_type = 'run_finished'"
    )
    assert finished == [{"n": 1}]
    assert run_row(sqlite_db, "retry")["status"] == "completed"
