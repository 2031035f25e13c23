"""The query library: history filters, a run's timeline, per-job stats and health checks.

Every test runs on SQLite and, when a server is given, on PostgreSQL: the answers must agree.
The helpers at the top build stores that the CLI tests reuse.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from conftest import BACKENDS
from helpers import (
    NEWEST_FIRST,
    NOW,
    expected_stats,
    fresh_store,
    ids,
    insert_runs,
    known_runs,
    place_run,
    snapshot,
)
from sqlalchemy import func, select

from runstore.errors import UsageError
from runstore.history.queries import (
    STREAK_SCAN,
    HistoryFilter,
    check_job,
    history,
    iter_history,
    parse_statuses,
    run_events,
    stats,
)
from runstore.record.logger import RunLogger
from runstore.store.schema import NOT_COMPLETED_STATUSES, runs
from runstore.store.store import Store

# -- helpers shared with the CLI tests ------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def known(request, tmp_path_factory) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A store holding ``known_runs()``, built once per module and backend; tests only read it."""
    for db in fresh_store(request, tmp_path_factory):
        rows = known_runs()
        insert_runs(db, rows)
        yield db, rows


# -- history --------------------------------------------------------------------------------------


def test_history_lists_newest_first_with_raw_values(handful):
    rows = history(Store.open(handful.db), HistoryFilter())
    assert ids(rows) == NEWEST_FIRST
    by_id = {r["run_id"]: r for r in rows}
    ok = by_id["etl-ok"]
    assert ok["status"] == "completed"
    assert ok["duration_ms"] == 1500
    assert ok["started_at"] == NOW - timedelta(hours=3)
    assert ok["started_at"].utcoffset() == timedelta(0)
    assert (ok["items_total"], ok["items_ok"], ok["warning_count"]) == (2, 2, 1)
    assert ok["exit_code"] == 0
    assert by_id["etl-fail"]["error_summary"] == "boom"
    assert by_id["etl-fail"]["error_count"] == 1
    assert by_id["etl-fail"]["items_failed"] == 1 and by_id["etl-fail"]["items_total"] == 2
    assert by_id["bk-cancel"]["exit_code"] == 143
    assert by_id["lines-sample"]["items_total"] == 9
    assert by_id["bk-live"]["status"] == "running"
    assert by_id["bk-live"]["duration_ms"] is None


def test_history_status_filters(handful):
    store = Store.open(handful.db)
    failed = history(store, HistoryFilter(statuses=NOT_COMPLETED_STATUSES))
    assert set(ids(failed)) == handful.not_completed()
    assert {"etl-fail", "bk-cancel", "bk-abandon"} <= set(ids(failed))
    assert "bk-live" not in ids(failed)
    assert ids(history(store, HistoryFilter(statuses=["running"]))) == ["bk-live"]
    both = history(store, HistoryFilter(statuses=parse_statuses(" Failed, cancelled ,")))
    assert ids(both) == ["bk-cancel", "etl-fail"]


def test_history_unknown_status_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown status done; choose from running, completed"):
        HistoryFilter(statuses=["done"])


def test_history_job_filter_takes_several_jobs(handful):
    store = Store.open(handful.db)
    assert ids(history(store, HistoryFilter(jobs=["etl"]))) == ["etl-fail", "etl-ok"]
    both = history(store, HistoryFilter(jobs=["etl", "backup"]))
    assert ids(both) == ["bk-live", "bk-cancel", "etl-fail", "etl-ok", "bk-abandon"]
    assert history(store, HistoryFilter(jobs=["nope"])) == []


def test_history_time_window(handful):
    store = Store.open(handful.db)
    since = history(store, HistoryFilter(since=NOW - timedelta(hours=1)))
    assert ids(since) == ["bk-live", "lines-sample", "lines-empty", "bk-cancel"]
    until = history(store, HistoryFilter(until=NOW - timedelta(hours=2)))
    assert ids(until) == ["etl-ok", "bk-abandon"]  # until is exclusive: etl-fail started at it
    window = HistoryFilter(since=NOW - timedelta(hours=2), until=NOW - timedelta(minutes=20))
    assert ids(history(store, window)) == ["bk-cancel", "etl-fail"]


