"""`runstore db copy`: the whole history moves between stores, verified, and copying again is
harmless."""

from __future__ import annotations

import json

from conftest import SAMPLE_INPUT, Cli

from runstore.history.transfer import copy_history, event_checksum
from runstore.record.logger import RunLogger
from runstore.store.store import Store


def _some_history(cli: Cli, tmp_path) -> None:
    cli("run", "--input", str(SAMPLE_INPUT), "--output", str(tmp_path / "p.json"), "--run-id", "ok")
    cli("run", "--input", str(tmp_path / "missing"), "--output", str(tmp_path / "q.json"),
        "--run-id", "bad")  # fmt: skip
    with RunLogger(job="etl", run_id="etl-1", db=cli.db, tags={"env": "prod"}) as run:
        run.log_event("rows", {"n": 3, "nested": {"unicode": "héllo", "list": [1, 2.5, None]}})
        run.log_metric("rows_loaded", 3, step=1)
        run.log_warning("slow", seconds=12)


def test_copy_to_another_backend_and_back_keeps_history_identical(db, sqlite_db, tmp_path):
    # `db` is the source on either backend; the round trip goes through the other kind.
    source = Cli(db)
    _some_history(source, tmp_path)
    middle = tmp_path / "middle.db"
    result = source("db", "copy", "--to", str(middle))
    assert result.exit_code == 0, result.stderr
    assert "3 runs copied" in result.stdout
    assert "verified: 3 runs" in result.stdout

    back = Cli(sqlite_db)
    result = back("db", "copy", "--from", str(middle))
    assert result.exit_code == 0, result.stderr
    for cli in (Cli(str(middle)), back):
        assert json.loads(cli("history", "--json").stdout) == json.loads(
            source("history", "--json").stdout
        )
        assert json.loads(cli("export", "etl-1").stdout) == json.loads(
            source("export", "etl-1").stdout
        )
        copied = cli.json("metric", "etl", "rows_loaded")
        assert copied == source.json("metric", "etl", "rows_loaded")
        assert copied["values"][0]["step"] == 1
        tagged = json.loads(cli("history", "--tag", "env=prod", "--json").stdout)
        assert [run["run_id"] for run in tagged] == ["etl-1"]


def test_copy_again_skips_and_replaces_a_run_that_changed(db, tmp_path):
    source = Store.open(db)
    target = Store.open(str(tmp_path / "target.db"))
    live = RunLogger(job="long", run_id="live", store=source)
    live.log_event("step", {"i": 1})
    live.flush()
    first = copy_history(source, target)
    assert (first.copied, first.skipped, first.ok) == (1, 0, True)

    live.log_event("step", {"i": 2})
    live.finish()
    second = copy_history(source, target)
    assert (second.copied, second.replaced, second.skipped, second.ok) == (0, 1, 0, True)
    third = copy_history(source, target)
    assert (third.copied, third.replaced, third.skipped) == (0, 0, 1)
    assert event_checksum(source, ["live"]) == event_checksum(target, ["live"])
    assert target.find_run("live")["status"] == "completed"


def test_copy_needs_exactly_one_direction(sqlite_cli):
    result = sqlite_cli("db", "copy")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: give exactly one of --to")


def test_sqlite_history_moves_to_postgresql(sqlite_db, postgres_db, tmp_path):
    source = Cli(sqlite_db)
    _some_history(source, tmp_path)
    result = source("db", "copy", "--to", postgres_db)
    assert result.exit_code == 0, result.stderr
    server = Cli(postgres_db)
    assert server("history", "--json").stdout == source("history", "--json").stdout
    assert json.loads(server("export", "ok").stdout) == json.loads(source("export", "ok").stdout)


def test_a_different_run_with_the_same_id_in_the_target_is_left_alone(db, tmp_path):
    source = str(tmp_path / "source.db")
    with RunLogger(job="A", run_id="dupe", db=source) as run:
        run.log_event("from-A")
    with RunLogger(job="B", run_id="dupe", db=db) as run:
        run.log_error("from-B")
    before = Cli(db)("export", "dupe").stdout
    result = Cli(source)("db", "copy", "--to", db)
    assert result.exit_code == 1
    assert "names a different run in the target" in result.stderr
    assert Cli(db)("export", "dupe").stdout == before
