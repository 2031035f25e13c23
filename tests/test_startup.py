"""Start-up: a command loads only what it uses, and the shortcuts that make it so change nothing
a user can see."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runstore.cli import app
from runstore.cli._startup import COMMAND_MODULES, app_for, command_name
from runstore.store.store import Store

# Runs the command line as `runstore` would, then reports the modules it loaded.
PROBE = """
import atexit, json, os, sys
def report(): print(json.dumps(sorted(sys.modules)), file=sys.stderr, flush=True)
atexit.register(report)
_exit = os._exit  # recording commands leave this way, without atexit
os._exit = lambda code: (report(), _exit(code))
sys.argv = ["runstore", *sys.argv[1:]]
from runstore.cli import main
main()
"""


def loaded_modules(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def packages(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_version_loads_no_database_machinery() -> None:
    loaded = packages(loaded_modules("--version"))
    assert not loaded & {"sqlalchemy", "alembic", "sqlite3", "psycopg", "rich", "pydantic"}


def test_help_loads_no_database_machinery() -> None:
    loaded = packages(loaded_modules("--help"))
    assert not loaded & {"sqlalchemy", "alembic", "sqlite3", "psycopg"}


def test_history_piped_loads_no_alembic_psycopg_rich_or_pydantic(tmp_path: Path) -> None:
    db = str(tmp_path / "store.db")
    loaded_modules("db", "upgrade", "--db", db)  # creating the store loads Alembic
    modules = loaded_modules("history", "--limit", "20", "--db", db)
    loaded = packages(modules)
    assert "sqlalchemy" in loaded
    assert not loaded & {"alembic", "psycopg", "rich", "pydantic", "cronsim", "prometheus_client",
                         "apprise", "starlette", "jinja2", "uvicorn"}  # fmt: skip
    assert "sqlalchemy.dialects.postgresql" not in modules
    assert not any(name.startswith("runstore.health") for name in modules)


def test_recording_a_job_without_expectations_loads_nothing_of_health(tmp_path: Path) -> None:
    db = str(tmp_path / "store.db")
    loaded_modules("db", "upgrade", "--db", db)
    modules = loaded_modules("exec", "--db", db, "--", "true")
    assert not packages(modules) & {"cronsim", "prometheus_client", "apprise", "alembic",
                                    "starlette", "jinja2", "uvicorn"}  # fmt: skip
    assert {m for m in modules if m.startswith("runstore.health")} == {"runstore.health"}
    metrics = packages(loaded_modules("metrics", "--db", db))
    assert "prometheus_client" in metrics and "apprise" not in metrics


def test_each_command_is_found_where_the_shortcut_says() -> None:
    for info in app.registered_commands:
        name = command_name(info)
        assert info.callback is not None
        module = info.callback.__module__.rsplit(".", 1)[-1]
        assert COMMAND_MODULES.get(name) == module, (
            f"COMMAND_MODULES[{name!r}] should be {module!r}"
        )


@pytest.mark.parametrize(
    ("args", "commands"),
    [
        (["history", "--limit", "5"], ["history"]),
        (["-h", "run", "--input", "x"], ["run"]),
        (["--version"], []),
    ],
)
def test_a_command_line_builds_only_its_command(args: list[str], commands: list[str]) -> None:
    pruned = app_for(args)
    assert [command_name(info) for info in pruned.registered_commands] == commands
    assert pruned.registered_groups == []


@pytest.mark.parametrize("args", [[], ["--help"], ["--version", "-h"], ["db", "path"], ["histroy"]])
def test_anything_else_gets_the_whole_app(args: list[str]) -> None:
    assert app_for(args) is app


def test_option_values_are_checked_in_plain_words(sqlite_db: str) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["history", "--limit", "abc", "--db", sqlite_db])
    assert bad.exit_code == 2
    assert "'abc' is not a whole number" in bad.output
    negative = runner.invoke(app, ["history", "--limit", "-1", "--db", sqlite_db])
    assert negative.exit_code == 2
    assert "-1 is less than 0" in negative.output
    level = runner.invoke(app, ["event", "x", "--level", "fatal"])
    assert "'fatal' is not one of debug, info, warning, error" in level.output
    for result in (bad, negative, level):
        assert "Input should be" not in result.output and "Value error" not in result.output
    Store.open(sqlite_db)  # a store to ask
    good = runner.invoke(
        app, ["history", "--limit", "007", "--job", "a", "--json", "--db", sqlite_db]
    )
    assert good.exit_code == 0, good.output
    assert json.loads(good.output) == []


def test_the_schema_keeps_the_partial_index_on_both_databases() -> None:
    # The PostgreSQL half of ix_runs_running is attached when `metadata` is asked for.
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.schema import CreateIndex

    from runstore.store.schema import metadata

    index = next(i for i in metadata.tables["runs"].indexes if i.name == "ix_runs_running")
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        ddl = str(CreateIndex(index).compile(dialect=dialect))
        assert ddl.endswith("WHERE status = 'running'"), ddl


def test_the_collector_pauses_for_start_up_only() -> None:
    code = (
        "import gc, time\n"
        "from runstore.cli._startup import pause_gc_during_start_up\n"
        "pause_gc_during_start_up(0.05)\n"
        "paused = not gc.isenabled()\n"
        "time.sleep(0.5)\n"
        "print(paused, gc.isenabled())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "True"], done.stderr
