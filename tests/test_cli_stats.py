"""``runstore stats`` and ``runstore check`` as a user types them: the library's answers in every
format, and the exit codes monitors rely on."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

import pytest
from helpers import (
    expected_stats,
    insert_runs,
    jsonl,
    known_runs,
    ok,
    one_error_line,
    text_table,
    usage_error,
)

from runstore.history.queries import stats
from runstore.humanize import DURATION_FORMS
from runstore.store.store import Store

# -- stats ----------------------------------------------------------------------------------------


def _stats_comparable(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("last_started_at", "last_success_at"):
        if out[key] is not None:
            out[key] = datetime.fromisoformat(out[key])
    return out


def test_stats_json_is_the_library_answer(qcli, handful):
    got = qcli.json("stats")
    want = stats(Store.open(handful.db))
    assert [_stats_comparable(r) for r in got] == [
        {**row, "trend": None, "trend_change": None} for row in want
    ]  # and each job's trend: these few runs show none
    etl = got[[r["job"] for r in got].index("etl")]
    assert (etl["p50_ms"], etl["p95_ms"], etl["max_ms"], etl["failure_rate"]) == (
        1500, 4000, 4000, 0.5,
    )  # fmt: skip


def test_stats_text_jsonl_and_csv(lcli):
    header, lines = text_table(ok(lcli("stats")))
    assert header.split()[:8] == ["JOB", "RUNS", "OK", "FAILED", "FAIL%", "P50", "P95", "MAX"]
    rows = {line.split()[0]: line.split() for line in lines}
    assert set(rows) == {"backup", "etl", "process-lines"}
    assert rows["etl"][1:8] == ["2", "1", "1", "50.0", "1.5s", "4.0s", "4.0s"]
    assert rows["backup"][4] == "100.0"
    as_json = lcli.json("stats")
    assert jsonl(ok(lcli("stats", "--jsonl"))) == as_json
    from_csv = list(csv.DictReader(io.StringIO(ok(lcli("stats", "--csv")))))
    assert [r["job"] for r in from_csv] == [r["job"] for r in as_json]
    assert from_csv[1]["failure_rate"] == "0.5" and from_csv[1]["p95_ms"] == "4000"


def test_stats_job_and_since(qcli):
    assert [r["job"] for r in qcli.json("stats", "--job", "etl")] == ["etl"]
    assert [r["job"] for r in qcli.json("stats", "-j", "etl", "-j", "backup")] == ["backup", "etl"]
    recent = qcli.json("stats", "--since", "1h")
    assert [r["job"] for r in recent] == ["backup", "process-lines"]  # etl ran 2-3 hours ago
    backup = recent[0]
    assert (backup["runs"], backup["failed"], backup["running"]) == (2, 1, 1)  # not bk-abandon
    assert qcli.json("stats", "--job", "nope") == []
    usage_error(qcli("stats", "--since", "a while"), "--since", "7d")


def test_stats_percentiles_through_the_command(sqlite_cli):
    rows = known_runs(seed=11)
    insert_runs(sqlite_cli.db, rows)
    got = {r["job"]: r for r in sqlite_cli.json("stats")}
    for job, want in expected_stats(rows).items():
        for key in ("runs", "completed", "failed", "p50_ms", "p95_ms", "max_ms", "failure_streak"):
            assert got[job][key] == want[key], (job, key)


# -- check ----------------------------------------------------------------------------------------


def test_check_healthy_exits_zero(qcli):
    out = ok(qcli("check", "process-lines", "--max-age", "1h"))
    assert out.startswith("ok: process-lines: last run lines-sample completed ")
    assert out.count("\n") == 1
    assert ok(qcli("check", "process-lines", "--max-age", "1h", "--quiet")) == ""
    assert ok(qcli("check", "process-lines", "--max-age", "1h", "--max-duration", "1h")) != ""


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["ghost", "--max-age", "26h"], "job 'ghost' has never run"),
        (["etl", "--max-age", "26h"], "last run etl-fail of etl failed (exit 1): boom"),
        (["process-lines", "--max-age", "5m"], "last successful run of process-lines finished "),
        (["backup", "--max-duration", "5m"], "run bk-live of backup has been running for 10m"),
        (["backup", "--max-age", "26h"], "last run bk-cancel of backup cancelled (exit 143)"),
    ],
)
def test_check_unhealthy_exits_one_with_a_reason(qcli, args, reason):
    result = qcli("check", *args)
    assert one_error_line(result, 1).startswith(reason)
    assert result.stdout == ""


def test_check_malformed_limits_are_usage_errors(sqlite_cli):
    usage_error(sqlite_cli("check", "etl", "--max-age", "a day"), "--max-age", DURATION_FORMS)
    usage_error(sqlite_cli("check", "etl", "--max-duration", "long"), "--max-duration", "2m")
    usage_error(sqlite_cli("check"))
