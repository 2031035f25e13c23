"""``runstore job``, ``check --all``, the stats trend and ``runstore metrics``, as a user types
them, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import NOW, insert_runs, ok, one_error_line, usage_error
from prometheus_client.parser import text_string_to_metric_families

from runstore.health.metrics import TEXTFILE, write_textfile
from runstore.store.store import Store


def _runs(job: str, statuses_ms: list[tuple[str, int]], *, hours_apart: float = 1) -> list[dict]:
    """Runs of ``job``, the newest first in the list, an hour apart, ending an hour ago."""
    return [
        {"run_id": f"{job}-{i:03d}", "job": job, "status": status,
         "started_at": NOW - timedelta(hours=1 + i * hours_apart),
         "finished_at": NOW - timedelta(hours=1 + i * hours_apart) + timedelta(milliseconds=ms),
         "duration_ms": ms, "exit_code": 0 if status == "completed" else 1}
        for i, (status, ms) in enumerate(statuses_ms)
    ]  # fmt: skip


# -- job set, list, show, rm -----------------------------------------------------------------------


def test_job_set_list_show_and_rm(cli):
    said = ok(cli("job", "set", "nightly", "--schedule", "0 3 * * *", "--tz", "Europe/Berlin",
                  "--grace", "30m", "--max-duration", "2h",
                  "--notify", "ntfy://ntfy.sh/ops"))  # fmt: skip
    assert said == (
        "nightly: expectations set; 0 3 * * * (at 03:00 every day, Europe/Berlin), grace 30m, "
        "at most 2h, alerts to ntfy://ntfy.sh/…\n"
    )
    assert "expectations changed" in ok(cli("job", "set", "nightly", "--grace", "1h"))
    assert "expectations unchanged" in ok(cli("job", "set", "nightly", "--grace", "1h"))
    ok(cli("job", "set", "sync", "--every", "1h"))
    listed = cli.json("job", "list")
    assert [(j["job"], j["schedule"], j["grace"], j["max_duration"], j["notify"])
            for j in listed] == [
        ("nightly", "0 3 * * * (at 03:00 every day, Europe/Berlin)", "1h", "2h", 1),
        ("sync", "every 1h", "", "", 0),
    ]  # fmt: skip
    shown = cli.json("job", "show", "nightly")
    assert shown["grace"] == "1h" and shown["notify"] == ["ntfy://ntfy.sh/…"]
    assert shown["state"] == "new" and shown["alerts"] == []
    ok(cli("job", "set", "nightly", "--every", "6h"))  # a period instead of the schedule
    assert cli.json("job", "show", "nightly")["schedule"] == "every 6h"
    assert ok(cli("job", "rm", "sync")) == "sync: expectations removed\n"
    assert one_error_line(cli("job", "rm", "sync")) == "job 'sync' has no expectations"
    assert [j["job"] for j in cli.json("job", "list")] == ["nightly"]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--schedule", "0 3 * *"], "a cron expression has five fields"),
        (["--schedule", "0 3 * * *", "--every", "1h"], "not both"),
        (["--tz", "Europe/Berlin"], "give a --schedule too"),
        (["--schedule", "0 3 * * *", "--tz", "Nowhere/Land"], "unknown time zone"),
        (["--grace", "30"], "'30' has no unit"),
        (["--notify", "ops@example.com"], "give an Apprise URL"),
    ],
)
def test_job_set_refuses_bad_values_in_one_line(sqlite_cli, args, said):
    usage_error(sqlite_cli("job", "set", "nightly", *args), said)


def test_job_apply_sets_jobs_from_a_toml_file(cli, tmp_path):
    jobs_toml = tmp_path / "jobs.toml"
    jobs_toml.write_text(
        '[jobs.nightly-backup]\nschedule = "0 3 * * *"\ntz = "Europe/Berlin"\ngrace = "30m"\n'
        'max_duration = "2h"\nnotify = ["command:cat"]\n\n'
        '[jobs.sync]\nevery = "1h"\nalert_trends = true\n'
    )
    assert ok(cli("job", "apply", str(jobs_toml))) == f"{jobs_toml}: 2 jobs (2 new)\n"
    assert ok(cli("job", "apply", str(jobs_toml))) == f"{jobs_toml}: 2 jobs (2 unchanged)\n"
    ok(cli("job", "set", "manual", "--every", "1d"))
    jobs_toml.write_text('[jobs.sync]\nevery = "2h"\n')
    said = ok(cli("job", "apply", str(jobs_toml)))
    assert said == (
        f"{jobs_toml}: 1 job (1 changed)\nnot in the file, kept: manual, nightly-backup "
        "(--remove-others forgets them)\n"
    )
    assert "2 removed" in ok(cli("job", "apply", str(jobs_toml), "--remove-others"))
    assert [j["job"] for j in cli.json("job", "list")] == ["sync"]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('[jobs.a]\nscheduel = "0 3 * * *"\n', "[jobs.a]: unknown key 'scheduel'"),
        ("[jobs.a]\ngrace = 30\n", "[jobs.a]: grace takes a duration with a unit"),
        ('[jobs.a]\nschedule = "0 3 * *"\n', "[jobs.a]: schedule '0 3 * *': a cron expression"),
        ("[jobs.a\n", "is not valid TOML"),
        ('[a]\nschedule = "x"\n', "give each job as a [jobs.NAME] table"),
    ],
)
def test_job_apply_refuses_a_bad_file_and_sets_nothing(sqlite_cli, tmp_path, text, said):
    bad = tmp_path / "jobs.toml"
    bad.write_text('[jobs.first]\nevery = "1h"\n' + text if text.startswith("[jobs.a]") else text)
    usage_error(sqlite_cli("job", "apply", str(bad)), said)
    assert sqlite_cli("job", "list", "--json").stdout.strip() in ("", "[]")


# -- check --all -----------------------------------------------------------------------------------


def test_check_all_lists_the_problem_jobs_and_exits_1(cli):
    insert_runs(cli.db, _runs("etl", [("failed", 2000), ("completed", 1000)])
                + _runs("backup", [("completed", 1000)]))  # fmt: skip
    ok(cli("job", "set", "etl", "--every", "1d"))
    ok(cli("job", "set", "backup", "--every", "1d"))
    result = cli("check", "--all")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["JOB", "STATE", "WHY"]
    assert lines[1].split()[:4] == ["etl", "failed", "last", "run"] and len(lines) == 2
    states = {j["job"]: j for j in json.loads(cli("check", "--all", "--json").stdout)}
    assert states["etl"]["state"] == "failed" and states["etl"]["problem"] is True
    assert states["backup"]["state"] == "ok" and states["backup"]["problem"] is False
    ok(cli("job", "rm", "etl"))
    assert ok(cli("check", "--all")) == "ok: 1 job, all healthy\n"


def test_check_job_uses_its_expectations(cli):
    insert_runs(cli.db, _runs("sync", [("completed", 1000)]))  # an hour ago
    ok(cli("job", "set", "sync", "--every", "30m", "--grace", "5m"))
    said = one_error_line(cli("check", "sync"))
    assert said.startswith("sync is late: expected to start at ")
    ok(cli("job", "set", "sync", "--every", "2h"))
    assert ok(cli("check", "sync")).startswith("ok: sync: last run sync-000 completed")
    assert "give a job, or --all" in one_error_line(cli("check"), 2)


# -- stats trend -----------------------------------------------------------------------------------


def test_stats_says_which_jobs_got_slower_faster_or_flaky(cli):
    steady = [("completed", 10_000)] * 20
    insert_runs(cli.db, _runs("slow", [("completed", 30_000)] * 5 + steady)
                + _runs("quick", [("completed", 1_000)] * 5 + steady)
                + _runs("flip", [("completed", 1000), ("failed", 1000)] * 5)
                + _runs("calm", steady))  # fmt: skip
    rows = {r["job"]: r for r in cli.json("stats")}
    assert (rows["slow"]["trend"], rows["slow"]["trend_change"]) == ("slower +200%", 2.0)
    assert (rows["quick"]["trend"], rows["quick"]["trend_change"]) == ("faster -90%", -0.9)
    assert rows["flip"]["trend"] == "flaky" and rows["calm"]["trend"] is None
    text = ok(cli("stats"))
    assert text.splitlines()[0].split()[-1] == "TREND"
    assert "slower +200%" in text and "faster -90%" in text


# -- metrics ---------------------------------------------------------------------------------------


def _families(text: str) -> dict[str, dict]:
    found = {}
    for family in text_string_to_metric_families(text):
        found[family.name] = {(tuple(sorted(s.labels.items()))): s.value for s in family.samples}
    return found


def test_metrics_parse_back_and_say_each_jobs_health(cli):
    insert_runs(cli.db, _runs("etl", [("failed", 2000), ("completed", 1500)])
                + _runs("backup", [("completed", 4000)]))  # fmt: skip
    ok(cli("job", "set", "etl", "--every", "1d"))
    text = ok(cli("metrics"))
    found = _families(text)
    etl = (("job", "etl"),)
    assert found["runstore_job_last_run_duration_seconds"][etl] == 2.0
    assert found["runstore_job_last_run_exit_code"][etl] == 1
    success = found["runstore_job_last_success_timestamp_seconds"][etl]
    assert success == pytest.approx((NOW - timedelta(hours=2, seconds=-1.5)).timestamp())
    assert found["runstore_job_last_run_status"][(("job", "etl"), ("status", "failed"))] == 1
    assert found["runstore_job_last_run_status"][(("job", "etl"), ("status", "completed"))] == 0
    assert found["runstore_job_state"][(("job", "etl"), ("state", "failed"))] == 1
    assert found["runstore_job_state"][(("job", "backup"), ("state", "ok"))] == 1
    assert found["runstore_job_duration_seconds"][(("job", "backup"), ("quantile", "0.95"))] == 4
    assert found["runstore_job_running"][etl] == 0
    assert not any(name.endswith("_total") for name in found)
    assert all(key[0][0] == "job" for samples in found.values() for key in samples)  # no run id
    om = ok(cli("metrics", "--openmetrics"))
    assert om.endswith("# EOF\n") and "runstore_job_last_run_exit_code" in om


def test_the_textfile_is_replaced_whole(sqlite_cli, tmp_path):
    insert_runs(sqlite_cli.db, _runs("etl", [("completed", 1000)] * 3))
    directory = tmp_path / "textfile"
    directory.mkdir()
    assert ok(sqlite_cli("metrics", "--textfile", str(directory))) == ""
    target = directory / TEXTFILE
    whole = target.read_text()
    assert "runstore_job_last_run_duration_seconds" in whole
    store = Store.open(sqlite_cli.db)
    seen: list[str] = []
    stop = threading.Event()

    def read_while_written() -> None:
        while not stop.is_set():
            seen.append(target.read_text())

    reader = threading.Thread(target=read_while_written)
    reader.start()
    for _ in range(30):
        write_textfile(store, directory)
    stop.set()
    reader.join()
    assert seen and all(text == whole for text in seen)  # never a half-written file
    assert sorted(p.name for p in directory.iterdir()) == [TEXTFILE]  # no temporary file left


def test_metrics_textfile_into_a_missing_directory_is_one_error(sqlite_cli, tmp_path):
    insert_runs(sqlite_cli.db, _runs("etl", [("completed", 1000)]))
    missing = tmp_path / "nope"
    line = one_error_line(sqlite_cli("metrics", "--textfile", str(missing)))
    assert str(missing) in line and not Path(missing).exists()


def test_metrics_textfile_dash_is_a_usage_error_before_any_store_is_read(sqlite_cli):
    # `-` means stdout for every output that names a file; --textfile names a directory.
    said = one_error_line(sqlite_cli("metrics", "--textfile", "-"), code=2)
    assert said == "--textfile takes a directory; without it the metrics go to stdout"
    assert not Path(sqlite_cli.db).exists()  # checked before the store was opened


@pytest.mark.parametrize("command", [["check", ""], ["check", "  ", "--json"], ["metric", ""]])
def test_a_blank_job_name_is_a_usage_error(sqlite_cli, command):
    # check '' --json used to answer {"ok": false, "reason": "job '' has never run"}.
    said = one_error_line(sqlite_cli(*command), code=2)
    assert said == "JOB: a job name is 1-200 characters, not blank"
    assert not Path(sqlite_cli.db).exists()  # checked before the store was opened
