"""``runstore history``, ``show`` and ``export`` as a user types them: every format, the filters,
usage errors, and what a real pipe does."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from conftest import REPO, SAMPLE_INPUT, Cli
from helpers import (
    NEWEST_FIRST,
    NOW,
    insert_runs,
    jsonl,
    ok,
    one_error_line,
    run_ids,
    set_run,
    snapshot,
    text_table,
    usage_error,
)

from runstore.humanize import DURATION_FORMS, WHEN_FORMS
from runstore.record.logger import RunLogger
from runstore.store.schema import NOT_COMPLETED_STATUSES

MACHINE_KEYS = [
    "run_id", "job", "status", "started_at", "finished_at", "duration_ms", "items_total",
    "items_ok", "items_failed", "warning_count", "error_count", "exit_code", "error_summary",
    "host",
]  # fmt: skip


# -- history --------------------------------------------------------------------------------------


def test_history_text_is_aligned_with_humane_values(lcli):
    header, lines = text_table(ok(lcli("history")))
    assert header.split() == ["RUN", "JOB", "STATUS", "STARTED", "DURATION", "ITEMS", "WARN/ERR",
                              "EXIT", "ERROR"]  # fmt: skip
    assert [line.split()[0] for line in lines] == NEWEST_FIRST
    starts = {name: header.index(name) for name in ("RUN", "JOB", "STATUS", "STARTED")}
    ends = {name: header.index(name) + len(name) for name in ("DURATION", "ITEMS", "WARN/ERR")}
    rows = {}
    for line in lines:
        run_id = line.split()[0]
        rows[run_id] = line
        for name, at in starts.items():  # left-aligned columns start under their header
            assert line[at] != " " and (at == 0 or line[at - 1] == " "), (name, line)
        for name, at in ends.items():  # numbers and durations end under their header
            if not line[at - len(name) : at].strip():
                continue  # no value (a run without a duration)
            assert line[at - 1] != " " and (at == len(line) or line[at] == " "), (name, line)
    assert " 1.5s " in rows["etl-ok"] and " 2 " in rows["etl-ok"] and " 1/0 " in rows["etl-ok"]
    assert " 4.0s " in rows["etl-fail"] and " 1/1 " in rows["etl-fail"]
    assert " 1/2 " in rows["etl-fail"]  # items: ok/total when some failed
    assert " 200ms " in rows["bk-cancel"] and " 143 " in rows["bk-cancel"]
    # Started 10 minutes before the store was built; the module's tests take a while.
    assert re.search(r" running 1\dm", rows["bk-live"]), rows["bk-live"]
    local_start = (NOW - timedelta(hours=3)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert local_start in rows["etl-ok"]  # local time, not UTC


def test_history_json_carries_raw_values(qcli, handful):
    rows = qcli.json("history")
    assert run_ids(rows) == NEWEST_FIRST
    assert all(list(r) == MACHINE_KEYS for r in rows)
    by_id = {r["run_id"]: r for r in rows}
    etl_ok = by_id["etl-ok"]
    assert etl_ok["duration_ms"] == 1500
    assert etl_ok["status"] == "completed" and etl_ok["exit_code"] == 0
    started = datetime.fromisoformat(etl_ok["started_at"])
    assert started == NOW - timedelta(hours=3) and started.utcoffset() == timedelta(0)
    assert etl_ok["started_at"].endswith("+00:00")
    assert by_id["bk-live"]["duration_ms"] is None and by_id["bk-live"]["finished_at"] is None
    assert by_id["etl-fail"]["error_summary"] == "boom"
    assert by_id["lines-sample"]["items_total"] == 9


def test_history_jsonl_and_csv_say_what_json_says(lcli):
    as_json = lcli.json("history")
    assert jsonl(ok(lcli("history", "--jsonl"))) == as_json
    reader = csv.DictReader(io.StringIO(ok(lcli("history", "--csv"))))
    assert reader.fieldnames == MACHINE_KEYS
    as_csv = list(reader)
    assert len(as_csv) == len(as_json)
    for from_csv, from_json in zip(as_csv, as_json):
        assert from_csv == {k: "" if v is None else str(v) for k, v in from_json.items()}


def test_history_failed_lists_exactly_the_runs_that_did_not_complete(qcli, handful):
    result = qcli("history", "--failed", "--json")
    rows = json.loads(ok(result))
    assert set(run_ids(rows)) == handful.not_completed()
    assert {"etl-fail", "bk-cancel", "bk-abandon"} <= set(run_ids(rows))
    assert all(r["status"] in NOT_COMPLETED_STATUSES for r in rows)
    every = {r["run_id"] for r in qcli.json("history", "--limit", "100")}
    assert every - set(run_ids(rows)) == {
        rid for rid, st in handful.statuses.items() if st in ("completed", "running")
    }
    _, lines = text_table(ok(qcli("history", "--failed")))
    assert [line.split()[0] for line in lines] == run_ids(rows)
    assert run_ids(jsonl(ok(qcli("history", "--failed", "--jsonl")))) == run_ids(rows)


def test_history_status_and_job_filters(qcli):
    got = qcli.json("history", "--status", "failed,cancelled")
    assert run_ids(got) == ["bk-cancel", "etl-fail"]
    assert run_ids(qcli.json("history", "--status", "running")) == ["bk-live"]
    assert run_ids(qcli.json("history", "--failed", "--status", "completed,cancelled")) == [
        "bk-cancel"
    ]
    assert qcli.json("history", "--failed", "--status", "completed") == []
    assert run_ids(qcli.json("history", "--job", "etl")) == ["etl-fail", "etl-ok"]
    both = qcli.json("history", "--job", "etl", "-j", "process-lines")
    assert run_ids(both) == ["lines-sample", "lines-empty", "etl-fail", "etl-ok"]


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("30m", ["bk-live", "lines-sample", "lines-empty"]),
        ("12h", NEWEST_FIRST[:-1]),
        ("7d", NEWEST_FIRST),
        ("2w", NEWEST_FIRST),
        ("yesterday", NEWEST_FIRST[:-1]),
    ],
)
def test_history_since_accepts_relative_ages_and_days(lcli, since, expected):
    # NOW is when the runs were placed; a test running a minute later only shifts the edges
    # by a minute, and no run starts within a minute of an edge here.
    assert run_ids(lcli.json("history", "--since", since)) == expected


def test_history_since_today_is_local_midnight(lcli):
    midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0).astimezone()
    every = lcli.json("history")
    expected = [r["run_id"] for r in every if datetime.fromisoformat(r["started_at"]) >= midnight]
    assert run_ids(lcli.json("history", "--since", "today")) == expected


def test_history_since_and_until_take_iso_times(qcli):
    since = (NOW - timedelta(hours=2, minutes=30)).isoformat()
    until = (NOW - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    got = qcli.json("history", "--since", since, "--until", until)
    assert run_ids(got) == ["bk-cancel", "etl-fail"]
    day_after = (NOW + timedelta(days=2)).date().isoformat()
    assert run_ids(qcli.json("history", "--until", day_after)) == NEWEST_FIRST
    assert qcli.json("history", "--since", day_after) == []


def test_history_duration_limit_and_paging_options(lcli):
    assert run_ids(lcli.json("history", "--min-duration", "1s")) == ["etl-fail", "etl-ok"]
    assert run_ids(lcli.json("history", "--max-duration", "300ms")) == ["lines-empty", "bk-cancel"]
    assert run_ids(lcli.json("history", "--min-duration", "0.5s", "--max-duration", "2s")) == [
        "lines-sample", "etl-ok",
    ]  # fmt: skip
    assert run_ids(lcli.json("history", "--limit", "2")) == NEWEST_FIRST[:2]
    assert run_ids(lcli.json("history", "-n", "3", "--offset", "2")) == NEWEST_FIRST[2:5]
    assert lcli.json("history", "--offset", "50") == []


def test_history_with_nothing_to_show(lcli):
    assert lcli.json("history", "--job", "nope") == []
    assert ok(lcli("history", "--job", "nope", "--jsonl")) == ""
    assert ok(lcli("history", "--job", "nope", "--csv")).splitlines() == [",".join(MACHINE_KEYS)]
    header, lines = text_table(ok(lcli("history", "--job", "nope")))
    assert header.startswith("RUN") and lines == []


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--since", "last tuesday"], ["--since", WHEN_FORMS]),
        (["--until", "soon"], ["--until", "today", "yesterday"]),
        (["--since", "7"], ["--since", "7d"]),
        (["--min-duration", "fast"], ["--min-duration", DURATION_FORMS]),
        (["--max-duration", "-1s"], ["--max-duration", DURATION_FORMS]),
        (["--status", "done"], ["unknown status done", "completed", "failed"]),
        (["--limit", "-1"], ["--limit"]),
        (["--json", "--csv"], ["--json", "--csv"]),
    ],
)
def test_history_malformed_values_are_usage_errors(sqlite_cli, args, fragments):
    usage_error(sqlite_cli("history", *args), *fragments)


# -- show -----------------------------------------------------------------------------------------


def test_show_text_gives_fields_then_the_timeline(lcli):
    out = ok(lcli("show", "etl-ok"))
    fields, _, timeline = out.partition("\n\n")
    values = dict(line.split(None, 1) for line in fields.splitlines())
    assert values["run_id"] == "etl-ok" and values["job"] == "etl"
    assert values["status"] == "completed" and values["duration_ms"] == "1.5s"
    assert values["error_count"] == "0" and values["warning_count"] == "1"
    assert "id" not in values and "error_summary" not in values  # hidden, and empty
    header, events = text_table(timeline)
    assert header.split() == ["SEQ", "TIME", "LEVEL", "TYPE", "MESSAGE", "DATA"]
    kinds = [line.split()[4] for line in events]
    assert kinds == ["run_started", "item_processed", "trace", "item_processed", "warning",
                     "run_finished"]  # fmt: skip
    assert "slow source" in events[4] and '"seconds": 12' in events[4]


def test_show_json_is_the_run_with_its_events(qcli):
    doc = qcli.json("show", "etl-fail")
    assert doc["run_id"] == "etl-fail" and doc["status"] == "failed" and "id" not in doc
    assert doc["error_summary"] == "boom" and doc["duration_ms"] == 4000
    assert datetime.fromisoformat(doc["started_at"]) == NOW - timedelta(hours=2)
    types = [e["event_type"] for e in doc["events"]]
    assert types == ["run_started", "item_processed", "item_failed", "error", "run_finished"]
    error = doc["events"][3]
    assert error["level"] == "error" and error["message"] == "boom"
    assert error["data"] == {"message": "boom", "where": "load"}
    assert [e["seq"] for e in doc["events"]] == [1, 2, 3, 4, 5]


def test_show_jsonl_and_csv_list_the_events(lcli):
    events = lcli.json("show", "etl-ok")["events"]
    assert jsonl(ok(lcli("show", "etl-ok", "--jsonl"))) == events
    rows = list(csv.DictReader(io.StringIO(ok(lcli("show", "etl-ok", "--csv")))))
    assert [r["event_type"] for r in rows] == [e["event_type"] for e in events]
    assert json.loads(rows[4]["data"]) == {"message": "slow source", "seconds": 12}


def test_show_finds_a_run_by_a_unique_prefix(qcli):
    assert qcli.json("show", "lines-s")["run_id"] == "lines-sample"
    assert qcli.json("show", "bk-l")["run_id"] == "bk-live"


def test_show_ambiguous_prefix_lists_the_candidates(qcli):
    message = one_error_line(qcli("show", "etl"))
    assert "'etl' matches 2 runs" in message
    assert "etl-ok" in message and "etl-fail" in message


def test_show_unknown_run_is_one_error_line(qcli):
    result = qcli("show", "no-such-run")
    assert one_error_line(result) == "no run matches 'no-such-run'"
    assert result.stdout == ""


def test_show_filters_events_by_level_type_and_tail(lcli):
    def types(*args: str) -> list[str]:
        return [e["event_type"] for e in lcli.json("show", "etl-ok", *args)["events"]]

    assert types("--level", "warning") == ["warning"]
    assert types("--level", "debug") == types() and "trace" in types()
    assert "trace" not in types("--level", "info")
    assert types("--type", "item_processed") == ["item_processed", "item_processed"]
    assert types("-t", "warning", "-t", "run_started") == ["run_started", "warning"]
    assert types("--tail", "2") == ["warning", "run_finished"]
    assert types("--tail", "1", "--type", "item_processed") == ["item_processed"]
    _, lines = text_table(ok(lcli("show", "etl-ok", "--tail", "1")).partition("\n\n")[2])
    assert len(lines) == 1 and "run_finished" in lines[0]


def test_show_last_is_the_newest_run(qcli):
    assert qcli.json("show", "--last")["run_id"] == NEWEST_FIRST[0]
    out = ok(qcli("show", "--last"))
    assert re.search(r"running \(for 1\dm", out)  # a live run says how long it has been going


@pytest.mark.parametrize(
    "args", [[], ["etl-ok", "--last"], ["etl-ok", "--level", "loud"], ["etl-ok", "--tail", "0"]]
)
def test_show_usage_errors(sqlite_cli, args):
    with RunLogger(job="etl", run_id="etl-ok", db=sqlite_cli.db):
        pass
    usage_error(sqlite_cli("show", *args))


def test_show_last_on_an_empty_store(sqlite_cli):
    assert sqlite_cli("db", "upgrade", "--quiet").exit_code == 0
    assert one_error_line(sqlite_cli("show", "--last")) == "the store has no runs yet"


# -- export ---------------------------------------------------------------------------------------


def test_export_equals_the_run_log_written_at_finish(scratch, tmp_path):
    cli = Cli(scratch)
    log = tmp_path / "run_log.json"
    result = cli("run", "--input", str(SAMPLE_INPUT), "--output", str(tmp_path / "p.json"),
                 "--log", str(log), "--run-id", "rt-sample")  # fmt: skip
    assert result.exit_code == 0, result.output
    exported = ok(cli("export", "rt-sample"))
    assert json.loads(exported) == json.loads(log.read_text())
    assert len(json.loads(exported)["events"]) == json.loads(exported)["event_count"]


def test_export_round_trip_of_a_failed_run_with_odd_data(scratch, tmp_path):
    cli = Cli(scratch)
    log = tmp_path / "failed.json"
    with (
        pytest.raises(RuntimeError),
        RunLogger(job="odd", run_id="odd-1", db=scratch, log_path=log) as run,
    ):
        run.log_event("item_processed", {"text": "naïve — ünïcödé ✓", "n": [1, 2.5, None]})
        run.log_warning('quote " and \\ backslash', path="C:\\tmp")
        run.log_event("custom", {"nested": {"deep": {"x": True}}}, level="debug")
        raise RuntimeError("it broke")
    written = json.loads(log.read_text(encoding="utf-8"))
    assert written["status"] == "failed"
    assert json.loads(ok(cli("export", "odd-1"))) == written
    assert json.loads(ok(cli("export", "odd-"))) == written  # a prefix is enough here too


def test_export_to_a_file_is_atomic_and_private(sqlite_cli, tmp_path):
    result = sqlite_cli("run", "--input", str(SAMPLE_INPUT), "--output", str(tmp_path / "p.json"),
                 "--run-id", "rt-3")  # fmt: skip
    assert result.exit_code == 0, result.output
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    target = out_dir / "run_log.json"
    target.write_text("old content")
    target.chmod(0o644)
    assert ok(sqlite_cli("export", "rt-3", "-o", str(target))) == ""
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text())["run_id"] == "rt-3"
    assert json.loads(target.read_text()) == json.loads(ok(sqlite_cli("export", "rt-3")))
    assert sorted(p.name for p in out_dir.iterdir()) == ["run_log.json"]  # no temporary left
    # an unknown run writes nothing at all
    missing = out_dir / "missing.json"
    one_error_line(sqlite_cli("export", "nope", "--output", str(missing)))
    assert sorted(p.name for p in out_dir.iterdir()) == ["run_log.json"]


def test_export_many_runs_as_json_lines(qcli, handful):
    lines = jsonl(ok(qcli("export", "--since", "7d", "--jsonl")))
    assert [d["run_id"] for d in lines] == list(reversed(NEWEST_FIRST))  # oldest first
    for doc in lines:
        assert len(doc["events"]) == doc["event_count"], doc["run_id"]
        assert [e["seq"] for e in doc["events"]] == list(range(1, doc["event_count"] + 1))
        assert json.loads(ok(qcli("export", doc["run_id"]))) == doc
    recent = jsonl(ok(qcli("export", "--since", "1h", "--job", "backup", "--jsonl")))
    assert [d["run_id"] for d in recent] == ["bk-cancel", "bk-live"]
    assert [d["run_id"] for d in jsonl(ok(qcli("export", "-j", "etl", "--jsonl")))] == [
        "etl-ok", "etl-fail",
    ]  # fmt: skip


def test_export_one_run_as_one_json_line(lcli):
    out = ok(lcli("export", "etl-ok", "--jsonl"))
    assert out.count("\n") == 1
    assert json.loads(out) == json.loads(ok(lcli("export", "etl-ok")))


def test_export_many_to_a_file(lcli, tmp_path):
    target = tmp_path / "week.jsonl"
    assert ok(lcli("export", "--since", "7d", "--jsonl", "-o", str(target))) == ""
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert len(target.read_text().splitlines()) == len(NEWEST_FIRST)


def test_export_usage_errors(sqlite_cli):
    assert "give a run id" in one_error_line(sqlite_cli("export"), 2)
    assert "--jsonl to export many" in one_error_line(sqlite_cli("export", "--since", "7d"), 2)
    assert "a run id exports that run" in one_error_line(
        sqlite_cli("export", "r1", "--since", "7d"), 2
    )
    usage_error(sqlite_cli("export", "--since", "a week", "--jsonl"), "--since", "7d")


def test_queries_change_nothing(qcli, handful):
    before = snapshot(handful.db)
    for args in (["history", "--failed"], ["show", "etl-ok"], ["stats"], ["check", "etl"],
                 ["export", "--since", "7d", "--jsonl"]):  # fmt: skip
        qcli(*args)
    assert snapshot(handful.db) == before


# -- a real pipe ----------------------------------------------------------------------------------


def test_output_into_head_ends_quietly(sqlite_db, tmp_path):
    """`runstore history | head -1`: the reader leaves early; no traceback, no error, exit 0."""
    started = datetime.now(timezone.utc)
    insert_runs(
        sqlite_db,
        [
            {"run_id": f"many-{i:05d}", "job": f"job-{i % 7}", "status": "completed",
             "started_at": started - timedelta(seconds=i), "duration_ms": i}
            for i in range(4000)
        ],
    )  # fmt: skip
    with RunLogger(job="chatty", run_id="chatty", db=sqlite_db) as run:
        for i in range(3000):
            run.log_event("item_processed", {"line": f"line {i}", "padding": "x" * 40})
    runstore = f"{sys.executable} -m runstore"
    script = "; ".join(
        f'{runstore} {command} | head -1 > /dev/null; echo "${{PIPESTATUS[0]}}"'
        for command in (
            "history --limit 4000",
            "history --limit 4000 --jsonl",
            "show chatty",
            "export chatty",
        )
    )
    env = {**os.environ, "RUNSTORE_DB": sqlite_db, "PYTHONPATH": str(REPO)}
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)  # fmt: skip
    assert done.stderr == ""
    assert done.stdout.split() == ["0", "0", "0", "0"]


# -- getting everything out ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def thirty(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A store of 30 finished runs: more than a table shows by default."""
    db = str(tmp_path_factory.mktemp("thirty") / "store.db")
    started = datetime.now(timezone.utc)
    insert_runs(
        db,
        [{"run_id": f"r{i:02d}", "job": "nightly" if i % 2 else "hourly", "status": "completed",
          "started_at": started - timedelta(minutes=i), "duration_ms": 10 * i}
         for i in range(30)],
    )  # fmt: skip
    return Cli(db)


