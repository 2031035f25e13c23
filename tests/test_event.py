"""``runstore event``: a shell script adds events to the run that ``runstore exec`` started."""

from __future__ import annotations

import pytest
from conftest import query
from helpers import recorded_events

from runstore.record.logger import RunLogger


@pytest.fixture
def running(db):
    """A run in progress, as ``runstore exec`` leaves it for its command."""
    run = RunLogger(job="nightly", db=db)
    yield run
    if not run.finished:
        run.finish()


def test_event_joins_the_run_named_by_the_environment(cli, running):
    env = {"RUNSTORE_RUN_ID": running.run_id}
    result = cli("event", "rows loaded", "--data", '{"rows": 120, "table": "t"}', env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == ""
    [event] = [e for e in recorded_events(cli.db, running.run_id) if e["event_type"] == "log"]
    assert (event["level"], event["message"]) == ("info", "rows loaded")
    assert event["data"] == {"message": "rows loaded", "rows": 120, "table": "t"}


def test_levels_and_types(cli, running):
    env = {"RUNSTORE_RUN_ID": running.run_id}
    assert cli("event", "slow source", "--level", "warning", env=env).exit_code == 0
    assert cli("event", "bad row", "-l", "error", "--type", "row_rejected", env=env).exit_code == 0
    assert cli("event", "detail", "--level", "debug", env=env).exit_code == 0
    logged = [(e["event_type"], e["level"]) for e in recorded_events(cli.db, running.run_id)][1:]
    assert logged == [("warning", "warning"), ("row_rejected", "error"), ("log", "debug")]
    [row] = query(cli.db, "SELECT warning_count, error_count FROM runs")
    assert row == {"warning_count": 1, "error_count": 1}


def test_run_id_option_names_the_run(cli, running):
    result = cli("event", "by id", "--run-id", running.run_id)
    assert result.exit_code == 0, result.output
    assert recorded_events(cli.db, running.run_id)[-1]["message"] == "by id"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{not json"], "Error: --data is not valid JSON"),
        (["--data", "[1, 2]"], "Error: --data must be a JSON object"),
        (["--type", "x" * 65], "Error: --type must be 1 to 64 characters"),
    ],
)
def test_malformed_input_is_a_usage_error(cli, running, args, message):
    result = cli("event", "msg", *args, env={"RUNSTORE_RUN_ID": running.run_id})
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert [e["event_type"] for e in recorded_events(cli.db, running.run_id)] == ["run_started"]


def test_unknown_level_is_a_usage_error(cli, running):
    result = cli("event", "msg", "--level", "loud", env={"RUNSTORE_RUN_ID": running.run_id})
    assert result.exit_code == 2


def test_outside_a_run_it_warns_and_does_not_fail_the_script(cli):
    result = cli("event", "nothing to attach to")
    assert result.exit_code == 0
    assert result.stderr == (
        "Warning: event not recorded: no run to attach to: give a run id or set RUNSTORE_RUN_ID\n"
    )


def test_a_finished_or_unknown_run_is_a_warning_too(cli, running):
    running.finish()
    result = cli("event", "late", env={"RUNSTORE_RUN_ID": running.run_id})
    assert result.exit_code == 0
    assert result.stderr == (
        f"Warning: event not recorded: run {running.run_id} is completed, not running\n"
    )
    result = cli("event", "lost", env={"RUNSTORE_RUN_ID": "no-such-run"})
    assert (result.exit_code, result.stderr) == (
        0,
        "Warning: event not recorded: no run matches 'no-such-run'\n",
    )