def test_history_duration_bounds(handful):
    store = Store.open(handful.db)
    assert ids(history(store, HistoryFilter(min_duration_ms=1500))) == ["etl-fail", "etl-ok"]
    assert ids(history(store, HistoryFilter(max_duration_ms=300))) == ["lines-empty", "bk-cancel"]
    both = HistoryFilter(min_duration_ms=300, max_duration_ms=1500)
    assert ids(history(store, both)) == ["lines-sample", "lines-empty", "etl-ok"]


def test_history_pages_with_limit_and_offset(handful):
    store = Store.open(handful.db)
    assert ids(history(store, HistoryFilter(limit=2))) == NEWEST_FIRST[:2]
    assert ids(history(store, HistoryFilter(limit=2, offset=2))) == NEWEST_FIRST[2:4]
    assert ids(history(store, HistoryFilter(limit=10, offset=6))) == NEWEST_FIRST[6:]
    assert history(store, HistoryFilter(offset=7)) == []
    assert ids(history(store, HistoryFilter(limit=None))) == NEWEST_FIRST


def test_history_default_limit_is_twenty_and_ties_break_by_insertion(scratch):
    same = NOW - timedelta(hours=1)
    insert_runs(
        scratch,
        [
            {"run_id": f"tie{i:02d}", "job": "ties", "status": "completed", "started_at": same}
            for i in range(25)
        ],
    )
    rows = history(Store.open(scratch), HistoryFilter(jobs=["ties"]))
    assert ids(rows) == [f"tie{i:02d}" for i in range(24, 4, -1)]
    oldest = HistoryFilter(jobs=["ties"], limit=3, oldest_first=True)
    assert ids(history(Store.open(scratch), oldest)) == ["tie00", "tie01", "tie02"]


def test_iter_history_streams_whole_rows_oldest_first(handful):
    flt = HistoryFilter(jobs=["etl"], limit=None, oldest_first=True)
    rows = list(iter_history(Store.open(handful.db), flt))
    assert ids(rows) == ["etl-ok", "etl-fail"]
    assert {"id", "command", "cwd", "event_count", "heartbeat_at"} <= set(rows[0])


# -- a run's events -------------------------------------------------------------------------------


def _pk(db: str, run_id: str) -> int:
    return int(Store.open(db).find_run(run_id)["id"])


def test_run_events_in_order_with_level_type_and_tail(handful):
    store = Store.open(handful.db)
    pk = _pk(handful.db, "etl-ok")
    every = run_events(store, pk)
    assert [e["event_type"] for e in every] == [
        "run_started", "item_processed", "trace", "item_processed", "warning", "run_finished",
    ]  # fmt: skip
    assert [e["seq"] for e in every] == [1, 2, 3, 4, 5, 6]
    assert every[2]["level"] == "debug"
    data = every[1]["data"]
    assert (json.loads(data) if isinstance(data, str) else data) == {"line": "a"}

    assert [e["seq"] for e in run_events(store, pk, min_level="info")] == [1, 2, 4, 5, 6]
    assert [e["event_type"] for e in run_events(store, pk, min_level="warning")] == ["warning"]
    assert run_events(store, pk, min_level="error") == []
    items = run_events(store, pk, types=["item_processed", "warning"])
    assert [e["seq"] for e in items] == [2, 4, 5]
    assert [e["seq"] for e in run_events(store, pk, tail=2)] == [5, 6]
    assert [e["seq"] for e in run_events(store, pk, tail=2, types=["item_processed"])] == [2, 4]
    assert [e["seq"] for e in run_events(store, pk, tail=100)] == [1, 2, 3, 4, 5, 6]


def test_run_events_unknown_level_is_a_usage_error(handful):
    with pytest.raises(UsageError, match="unknown level 'loud'; choose from debug, info"):
        run_events(Store.open(handful.db), _pk(handful.db, "etl-ok"), min_level="loud")


# -- stats ----------------------------------------------------------------------------------------


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if k == "failure_rate" and v is not None else v) for k, v in row.items()}


def test_stats_match_a_python_computation_on_known_durations(known):
    db, rows = known
    got = {s["job"]: _comparable(s) for s in stats(Store.open(db))}
    want = expected_stats(rows)
    assert list(got) == sorted(want)
    for job, expected in want.items():
        assert got[job] == expected, job