def test_machine_formats_return_every_match_unless_limited(thirty):
    assert len(thirty.json("history")) == 30
    assert len(jsonl(ok(thirty("history", "--jsonl")))) == 30
    assert len(ok(thirty("history", "--csv")).splitlines()) == 31  # and the header
    assert run_ids(thirty.json("history", "--limit", "5")) == ["r00", "r01", "r02", "r03", "r04"]
    assert len(thirty.json("history", "--job", "nightly")) == 15


def test_a_table_shows_20_and_all_shows_every_run(thirty):
    assert len(text_table(ok(thirty("history")))[1]) == 20
    _, every = text_table(ok(thirty("history", "--all")))
    assert [line.split()[0] for line in every] == [f"r{i:02d}" for i in range(30)]
    assert "choose one of --all and --limit" in one_error_line(
        thirty("history", "--all", "--limit", "3"), 2
    )


def test_export_jsonl_without_a_filter_exports_every_run_oldest_first(thirty):
    lines = jsonl(ok(thirty("export", "--jsonl")))
    assert [doc["run_id"] for doc in lines] == [f"r{i:02d}" for i in reversed(range(30))]


# -- show streams; logs -------------------------------------------------------------------------


def test_show_json_streams_one_object_with_the_filtered_events(lcli):
    doc = lcli.json("show", "etl-fail", "--level", "error")
    assert doc["run_id"] == "etl-fail" and doc["error_summary"] == "boom"
    assert [e["event_type"] for e in doc["events"]] == ["error"]
    assert doc["events"][0]["data"] == {"message": "boom", "where": "load"}  # an object
    none = lcli.json("show", "etl-fail", "--type", "nothing-like-this")
    assert none["events"] == [] and none["run_id"] == "etl-fail"


