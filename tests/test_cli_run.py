"""`runstore run` and `runstore db ...` as a user types them: exit codes, what lands on stdout
and stderr, and what the store holds afterwards."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SAMPLE_INPUT, query
from helpers import event_rows, event_types, one_error_line, run_row

from runstore.store.schema import SCHEMA_REVISION


def run_args(tmp_path: Path, source: Path | str, *extra: str) -> list[str]:
    return [
        "run",
        "--input",
        str(source),
        "--output",
        str(tmp_path / "p.json"),
        "--log",
        str(tmp_path / "l.json"),
        *extra,
    ]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_run_sample_input_exits_0_with_nine_items(cli, tmp_path):
    result = cli(*run_args(tmp_path, SAMPLE_INPUT, "--run-id", "a1"))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("run a1 completed: 9 items (9 ok, 0 failed)")

    row = run_row(cli.db, "a1")
    assert row["status"] == "completed"
    assert row["duration_ms"] is not None and row["duration_ms"] >= 0
    assert row["job"] == "process-lines"
    log = json.loads((tmp_path / "l.json").read_text())
    stored = event_rows(cli.db, "a1")
    assert [(e["seq"], e["event_type"]) for e in log["events"]] == [
        (e["seq"], e["event_type"]) for e in stored
    ]
    assert len(json.loads((tmp_path / "p.json").read_text())) == 9


def test_json_summary(sqlite_cli, tmp_path):
    result = sqlite_cli(
        *run_args(tmp_path, SAMPLE_INPUT, "--run-id", "j1", "--json", "--job", "nightly")
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["run_id"] == "j1"
    assert summary["job"] == "nightly"
    assert summary["status"] == "completed"
    assert summary["items"] == {"total": 9, "ok": 9, "failed": 0}
    assert summary["event_count"] == run_row(sqlite_cli.db, "j1")["event_count"]
    assert summary["duration_ms"] == run_row(sqlite_cli.db, "j1")["duration_ms"]
    assert summary["exit_code"] == 0


def test_missing_input_exits_1_with_one_error_line(cli, tmp_path):
    missing = tmp_path / "does-not-exist.txt"
    result = cli(*run_args(tmp_path, missing, "--run-id", "m1"))
    assert result.exit_code == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert str(missing) in lines[0]
    assert "Traceback" not in result.output

    row = run_row(cli.db, "m1")
    assert row["status"] == "failed"
    assert row["exit_code"] == 1
    assert json.loads((tmp_path / "l.json").read_text())["status"] == "failed"
    assert not (tmp_path / "p.json").exists()


def test_empty_input_exits_0_with_zero_items_and_a_warning(cli, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = cli(*run_args(tmp_path, empty, "--run-id", "e1", "--json"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed"
    assert summary["items"]["total"] == 0
    assert "warning" in event_types(cli.db, "e1")
    assert run_row(cli.db, "e1")["warning_count"] == 1


def test_duplicate_run_id_exits_2_and_leaves_the_first_run_as_it_was(cli, tmp_path):
    first = cli(*run_args(tmp_path, SAMPLE_INPUT, "--run-id", "a1"))
    assert first.exit_code == 0, first.output
    runs_before = query(cli.db, "SELECT * FROM runs ORDER BY id")
    events_before = event_rows(cli.db, "a1")
    outputs_before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}

    other = tmp_path / "other.txt"
    other.write_text("something else\n")
    again = cli(*run_args(tmp_path, other, "--run-id", "a1"))
    assert again.exit_code == 2
    lines = error_lines(again.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "a1" in lines[0] and "already exists" in lines[0]

    assert query(cli.db, "SELECT * FROM runs ORDER BY id") == runs_before
    assert event_rows(cli.db, "a1") == events_before
    outputs_after = {
        p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p != other
    }
    assert outputs_after == outputs_before  # neither processed.json nor run_log.json rewritten


def test_verbose_prints_each_event_as_a_line(cli, tmp_path):
    result = cli(*run_args(tmp_path, SAMPLE_INPUT, "--run-id", "v1", "--verbose"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    *event_lines, summary = lines
    assert summary.startswith("run v1 completed")
    stored = event_rows(cli.db, "v1")
    assert len(event_lines) == len(stored) == 13
    assert [line.split()[2] for line in event_lines] == [e["event_type"] for e in stored]
    assert [line.split()[1] for line in event_lines] == [e["level"] for e in stored]
    item_lines = [line for line in event_lines if " item_processed " in line]
    first_item = json.loads(item_lines[0].split(" item_processed ", 1)[1])
    assert first_item["item"] == "extract customer records from the CRM export"


def test_without_verbose_only_the_summary_is_printed(sqlite_cli, tmp_path):
    result = sqlite_cli(*run_args(tmp_path, SAMPLE_INPUT))
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1


def test_bad_lines_fail_as_items_and_the_run_exits_0(sqlite_cli, tmp_path):
    source = tmp_path / "messy.txt"
    source.write_bytes(b"good\r\nbad \xff\r\nbell\x07\r\nfine\r\n")
    result = sqlite_cli(*run_args(tmp_path, source, "--run-id", "messy", "--json"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["items"] == {"total": 4, "ok": 2, "failed": 2}
    assert summary["warning_count"] == 2


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--run-id", "has space"], "invalid run id"),
        (["--run-id", ""], "invalid run id"),
    ],
)
def test_bad_run_id_is_a_usage_error(sqlite_cli, tmp_path, args, fragment):
    result = sqlite_cli(*run_args(tmp_path, SAMPLE_INPUT, *args))
    assert result.exit_code == 2
    assert fragment in result.stderr and "--run-id" in result.stderr
    assert not Path(sqlite_cli.db).exists()  # checked before the store is even opened


def test_missing_required_option_is_a_usage_error(sqlite_cli):
    result = sqlite_cli("run", "--output", "x.json")
    assert result.exit_code == 2
    assert "--input" in result.output


def test_output_that_is_a_directory_fails_the_run(sqlite_cli, tmp_path):
    result = sqlite_cli(
        "run", "--input", str(SAMPLE_INPUT), "--output", str(tmp_path), "--run-id", "d1"
    )
    assert result.exit_code == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "directory" in lines[0]
    assert run_row(sqlite_cli.db, "d1")["status"] == "failed"


def test_db_option_overrides_the_environment(sqlite_cli, tmp_path):
    chosen = tmp_path / "chosen" / "runs.db"
    chosen.parent.mkdir()
    result = sqlite_cli(*run_args(tmp_path, SAMPLE_INPUT, "--run-id", "o1", "--db", str(chosen)))
    assert result.exit_code == 0, result.output
    assert run_row(str(chosen), "o1")["status"] == "completed"
    assert not Path(sqlite_cli.db).exists()


# -- files readable by their owner only ----------------------------------------------------------


def test_new_store_and_run_log_are_private(sqlite_cli, tmp_path):
    result = sqlite_cli(*run_args(tmp_path, SAMPLE_INPUT))
    assert result.exit_code == 0, result.output
    store = Path(sqlite_cli.db)
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    for side in (Path(f"{store}-wal"), Path(f"{store}-shm")):
        if side.exists():
            assert stat.S_IMODE(side.stat().st_mode) == 0o600, side
    assert stat.S_IMODE((tmp_path / "l.json").stat().st_mode) == 0o600


def test_the_default_store_directory_is_created_private(sqlite_cli, tmp_path):
    env = {"RUNSTORE_DB": None, "XDG_DATA_HOME": str(tmp_path / "fresh" / "data")}
    result = sqlite_cli(*run_args(tmp_path, SAMPLE_INPUT, "--run-id", "d1"), env=env)
    assert result.exit_code == 0, result.output
    store = tmp_path / "fresh" / "data" / "runstore" / "runstore.db"
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert run_row(str(store), "d1")["status"] == "completed"


def test_a_store_path_in_a_missing_directory_is_refused_not_created(sqlite_cli, tmp_path):
    store = tmp_path / "typo" / "dir" / "store.db"
    result = sqlite_cli(*run_args(tmp_path, SAMPLE_INPUT, "--db", str(store)))
    assert one_error_line(result) == (
        f"cannot create the store at {store}: no directory {store.parent} (create it first)"
    )
    assert not (tmp_path / "typo").exists()


# -- runstore db ... ------------------------------------------------------------------------------


def test_db_path_prints_the_store_location(sqlite_cli, tmp_path):
    result = sqlite_cli("db", "path")
    assert result.exit_code == 0
    assert result.stdout.strip() == str(Path(sqlite_cli.db).absolute())
    other = tmp_path / "other.db"
    assert sqlite_cli("db", "path", "--db", str(other)).stdout.strip() == str(other)
    assert not Path(sqlite_cli.db).exists() and not other.exists()  # only printed


def test_db_path_hides_a_password(sqlite_cli):
    url = "postgresql+psycopg://ops:s3cret@db.example:5432/runs"
    result = sqlite_cli("db", "path", "--db", url)
    assert result.exit_code == 0
    assert "s3cret" not in result.stdout
    assert "ops:***@db.example:5432/runs" in result.stdout


def test_db_current_and_upgrade(cli):
    before = cli("db", "current")
    assert before.exit_code == 0, before.output
    assert before.stdout.strip() == f"none (this runstore: {SCHEMA_REVISION})"
    if "://" not in cli.db:
        assert not Path(cli.db).exists()  # asking changes nothing

    upgraded = cli("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert SCHEMA_REVISION in upgraded.stdout

    after = cli("db", "current")
    assert after.stdout.strip() == f"{SCHEMA_REVISION} (this runstore: {SCHEMA_REVISION})"
    assert cli("db", "upgrade", "--quiet").stdout == ""  # again: nothing to do, nothing said


def test_python_dash_m_runstore(tmp_path):
    env = {**os.environ, "RUNSTORE_DB": str(tmp_path / "s.db")}
    result = subprocess.run(
        [sys.executable, "-m", "runstore", "--version"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("runstore ")


def test_default_store_lives_in_the_per_user_data_directory(sqlite_cli, tmp_path):
    env = {"RUNSTORE_DB": "", "XDG_DATA_HOME": str(tmp_path / "data")}
    expected = tmp_path / "data" / "runstore" / "runstore.db"
    assert sqlite_cli("db", "path", env=env).stdout.strip() == str(expected)
    result = sqlite_cli(*run_args(tmp_path, SAMPLE_INPUT, "--run-id", "home"), env=env)
    assert result.exit_code == 0, result.output
    assert run_row(str(expected), "home")["status"] == "completed"
    assert stat.S_IMODE(expected.stat().st_mode) == 0o600


def test_verbose_run_piped_into_head_still_completes_and_is_recorded(tmp_path):
    from runstore.store.store import Store

    db = str(tmp_path / "piped.db")
    script = (
        f"{sys.executable} -m runstore run --verbose --run-id piped --input {SAMPLE_INPUT} "
        f"--output {tmp_path / 'p.json'} | head -1"
    )
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "RUNSTORE_DB": db},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) == 1
    run = Store.open(db).find_run("piped")
    assert (run["status"], run["items_total"]) == ("completed", 9)


@pytest.mark.parametrize("content", ["", "\n\n# only a comment\n   \n"], ids=["empty", "comments"])
def test_an_input_without_items_completes_and_says_so(cli, tmp_path, content):
    source = tmp_path / "nothing.txt"
    source.write_text(content)
    result = cli(*run_args(tmp_path, source))
    assert result.exit_code == 0
    assert result.stderr == (
        f"Warning: {source} has no items: it is empty, or holds only blank lines and # comments\n"
    )
    assert " 0 items (0 ok, 0 failed), 1 warning, 0 errors, 5 events in " in result.stdout


def test_the_summary_counts_like_a_person_writes(cli, tmp_path):
    source = tmp_path / "many.txt"
    source.write_text("".join(f"line {i}\n" for i in range(1200)))
    out = cli(*run_args(tmp_path, source, "--run-id", "many")).stdout
    assert re.fullmatch(
        r"run many completed: 1,200 items \(1,200 ok, 0 failed\), 0 warnings, 0 errors, "
        r"1,204 events in \d+(ms|\.\ds)\n",
        out,
    ), out


@pytest.mark.parametrize("args", [[], ["db"]], ids=["runstore", "runstore db"])
def test_a_bare_command_shows_its_help_and_exits_0(cli, args):
    result = cli(*args)
    assert result.exit_code == 0 and result.stderr == ""
    assert "Usage: runstore" in result.stdout


def test_db_upgrade_says_whether_it_created_upgraded_or_found_the_schema(sqlite_cli):
    from runstore.store.schema import SCHEMA_REVISION

    first = sqlite_cli("db", "upgrade")
    assert first.stdout == (
        f"created the store schema (revision {SCHEMA_REVISION}) in {sqlite_cli.db}\n"
    )
    again = sqlite_cli("db", "upgrade")
    assert again.stdout == f"{sqlite_cli.db} is already at schema revision {SCHEMA_REVISION}\n"
