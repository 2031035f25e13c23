"""The built-in line-processing job (the original exercise) as a recorded run: the seed's own
checks, processed.json, run_log.json against the rows, and what a failure leaves behind."""

from __future__ import annotations

import json
import tracemalloc
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLE_INPUT, query
from helpers import as_utc, event_rows, run_row

from runstore.job import pipeline
from runstore.job.pipeline import run_job

SEED_RUN_KEYS = {
    "run_id",
    "status",
    "start_time",
    "end_time",
    "duration_ms",
    "event_count",
    "error_count",
    "events",
}
SEED_EVENT_KEYS = {"run_id", "timestamp", "event_type", "data"}


def job(db: str, tmp_path: Path, source: Path, run_id: str | None = None, **kw: Any):
    """Run the job the way `runstore run` does; outputs go to tmp_path/out."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return run_job(
        input_path=source,
        output_path=kw.pop("output_path", out / "processed.json"),
        log_path=kw.pop("log_path", out / "run_log.json"),
        run_id=run_id,
        job=kw.pop("job", "process-lines"),
        db=db,
        **kw,
    )


def write_input(tmp_path: Path, lines: list[str], name: str = "input.txt") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def sample_items() -> list[str]:
    lines = SAMPLE_INPUT.read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]


# -- the seed's checks --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 5])
def test_seed_run_of_n_items(db, tmp_path, n):
    items = [f"task {i}" for i in range(n)]
    summary, problem = job(db, tmp_path, write_input(tmp_path, items), run_id=f"seed-{n}")
    assert not problem
    assert summary["status"] == "completed"
    assert summary["exit_code"] == 0
    assert summary["items"] == {"total": n, "ok": n, "failed": 0}
    assert summary["duration_ms"] >= 0

    events = event_rows(db, f"seed-{n}")
    types = [e["event_type"] for e in events]
    expected = ["run_started", "processing_started"] + ["item_processed"] * n
    expected += ["processing_completed"] + (["warning"] if n == 0 else []) + ["run_finished"]
    assert types == expected
    assert events[0]["data"]["run_id"] == f"seed-{n}"
    assert events[1]["data"]["item_count"] == n
    for index, event in enumerate(events[2 : 2 + n]):
        assert event["data"]["index"] == index
        assert event["data"]["item"] == items[index]
        assert event["data"]["length"] == len(items[index])
        assert event["data"]["duration_ms"] >= 0  # each item has its own duration
    assert events[2 + n]["data"]["results_count"] == n
    finished = events[-1]["data"]
    assert finished == {"status": "completed", "duration_ms": summary["duration_ms"], "errors": 0}

    row = run_row(db, f"seed-{n}")
    assert row["status"] == "completed"
    assert row["event_count"] == len(events) == summary["event_count"]
    assert (row["items_total"], row["items_ok"], row["items_failed"]) == (n, n, 0)
    assert row["duration_ms"] == summary["duration_ms"] >= 0

    records = json.loads((tmp_path / "out" / "processed.json").read_text(encoding="utf-8"))
    assert [(r["index"], r["item"], r["processed"]) for r in records] == [
        (i, item, True) for i, item in enumerate(items)
    ]


def test_empty_input_completes_with_no_items_and_a_warning(db, tmp_path):
    source = tmp_path / "empty.txt"
    source.write_bytes(b"")
    summary, problem = job(db, tmp_path, source, run_id="empty")
    assert not problem
    assert summary["status"] == "completed"
    assert summary["items"]["total"] == 0
    assert summary["warning_count"] == 1
    warning = [e for e in event_rows(db, "empty") if e["level"] == "warning"]
    assert len(warning) == 1
    assert "no items" in warning[0]["message"]
    assert json.loads((tmp_path / "out" / "processed.json").read_text()) == []
    assert json.loads((tmp_path / "out" / "run_log.json").read_text())["status"] == "completed"


def test_missing_input_fails_the_run_and_still_writes_its_log(db, tmp_path):
    missing = tmp_path / "no-such-input.txt"
    summary, problem = job(db, tmp_path, missing, run_id="missing")
    assert problem and str(missing) in str(problem)
    assert summary["status"] == "failed"
    assert summary["exit_code"] == 1
    assert str(missing) in summary["error_summary"]

    row = run_row(db, "missing")
    assert row["status"] == "failed"
    assert row["error_count"] == 1
    assert str(missing) in row["error_summary"]
    types = [e["event_type"] for e in event_rows(db, "missing")]
    assert types == ["run_started", "error", "run_finished"]

    log = json.loads((tmp_path / "out" / "run_log.json").read_text())
    assert log["status"] == "failed"
    assert log["error_count"] == 1
    assert str(missing) in log["events"][1]["data"]["message"]
    assert not (tmp_path / "out" / "processed.json").exists()


def test_input_that_is_a_directory_fails_the_run(sqlite_db, tmp_path):
    summary, problem = job(sqlite_db, tmp_path, tmp_path, run_id="dir-input")
    assert summary["status"] == "failed"
    assert "directory" in str(problem)
    assert not (tmp_path / "out" / "processed.json").exists()


# -- the sample input and the two files -----------------------------------------------------------


def test_sample_input_holds_the_nine_tasks_it_describes(sqlite_db, tmp_path):
    summary, _ = job(sqlite_db, tmp_path, SAMPLE_INPUT, run_id="sample")
    assert summary["items"] == {"total": 9, "ok": 9, "failed": 0}
    records = json.loads((tmp_path / "out" / "processed.json").read_text(encoding="utf-8"))
    assert [r["item"] for r in records] == sample_items()
    for index, record in enumerate(records):
        assert {"index", "item", "processed"} <= record.keys()
        assert record["index"] == index
        assert record["processed"] is True


def test_run_log_round_trips_with_the_rows(db, tmp_path):
    summary, _ = job(db, tmp_path, SAMPLE_INPUT, run_id="round-trip")
    log = json.loads((tmp_path / "out" / "run_log.json").read_text(encoding="utf-8"))

    assert log.keys() >= SEED_RUN_KEYS
    assert log["run_id"] == "round-trip"
    assert log["status"] == "completed"
    assert log["duration_ms"] == summary["duration_ms"]
    assert log["event_count"] == len(log["events"]) == 9 + 4
    assert log["error_count"] == 0
    start, end = datetime.fromisoformat(log["start_time"]), datetime.fromisoformat(log["end_time"])
    assert start.utcoffset() is not None and start.utcoffset().total_seconds() == 0
    assert start <= end

    row = run_row(db, "round-trip")
    assert as_utc(row["started_at"]) == start
    assert as_utc(row["finished_at"]) == end
    assert (row["status"], row["duration_ms"], row["event_count"]) == (
        log["status"],
        log["duration_ms"],
        log["event_count"],
    )

    rows = event_rows(db, "round-trip")
    assert len(rows) == len(log["events"])
    for event, stored in zip(log["events"], rows, strict=True):
        assert event.keys() >= SEED_EVENT_KEYS
        assert event["run_id"] == "round-trip"
        assert event["seq"] == stored["seq"]
        assert event["event_type"] == stored["event_type"]
        assert event["level"] == stored["level"]
        assert event["data"] == (stored["data"] or {})
        assert datetime.fromisoformat(event["timestamp"]) == stored["ts"]
    assert log["events"][-1]["event_type"] == "run_finished"
    assert log["events"][-1]["data"]["status"] == "completed"


def test_output_files_permissions(sqlite_db, tmp_path):
    job(sqlite_db, tmp_path, SAMPLE_INPUT)
    assert (tmp_path / "out" / "run_log.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "out" / "processed.json").stat().st_mode & 0o077 != 0o077  # umask applies


# -- failures leave no partial output -------------------------------------------------------------


def test_failure_mid_run_leaves_no_partial_output(db, tmp_path, monkeypatch):
    source = write_input(tmp_path, [f"task {i}" for i in range(10)])
    real = pipeline.process_item

    def breaks_on_the_fourth(text: str) -> Any:
        if text == "task 3":
            raise RuntimeError("worker crashed")
        return real(text)

    monkeypatch.setattr(pipeline, "process_item", breaks_on_the_fourth)
    with pytest.raises(RuntimeError, match="worker crashed"):
        job(db, tmp_path, source, run_id="crash")

    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["run_log.json"]  # no output, no temp files
    row = run_row(db, "crash")
    assert row["status"] == "failed"
    assert row["error_summary"] == "RuntimeError: worker crashed"
    assert row["items_ok"] == 3
    events = event_rows(db, "crash")
    assert [e["event_type"] for e in events][-2:] == ["error", "run_finished"]
    log = json.loads((out / "run_log.json").read_text())
    assert log["status"] == "failed"
    assert len(log["events"]) == row["event_count"]


def test_failed_run_keeps_the_previous_output_whole(sqlite_db, tmp_path, monkeypatch):
    source = write_input(tmp_path, ["one", "two"])
    job(sqlite_db, tmp_path, source, run_id="good")
    output = tmp_path / "out" / "processed.json"
    before = output.read_bytes()

    monkeypatch.setattr(pipeline, "process_item", lambda text: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        job(sqlite_db, tmp_path, source, run_id="bad")
    assert output.read_bytes() == before
    assert sorted(p.name for p in output.parent.iterdir()) == ["processed.json", "run_log.json"]


def test_output_in_a_missing_directory_fails_before_any_work(sqlite_db, tmp_path):
    source = write_input(tmp_path, ["one"])
    target = tmp_path / "no" / "such" / "dir" / "processed.json"
    summary, problem = job(sqlite_db, tmp_path, source, run_id="no-dir", output_path=target)
    assert summary["status"] == "failed"
    assert "does not exist" in str(problem)
    assert not target.parent.exists()
    types = [e["event_type"] for e in event_rows(sqlite_db, "no-dir")]
    assert "item_processed" not in types and types[-2:] == ["error", "run_finished"]


def test_unwritable_log_location_still_records_the_run(sqlite_db, tmp_path):
    source = write_input(tmp_path, ["one"])
    log = tmp_path / "missing-dir" / "run_log.json"
    summary, problem = job(sqlite_db, tmp_path, source, run_id="no-log", log_path=log)
    assert summary["status"] == "failed"
    assert "missing-dir" in str(problem)
    assert not log.exists()
    assert run_row(sqlite_db, "no-log")["status"] == "failed"


def test_no_log_asked_no_log_written(sqlite_db, tmp_path):
    summary, _ = job(sqlite_db, tmp_path, SAMPLE_INPUT, log_path=None)
    assert summary["status"] == "completed"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["processed.json"]


def test_progress_callback_sees_the_item_count_and_the_end(sqlite_db, tmp_path):
    source = write_input(tmp_path, [f"t{i}" for i in range(2500)])
    seen: list[int] = []
    started: list[int] = []

    def on_start(total: int):
        started.append(total)
        return seen.append

    job(sqlite_db, tmp_path, source, on_start=on_start)
    assert started == [2500]
    assert seen == [1000, 2000, 2500]


# -- streaming ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_memory_does_not_grow_with_the_input(sqlite_db, tmp_path):
    def peak_for(lines: int) -> int:
        source = tmp_path / f"in-{lines}.txt"
        source.write_text("".join(f"item number {i}\n" for i in range(lines)))
        tracemalloc.start()
        try:
            summary, _ = job(sqlite_db, tmp_path, source)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert summary["items"]["total"] == lines
        return peak

    peak_for(1000)  # warm caches (SQLAlchemy statement cache, imports)
    small, large = peak_for(5_000), peak_for(50_000)
    assert large < small * 1.5 + 512 * 1024, (small, large)
    runs = query(sqlite_db, "SELECT items_total FROM runs ORDER BY id")
    assert [r["items_total"] for r in runs] == [1000, 5_000, 50_000]


# -- input that can be read only once -------------------------------------------------------------


def _runstore_shell(script: str, db: str, tmp_path: Path):
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = {**os.environ, "RUNSTORE_DB": db, "PYTHONPATH": str(REPO),
           "RUNSTORE": f"{sys.executable} -m runstore"}  # fmt: skip
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)  # fmt: skip


@pytest.mark.parametrize(
    "script",
    [
        "printf 'a\\nb\\n# c\\nd\\n' | $RUNSTORE run --input /dev/stdin --output o.json --json",
        "printf 'a\\nb\\n# c\\nd\\n' | $RUNSTORE run --input - --output o.json --json",
        "$RUNSTORE run --input <(printf 'a\\nb\\n# c\\nd\\n') --output o.json --json",
        "mkfifo f && (printf 'a\\nb\\n# c\\nd\\n' > f &) && $RUNSTORE run --input f --output o.json"
        " --json",
    ],
    ids=["/dev/stdin", "-", "process substitution", "fifo"],
)
def test_a_pipe_or_fifo_is_read_once_and_every_item_counts(sqlite_db, tmp_path, script):
    done = _runstore_shell(script, sqlite_db, tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "completed"
    assert summary["items"] == {"total": 3, "ok": 3, "failed": 0}
    assert [r["item"] for r in json.loads((tmp_path / "o.json").read_text())] == ["a", "b", "d"]
    started = query(sqlite_db, "select data from events where event_type = 'processing_started'")
    data = json.loads(started[0]["data"])
    assert data["item_count"] is None and data["streamed"] is True
    completed = query(
        sqlite_db, "select data from events where event_type = 'processing_completed'"
    )
    assert json.loads(completed[0]["data"])["results_count"] == 3


def test_a_regular_file_is_still_counted_first(sqlite_db, tmp_path):
    job(sqlite_db, tmp_path, SAMPLE_INPUT)
    started = query(sqlite_db, "select data from events where event_type = 'processing_started'")
    assert json.loads(started[0]["data"])["item_count"] == 9
    assert "streamed" not in json.loads(started[0]["data"])
