"""The README cannot fall behind the code: every command is documented and has help text, and the
README's example queries run against a real store."""

from __future__ import annotations

import re

import pytest
import typer
from conftest import REPO, SAMPLE_INPUT, Cli, reader_url

from runstore.cli import app
from runstore.record.logger import RunLogger

README = (REPO / "README.md").read_text(encoding="utf-8")


def _sql_examples() -> list[dict[str, str]]:
    """Each README example query, by backend: a ```sql block is both's; a ```sql sqlite block
    is followed by its ```sql postgresql spelling."""
    examples: list[dict[str, str]] = []
    for dialect, text in re.findall(r"```sql( sqlite| postgresql)?\n(.*?)```", README, re.DOTALL):
        if dialect == " postgresql":
            assert examples and "postgresql" not in examples[-1], "a PostgreSQL block alone"
            examples[-1]["postgresql"] = text
        else:
            examples.append({"sqlite": text, **({} if dialect else {"postgresql": text})})
    assert all(len(e) == 2 for e in examples), "an SQLite-only example needs its PostgreSQL twin"
    return examples


SQL_EXAMPLES = _sql_examples()


def _commands(group: typer.Typer, prefix: str = "") -> list[tuple[str, object]]:
    found = [
        (prefix + (c.name or c.callback.__name__), c.callback) for c in group.registered_commands
    ]
    for sub in group.registered_groups:
        found += _commands(sub.typer_instance, f"{prefix}{sub.name} ")
    return found


@pytest.mark.parametrize(("name", "callback"), _commands(app))
def test_every_command_has_help_and_is_in_the_readme(name, callback):
    assert callback.__doc__ and callback.__doc__.strip(), f"{name} has no help text"
    assert f"runstore {name}" in README, f"`runstore {name}` is missing from README.md"


def test_readme_has_at_least_five_example_queries():
    assert len(SQL_EXAMPLES) >= 5


@pytest.mark.parametrize(
    "example", SQL_EXAMPLES, ids=lambda e: e["sqlite"].strip().splitlines()[0][:40]
)
def test_readme_example_query_runs_on_both_backends(cli, tmp_path, example):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good line\n\xff\xfe broken\n")
    for i, source in enumerate((SAMPLE_INPUT, bad, tmp_path / "missing.txt")):
        cli("run", "--input", str(source), "--output", str(tmp_path / f"p{i}.json"))
    with RunLogger(job="nightly", db=cli.db) as run:
        run.log_warning("slow source")
    server = "://" in cli.db
    reader = Cli(reader_url(cli.db))  # as the README says to ask a server: a read-only role
    result = reader("sql", example["postgresql" if server else "sqlite"], "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("[")
    assert result.stdout.strip() != "[]", "each example should find something in this store"


def test_the_readme_draws_the_packages_that_exist():
    layout = README.split("## How the code is laid out", 1)[1].split("```")[1]
    lines = layout.splitlines()
    package = REPO / "runstore"
    packages = sorted(p for p in package.iterdir() if (p / "__init__.py").is_file())
    drawn = {
        line.split()[0] for line in lines if line.startswith("  ") and line.split()[0].endswith("/")
    }
    assert drawn == {f"{p.name}/" for p in packages}, "the README's packages differ from the tree"
    for sub in packages:
        line = next(line for line in lines if line.strip().startswith(f"{sub.name}/"))
        if sub.name == "cli":  # its modules are named after the commands
            continue
        modules = {p.stem for p in sub.glob("*.py") if not p.stem.startswith("_")}
        missing = {m for m in modules if not re.search(rf"\b{m}\b", line)}
        assert not missing, f"{sub.name}/ modules missing from the README's layout: {missing}"
    top = {p.name for p in package.glob("*.py")} - {"__init__.py", "__main__.py"}
    assert top <= set(re.findall(r"\b\w+\.py\b", layout)), "a top-level module is not drawn"


def test_make_demo_says_where_the_store_is(tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "data").mkdir()
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    shutil.copy(REPO / "data" / "sample_input.txt", tmp_path / "data" / "sample_input.txt")
    store = tmp_path / "demo.db"
    done = subprocess.run(
        ["make", "-s", "demo", f"BIN={Path(sys.executable).parent}", "STAMP="],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "RUNSTORE_DB": str(store)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"The run is stored in {store} " in done.stdout
    assert store.is_file()


def _every_command_line() -> list[list[str]]:
    group = typer.main.get_command(app)
    lines = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        subs = getattr(command, "commands", None)
        lines += [[name, sub] for sub in subs] if subs else [[name]]
    return lines


@pytest.mark.parametrize("words", _every_command_line(), ids=" ".join)
def test_help_reads_like_a_person_wrote_it(words):
    from typer.testing import CliRunner

    shown = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "100"}).output
    for machine_talk in ("<bool>", "<str>", "<int", "<list[", "<path>", "{CMD}", "<=x<=", "x>="):
        assert machine_talk not in shown, (words, machine_talk)
    assert "Usage: runstore " + " ".join(words) in shown


def test_dash_n_means_limit_and_nothing_else():
    group = typer.main.get_command(app)
    users = set()
    for words in _every_command_line():
        command = group
        for word in words:
            command = command.commands[word]  # type: ignore[attr-defined]
        for param in command.params:
            if "-n" in getattr(param, "opts", ()):
                users.add((" ".join(words), param.name))
    assert users == {("history", "limit"), ("metric", "limit")}


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("--bogus", "No such option: --bogus (see"),  # nothing close: no suggestion
        ("--limt", "No such option: --limt. Did you mean --limit? (see"),
        ("--jsn", "No such option: --jsn. Did you mean --json or --jsonl? (see"),
    ],
)
def test_did_you_mean_only_when_close(typed, said):
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["history", typed])
    assert result.exit_code == 2 and said in result.stderr


