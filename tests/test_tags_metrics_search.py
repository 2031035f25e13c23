"""Richer runs, on both backends: tags (``--tag``, ``RUNSTORE_TAGS``, ``RunLogger(tags=)``) that
``history``, ``stats``, ``show`` and run_log.json know; metrics (``log_metric``, ``runstore
event --metric``, the events channel) that ``runstore metric`` lists with p50/p95 and a trend;
``history --grep`` over output lines and event messages; and bad input said in one line, with
nothing recorded lost."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from conftest import query
from helpers import (
    jsonl,
    last_run,
    ok,
    one_error_line,
    recorded_events,
    run_ids,
    run_row,
    runstore,
    usage_error,
)

from runstore.errors import UsageError
from runstore.record.logger import RunLogger

RUNSTORE = f"{sys.executable} -m runstore"


def _tags(db: str, run_id: str) -> dict[str, str]:
    rows = query(db, "SELECT t.key, t.value FROM run_tags t JOIN runs r ON r.id = t.run_pk "
                     "WHERE r.run_id = :run_id", run_id=run_id)  # fmt: skip
    return {row["key"]: row["value"] for row in rows}


# -- tags ----------------------------------------------------------------------------------------


def test_exec_tags_are_stored_shown_exported_and_inherited(db, tmp_path):
    log = tmp_path / "run_log.json"
    script = f"{RUNSTORE} exec --run-id child -- true"  # a run started by the command
    tags = ["--tag", "env=prod", "--tag", "team=data"]
    done = runstore(db, "exec", "--run-id", "tagged", *tags, "--log", str(log), "--",
                    "sh", "-c", script, RUNSTORE_TAGS="region=eu")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _tags(db, "tagged") == {"env": "prod", "team": "data", "region": "eu"}
    assert _tags(db, "child") == {"env": "prod", "team": "data", "region": "eu"}
    assert json.loads(log.read_text())["tags"] == {"env": "prod", "region": "eu", "team": "data"}
    shown = runstore(db, "show", "tagged").stdout.decode()
    assert "env=prod, region=eu, team=data" in shown
    as_json = json.loads(runstore(db, "show", "tagged", "--json").stdout)
    assert as_json["tags"] == {"env": "prod", "region": "eu", "team": "data"}


def test_history_and_stats_filter_by_tag(db, cli):
    for run_id, tags in [("a", {"env": "prod"}), ("b", {"env": "dev"}), ("c", {"team": "x"})]:
        RunLogger("etl", run_id, db=db, tags=tags).finish()
    RunLogger("other", "d", db=db, tags={"env": "prod"}).finish("failed")
    assert run_ids(jsonl(ok(cli("history", "--tag", "env=prod", "--jsonl")))) == ["d", "a"]
    assert run_ids(jsonl(ok(cli("history", "--tag", "env", "--jsonl")))) == ["d", "b", "a"]
    both = jsonl(ok(cli("history", "--tag", "env=prod", "--job", "etl", "--jsonl")))
    assert run_ids(both) == ["a"]
    assert ok(cli("history", "--tag", "env=staging", "--jsonl")) == ""
    stats = {row["job"]: row for row in cli.json("stats", "--tag", "env=prod")}
    assert (stats["etl"]["runs"], stats["other"]["runs"], stats["other"]["failed"]) == (1, 1, 1)


def test_a_tag_without_equals_is_a_usage_error_and_exec_records_the_refused_run(db, cli):
    usage_error(cli("history", "--tag", "=prod"), "tag key ''")
    refused = runstore(db, "exec", "--job", "nightly", "--tag", "envprod", "--", "true")
    assert refused.returncode == 2
    said = "a tag is a key and a value joined by '=', such as env=prod (got 'envprod')"
    assert said in refused.stderr.decode()
    run = last_run(db)
    assert (run["job"], run["status"], run["exit_code"]) == ("nightly", "failed", 2)
    assert "a tag is a key and a value" in run["error_summary"]


def test_a_malformed_runstore_tags_entry_is_left_out_with_a_warning(db, monkeypatch):
    monkeypatch.setenv("RUNSTORE_TAGS", "env=prod,oops")
    with pytest.warns(Warning, match="RUNSTORE_TAGS: left out 'oops'"):
        run = RunLogger("etl", "r", db=db)
    run.finish()
    assert run_row(db, "r")["status"] == "completed"
    assert _tags(db, "r") == {"env": "prod"}


def test_library_tags_are_checked(db, monkeypatch):
    monkeypatch.setenv("RUNSTORE_TAGS", "env=prod")
    with RunLogger("etl", "lib", db=db, tags={"env": "test", "build": 42}) as run:
        run.log_event("log", message="tagged")
    assert _tags(db, "lib") == {"env": "test", "build": "42"}  # given tags win over inherited
    with pytest.raises(UsageError, match="tag key 'bad key'"):
        RunLogger("etl", db=db, tags={"bad key": "x"})
    assert [r["run_id"] for r in query(db, "SELECT run_id FROM runs")] == ["lib"]


# -- metrics ----------------------------------------------------------------------------------


def test_log_metric_writes_a_row_and_an_event(db):
    with RunLogger("etl", "m", db=db) as run:
        run.log_metric("rows_loaded", 120)
        run.log_metric("loss", 0.25, step=3)
        with pytest.raises(UsageError, match="must be a finite number"):
            run.log_metric("rows_loaded", float("nan"))
        with pytest.raises(UsageError, match="must be a finite number"):
            run.log_metric("rows_loaded", "12")  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="metric name None"):
            run.log_event("metric")  # a metric event is a metric: no name, no event
        run.log_event("log", message="the run goes on")
    rows = query(db, "SELECT name, value, step FROM run_metrics ORDER BY id")
    assert rows == [
        {"name": "rows_loaded", "value": 120.0, "step": None},
        {"name": "loss", "value": 0.25, "step": 3},
    ]
    metrics = recorded_events(db, "m", "metric")
    assert [(e["message"], e["data"]) for e in metrics] == [
        ("rows_loaded = 120", {"name": "rows_loaded", "value": 120}),
        ("loss = 0.25", {"name": "loss", "value": 0.25, "step": 3}),
    ]
    assert run_row(db, "m")["status"] == "completed"


def test_metrics_from_shell_inside_exec_and_by_run_id(db, cli):
    script = "; ".join([
        f"{RUNSTORE} event --metric rows_loaded=120 --metric bytes=5.5e6",
        f"{RUNSTORE} event 'batch done' -m rows_loaded=130 --step 2",
        """echo '{"type": "metric", "name": "lag_s", "value": 1.5}' >> "$RUNSTORE_EVENTS" """,
        """echo '{"type": "metric", "name": "lag_s", "value": "slow"}' >> "$RUNSTORE_EVENTS" """,
    ])  # fmt: skip
    done = runstore(db, "exec", "--run-id", "sh", "--", "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    rows = query(db, "SELECT name, value, step FROM run_metrics ORDER BY id")
    assert [(r["name"], r["value"], r["step"]) for r in rows] == [
        ("rows_loaded", 120.0, None), ("bytes", 5_500_000.0, None), ("rows_loaded", 130.0, 2),
        ("lag_s", 1.5, None),
    ]  # fmt: skip
    [bad] = recorded_events(db, "sh", "malformed_event")
    assert bad["data"]["problem"] == "metric lag_s: the value must be a finite number (got 'slow')"
    assert [e["message"] for e in recorded_events(db, "sh", "log")] == ["batch done"]

    running = RunLogger("etl", "attached", db=db)
    ok(cli("event", "--metric", "files=7", "--run-id", "attached"))
    running.finish()
    assert query(db, "SELECT name, value FROM run_metrics WHERE name = 'files'") == [
        {"name": "files", "value": 7.0}
    ]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--metric", "rows=many"], "metric rows: 'many' is not a number"),
        (["--metric", "rows"], "a metric is a name and a number joined by"),
        (["--metric", "rows=inf"], "metric rows: the value must be a finite number (got inf)"),
        (["--metric", "bad name=1"], "metric name 'bad name'"),
        (["--step", "2"], "give the event's MESSAGE, or a --metric"),
        (["hello", "--step", "2"], "--step goes with --metric"),
    ],
)
def test_a_bad_metric_is_a_usage_error_and_records_nothing(db, cli, args, said):
    running = RunLogger("etl", "r", db=db)
    result = cli("event", *args, env={"RUNSTORE_RUN_ID": "r"})
    assert one_error_line(result, 2).startswith(said)
    running.finish()
    assert query(db, "SELECT count(*) AS n FROM run_metrics") == [{"n": 0}]
    assert run_row(db, "r")["status"] == "completed"


def test_a_bad_metric_inside_exec_fails_neither_the_job_nor_its_run(db):
    done = runstore(db, "exec", "--run-id", "bad", "--", "sh", "-c",
                    f"{RUNSTORE} event --metric rows=many; echo still here")  # fmt: skip
    assert done.returncode == 0
    assert "'many' is not a number" in done.stderr.decode()
    assert run_row(db, "bad")["status"] == "completed"


def _runs_with_metric(db: str, values: list[float]) -> None:
    for i, value in enumerate(values):
        with RunLogger("etl", f"r{i:02}", db=db) as run:
            run.log_metric("rows", value - 1, step=1)  # a run's last report is its value
            run.log_metric("rows", value, step=2)


def test_metric_lists_a_job_metric_with_percentiles_and_trend(db, cli):
    _runs_with_metric(db, [100.0] * 20 + [150.0] * 5)
    report = cli.json("metric", "etl", "rows")
    assert (report["runs"], report["last"], report["p50"], report["min"]) == (20, 150, 100, 100)
    assert (report["p95"], report["max"]) == (150, 150)
    assert (report["trend"], report["trend_change"]) == ("up", 0.5)
    assert [v["run_id"] for v in report["values"]][:2] == ["r24", "r23"]
    assert report["values"][0]["values"] == 2 and report["values"][0]["step"] == 2
    table = ok(cli("metric", "etl", "rows", "-n", "3"))
    assert table.splitlines()[0].split() == ["RUN", "STARTED", "STATUS", "VALUE", "STEP"]
    assert "rows over 3 runs: last 150, p50 150, p95 150, min 150, max 150" in table
    assert "trend: up +50%" in table
    names = ok(cli("metric", "etl"))
    assert names.splitlines()[1].split()[:2] == ["rows", "25"]
    listed = cli.json("metric", "etl")
    assert listed["job"] == "etl" and [(m["name"], m["runs"]) for m in listed["metrics"]] == [
        ("rows", 25)
    ]


def test_a_steady_or_young_metric_has_no_trend(db, cli):
    _runs_with_metric(db, [100.0, 101.0, 99.0])
    assert cli.json("metric", "etl", "rows")["trend"] is None
    assert "trend: not known yet (10 runs needed)" in ok(cli("metric", "etl", "rows"))


def test_metric_of_nothing_says_so(db, cli):
    RunLogger("etl", "plain", db=db).finish()
    assert (
        one_error_line(cli("metric", "etl", "rows")) == "job 'etl' has no runs that reported 'rows'"
    )
    assert one_error_line(cli("metric", "etl")).startswith("no metrics reported by job 'etl'")


# -- search -----------------------------------------------------------------------------------


@pytest.fixture(params=["read", "indexed"])
def search(request: pytest.FixtureRequest, db: str, cli: Any) -> str:
    """How --grep searches the store: by reading the events, or through its search index (turned
    on after a first run, so that both what is indexed on the way in and what is indexed when
    it is turned on are found)."""
    with RunLogger("first", "first", db=db) as run:
        run.log_warning("the first run said: connection reset")
    if request.param == "indexed":
        assert "search index on" in ok(cli("db", "search", "on"))
    return str(request.param)


def test_grep_finds_runs_by_output_line_or_event_message(db, cli, search):
    runstore(db, "exec", "--run-id", "reset", "--", "sh", "-c",
             "echo 'fetching'; echo 'Connection RESET by peer' >&2; exit 1")  # fmt: skip
    runstore(db, "exec", "--run-id", "quiet", "--", "echo", "all good")
    with RunLogger("etl", "decoy", db=db) as run:
        run.log_warning("res ese set: its trigrams, never the word")
    with RunLogger("etl", "warned", db=db) as run:
        run.log_warning("connection reset, retrying")
    found = run_ids(jsonl(ok(cli("history", "--grep", "connection reset", "--jsonl"))))
    assert found == ["warned", "reset", "first"]  # newest first, whatever the case
    assert run_ids(jsonl(ok(cli("history", "--grep", "all goo", "--jsonl")))) == ["quiet"]
    failed = jsonl(ok(cli("history", "--grep", "reset", "--failed", "--jsonl")))
    assert run_ids(failed) == ["reset"]
    said = jsonl(ok(cli("history", "--grep", "its trigrams", "--jsonl")))
    assert run_ids(said) == ["decoy"]
    assert ok(cli("history", "--grep", "50%_off", "--jsonl")) == ""  # % and _ are text
    assert ok(cli("history", "--grep", "nowhere said", "--jsonl")) == ""


def test_grep_needs_three_characters(db, cli):
    RunLogger("etl", db=db).finish()
    result = cli("history", "--grep", "ab")
    assert one_error_line(result, 2) == "--grep: give at least 3 characters to search for"


def test_pruned_runs_leave_the_search_index(db, cli, search):
    with RunLogger("etl", "old", db=db) as run:
        run.log_event("log", message="needle in the hay")
    ok(cli("prune", "--older-than", "0"))
    assert ok(cli("history", "--grep", "needle", "--jsonl")) == ""
    with RunLogger("etl", "new", db=db) as run:
        run.log_event("log", message="needle again")
    assert run_ids(jsonl(ok(cli("history", "--grep", "needle", "--jsonl")))) == ["new"]


def test_an_output_line_with_a_nul_byte_is_stored_and_searchable(db, cli, search):
    with RunLogger("etl", "nul", db=db) as run:
        run.log_event("output", {"stream": "stdout", "line": "before\x00after"})
        run.log_event("output", {"stream": "stdout", "line": "plain words here"})
    assert run_row(db, "nul")["event_count"] >= 4
    assert run_ids(jsonl(ok(cli("history", "--grep", "words here", "--jsonl")))) == ["nul"]


def test_db_search_turns_the_index_on_and_off_and_says_which(db, cli):
    RunLogger("etl", db=db).finish()
    assert ok(cli("db", "search")).startswith("search index: off")
    assert "search index on in" in ok(cli("db", "search", "on"))
    assert "already on" in ok(cli("db", "search", "on"))
    assert ok(cli("db", "search")) == "search index: on\n"
    assert "search index off in" in ok(cli("db", "search", "off"))
    assert ok(cli("db", "search")).startswith("search index: off")
    assert one_error_line(cli("db", "search", "maybe"), 2) == "say on or off, not 'maybe'"


def test_data_keys_named_like_an_event_s_own_fields_stay_data_inside_exec(db):
    script = f"""{RUNSTORE} event typed --data '{{"type": "foo", "level": "error"}}'"""
    done = runstore(db, "exec", "--run-id", "own", "--", "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    [event] = recorded_events(db, "own", "log")
    assert (event["level"], event["data"]) == ("info", {"message": "typed", "type": "foo",
                                                        "level": "error"})  # fmt: skip
    assert run_row(db, "own")["error_count"] == 0


def test_a_10_mb_channel_line_is_a_warning_and_the_events_around_it_are_kept(db):
    script = "; ".join([
        """echo '{"type": "before", "n": 1}' >> "$RUNSTORE_EVENTS" """,
        f"""{sys.executable} -c "print('{{\\"x\\": \\"' + 'y' * 10_000_000 + '\\"}}')" """
        """>> "$RUNSTORE_EVENTS" """,
        """echo 'not json' >> "$RUNSTORE_EVENTS" """,
        """echo '{"type": "after", "n": 2}' >> "$RUNSTORE_EVENTS" """,
        "echo done",
    ])  # fmt: skip
    done = runstore(db, "exec", "--run-id", "big", "--", "sh", "-c", script)
    assert done.returncode == 0 and done.stdout == b"done\n", done.stderr
    kinds = [e["event_type"] for e in recorded_events(db, "big")]
    assert kinds.count("before") == 1 and kinds.count("after") == 1
    problems = [e["data"] for e in recorded_events(db, "big", "malformed_event")]
    assert len(problems) == 2
    assert problems[0]["problem"] == "longer than 1,048,576 bytes"
    assert problems[0]["line"].endswith("… (line too long)") and len(problems[0]["line"]) < 1100
    assert problems[1]["problem"].startswith("not JSON")
    run = run_row(db, "big")
    assert (run["status"], run["warning_count"]) == ("completed", 2)