def test_stats_spot_values(known):
    db, _ = known
    got = {s["job"]: s for s in stats(Store.open(db))}
    dup = got["dup"]  # sorted: 5 5 5 5 5 5 7 7 7 7 9 9 9 9 9 9 9 9 12 12
    assert (dup["p50_ms"], dup["p95_ms"], dup["max_ms"]) == (7, 12, 12)
    flaky = got["flaky"]
    assert (flaky["runs"], flaky["completed"], flaky["failed"], flaky["running"]) == (7, 2, 4, 1)
    assert flaky["failure_rate"] == pytest.approx(4 / 6, abs=1e-4)
    assert flaky["failure_streak"] == 3  # failed, cancelled, abandoned; the running one skipped
    assert flaky["last_status"] == "running"
    assert flaky["last_success_at"] == NOW - timedelta(hours=5)
    assert flaky["max_ms"] == 4000
    single = got["single"]
    assert (single["p50_ms"], single["p95_ms"], single["failure_rate"]) == (1234, 1234, 0.0)
    idle = got["only-running"]
    assert idle["failure_rate"] is None and idle["p50_ms"] is None and idle["max_ms"] is None
    assert idle["last_success_at"] is None and idle["failure_streak"] == 0


def test_stats_since_and_job_narrow_the_window(known):
    db, rows = known
    since = NOW - timedelta(hours=100)
    recent = [r for r in rows if r["started_at"] >= since]
    got = {s["job"]: _comparable(s) for s in stats(Store.open(db), since=since)}
    assert got == expected_stats(recent)
    assert "single" not in got  # nothing in the window
    only = stats(Store.open(db), jobs=["dup", "flaky"])
    assert [s["job"] for s in only] == ["dup", "flaky"]
    assert _comparable(only[1]) == expected_stats(rows)["flaky"]
    assert stats(Store.open(db), jobs=["nope"]) == []


def test_stats_on_the_handful_of_real_runs(handful):
    got = {s["job"]: s for s in stats(Store.open(handful.db))}
    assert set(got) == {"etl", "backup", "process-lines"}
    etl = got["etl"]
    assert (etl["runs"], etl["completed"], etl["failed"], etl["failure_rate"]) == (2, 1, 1, 0.5)
    assert (etl["p50_ms"], etl["p95_ms"], etl["max_ms"]) == (1500, 4000, 4000)
    assert (etl["last_status"], etl["failure_streak"]) == ("failed", 1)
    assert etl["last_success_at"] == NOW - timedelta(hours=3)
    backup = got["backup"]
    assert (backup["runs"], backup["completed"], backup["failed"], backup["running"]) == (
        3, 0, 2, 1,
    )  # fmt: skip
    assert backup["failure_rate"] == 1.0 and backup["failure_streak"] == 2
    assert backup["last_success_at"] is None and backup["last_status"] == "running"


def test_failure_streak_is_capped(scratch, monkeypatch):
    import runstore.history.queries as queries

    monkeypatch.setattr(queries, "STREAK_SCAN", 5)
    insert_runs(
        scratch,
        [
            {"run_id": f"capped{i}", "job": "capped", "status": "failed",
             "started_at": NOW - timedelta(minutes=i)}
            for i in range(8)
        ],
    )  # fmt: skip
    assert stats(Store.open(scratch), jobs=["capped"])[0]["failure_streak"] == 5
    assert STREAK_SCAN >= 1000


# -- check ----------------------------------------------------------------------------------------


def test_check_healthy_when_the_last_run_completed_in_time(handful):
    result = check_job(Store.open(handful.db), "process-lines", max_age_s=3600, now=NOW)
    assert result.ok, result.reason
    assert "lines-sample" in result.reason
    assert check_job(Store.open(handful.db), "process-lines", now=NOW).ok  # no age limit at all


def test_check_never_ran(handful):
    result = check_job(Store.open(handful.db), "ghost", max_age_s=3600, now=NOW)
    assert not result.ok
    assert result.reason == "job 'ghost' has never run"


def test_check_last_run_failed(handful):
    result = check_job(Store.open(handful.db), "etl", max_age_s=86400, now=NOW)
    assert not result.ok
    assert result.reason == "last run etl-fail of etl failed (exit 1): boom"


def test_check_does_not_say_the_exit_code_twice(scratch):
    with RunLogger(job="cron", run_id="cron-1", db=scratch) as run:
        run.finish("failed", exit_code=3, error_summary="exit code 3: disk full")
    result = check_job(Store.open(scratch), "cron", now=NOW)
    assert result.reason == "last run cron-1 of cron failed: exit code 3: disk full"