def test_show_table_says_an_output_line_and_its_stream(sqlite_cli, tmp_path):
    script = (
        "import sys, time; print('to out', flush=True); time.sleep(0.1); "
        "print('to err', file=sys.stderr)"
    )
    result = sqlite_cli("exec", "--run-id", "x1", "--", sys.executable, "-c", script)
    assert result.exit_code == 0, result.stderr
    _, timeline = ok(sqlite_cli("show", "x1")).split("\n\n")
    lines = [line for line in timeline.splitlines() if " output " in line]
    shown = [line.split()[-3:] for line in lines]
    assert shown == [["to", "out", "stdout"], ["to", "err", "stderr"]]


def test_logs_prints_the_stored_output_as_plain_text(sqlite_cli):
    script = (
        "import sys, time\n"
        "for i in range(3):\n"  # lines are stored in the order they were read: apart in time
        "    print(f'out {i}', flush=True)\n"
        "    time.sleep(0.05)\n"
        "    print(f'err {i}', file=sys.stderr, flush=True)\n"
        "    time.sleep(0.05)\n"
        "print('tab\\there \\x1b[31mred\\x1b[0m')\n"
    )
    result = sqlite_cli("exec", "--run-id", "lg", "--", sys.executable, "-c", script)
    assert result.exit_code == 0, result.stderr
    assert ok(sqlite_cli("logs", "lg")).splitlines() == [
        "out 0", "err 0", "out 1", "err 1", "out 2", "err 2", "tab\there \x1b[31mred\x1b[0m",
    ]  # fmt: skip
    assert ok(sqlite_cli("logs", "lg", "--stream", "stderr")) == "err 0\nerr 1\nerr 2\n"
    assert ok(sqlite_cli("logs", "--last", "--stream", "stdout")).startswith("out 0\nout 1\n")
    assert "choose stdout or stderr" in one_error_line(
        sqlite_cli("logs", "lg", "--stream", "both"), 2
    )