def test_db_may_come_before_the_command(tmp_path):
    import subprocess
    import sys

    store = tmp_path / "before.db"
    with RunLogger(job="j", run_id="r1", db=store):
        pass
    done = subprocess.run(
        [sys.executable, "-m", "runstore", "--db", str(store), "history", "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"run_id": "r1"' in done.stdout
    sub = subprocess.run(
        [sys.executable, "-m", "runstore", f"--db={store}", "db", "check", "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert sub.returncode == 0, sub.stderr


RICHER_RUNS = README.split("### Tags, metrics, search, following a run, retries", 1)[1].split(
    "\n## ", 1
)[0]


def test_the_richer_runs_examples_run_as_written(db, tmp_path):
    """Every shell example of the section, in order, in one store, as a user pastes them."""
    import os
    import subprocess
    import sys

    blocks = re.findall(r"```sh\n(.*?)```", RICHER_RUNS, re.DOTALL)
    assert len(blocks) == 5
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "RUNSTORE_DB": db, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    said = []
    for block in blocks:
        done = subprocess.run(["bash", "-e", "-c", block + "\nwait\n"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, (block, done.stdout, done.stderr)
        said.append(done.stdout)
    tags, metrics, search, follow, retries = said
    loaded, _, history, row, stats_header, stats = tags.splitlines()
    assert loaded == "loaded" and history.split()[:2] == ["RUN", "JOB"]
    assert row.split()[1] == "nightly-etl"  # the prod run only
    assert stats_header.split()[:2] == ["JOB", "RUNS"] and stats.split()[:2] == ["nightly-etl", "1"]
    assert [line.split()[0] for line in metrics.splitlines()[1:4]] == [
        "bytes",
        "lag_s",
        "rows_loaded",
    ]
    assert '"last": 120' in metrics
    read, indexed = search.split("search index on in")
    assert read.count("sync") == 1 and indexed.count("sync") == 1 and "failed" in indexed
    assert follow.splitlines() == ["step 1", "step 2", "step 3"]
    assert "attempt 1 of 4 failed (exit code 75)" in retries