def test_check_too_old(scratch):
    with RunLogger(job="aging", run_id="aging-1", db=scratch):
        pass
    place_run(scratch, "aging-1", ago=timedelta(hours=2), duration_ms=60_000)
    result = check_job(Store.open(scratch), "aging", max_age_s=3600, now=NOW)
    assert not result.ok
    assert result.reason == "last successful run of aging finished 1h59m ago, longer than 1h00m"
    assert check_job(Store.open(scratch), "aging", max_age_s=3 * 3600, now=NOW).ok


def test_check_running_past_max_duration(handful):
    # backup: bk-live has run 10 minutes; the run before it was cancelled
    result = check_job(Store.open(handful.db), "backup", max_duration_s=300, now=NOW)
    assert not result.ok
    assert result.reason.startswith("run bk-live of backup has been running for 10m00s,")
    assert result.reason.endswith("longer than 5m00s")
    within = check_job(Store.open(handful.db), "backup", max_duration_s=3600, now=NOW)
    assert not within.ok  # not stuck, but the last finished run was cancelled
    assert within.reason.startswith("last run bk-cancel of backup cancelled (exit 143)")


def test_check_while_a_run_is_running_looks_at_the_last_finished_one(scratch):
    with RunLogger(job="overlap", run_id="overlap-done", db=scratch):
        pass
    place_run(scratch, "overlap-done", ago=timedelta(hours=2), duration_ms=60_000)
    RunLogger(job="overlap", run_id="overlap-live", db=scratch, flush_interval=3600)
    place_run(scratch, "overlap-live", ago=timedelta(minutes=1), duration_ms=None)
    store = Store.open(scratch)
    assert check_job(store, "overlap", max_age_s=3 * 3600, max_duration_s=600, now=NOW).ok
    stale = check_job(store, "overlap", max_age_s=3600, max_duration_s=600, now=NOW)
    assert stale.reason == "last successful run of overlap finished 1h59m ago, longer than 1h00m"


def test_check_first_run_still_running_is_healthy_until_too_long(scratch):
    RunLogger(job="new", run_id="new-first", db=scratch, flush_interval=3600)
    place_run(scratch, "new-first", ago=timedelta(minutes=2), duration_ms=None)
    store = Store.open(scratch)
    ok = check_job(store, "new", max_age_s=60, max_duration_s=600, now=NOW)
    assert ok.ok and ok.reason == "new: first run new-first is running"
    assert not check_job(store, "new", max_duration_s=60, now=NOW).ok


def test_check_finds_a_stuck_run_behind_a_newer_one(scratch):
    """A run stuck for a day stays a problem when the next day's run starts and completes."""
    RunLogger(job="stuck", run_id="stuck-1", db=scratch, flush_interval=3600)
    place_run(scratch, "stuck-1", ago=timedelta(days=1), duration_ms=None)
    with RunLogger(job="stuck", run_id="stuck-2", db=scratch):
        pass
    place_run(scratch, "stuck-2", ago=timedelta(minutes=5), duration_ms=1000)
    store = Store.open(scratch)
    result = check_job(store, "stuck", max_age_s=3600, max_duration_s=3600, now=NOW)
    assert not result.ok
    assert result.reason == "run stuck-1 of stuck has been running for 1d00h, longer than 1h00m"
    # without a duration limit only the last finished run counts, and it is fine
    assert check_job(store, "stuck", max_age_s=3600, now=NOW).ok


def test_check_uses_the_given_clock(handful):
    later = NOW + timedelta(days=2)
    result = check_job(Store.open(handful.db), "process-lines", max_age_s=86400, now=later)
    assert not result.ok and "finished 2d" in result.reason


def test_count_of_runs_unchanged_by_queries(handful):
    store = Store.open(handful.db)
    before = snapshot(handful.db)
    history(store, HistoryFilter(limit=None))
    stats(store)
    check_job(store, "etl", max_age_s=1)
    assert snapshot(handful.db) == before
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar_one() == 7


def test_the_field_lists_match_what_the_queries_return():
    from dataclasses import fields

    from runstore.history import HISTORY_FIELDS, STATS_FIELDS
    from runstore.history.queries import HISTORY_COLUMNS, JobStats

    assert [c.name for c in HISTORY_COLUMNS] == list(HISTORY_FIELDS)
    assert [f.name for f in fields(JobStats) if f.name != "extra"] == list(STATS_FIELDS)