def test_logs_of_a_run_without_output_prints_nothing(lcli):
    assert ok(lcli("logs", "etl-ok")) == ""


def test_an_abandoned_run_shows_its_duration_as_what_is_known(sqlite_cli):
    with RunLogger(job="j", run_id="gone", db=sqlite_cli.db):
        pass
    seen = NOW - timedelta(minutes=5)
    set_run(sqlite_cli.db, "gone", status="abandoned", duration_ms=2000, finished_at=seen,
            heartbeat_at=seen, error_summary="process 123 is gone")  # fmt: skip
    _, rows = text_table(ok(sqlite_cli("history")))
    assert " abandoned " in rows[0] and " ≥ 2.0s " in rows[0]
    fields = dict(line.split(None, 1) for line in ok(sqlite_cli("show", "gone")).split("\n\n")[0]
                  .splitlines())  # fmt: skip
    local = seen.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert fields["duration_ms"] == f"≥ 2.0s, last seen {local}.000"


def test_show_streams_stored_text_escaped_whatever_the_path(sqlite_cli):
    with RunLogger(job="j", run_id="hostile", db=sqlite_cli.db) as run:
        run.log_event("output", {"stream": "stdout", "line": "red \x1b[31mtext\x1b[0m"})
        run.log_warning("tab\there", where="a\nb")
        for i in range(3000):  # past the sample the widths come from: the streaming path
            run.log_event("tick", {"i": i})
        run.log_event("output", {"stream": "stderr", "line": "late \x07bell"})
    shown = ok(sqlite_cli("show", "hostile"))
    assert "\x1b" not in shown and "\x07" not in shown
    assert "red \\x1b[31mtext\\x1b[0m" in shown and "late \\x07bell" in shown
    assert "tab\\there" in shown and '"where": "a\\nb"' in shown
