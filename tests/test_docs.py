"""The README cannot fall behind the code: every command is documented and has help text, and the
README's example queries run against a real store."""

from __future__ import annotations

import re

import pytest
import typer
from conftest import REPO, SAMPLE_INPUT

from runstore.cli import app
from runstore.record.logger import RunLogger

README = (REPO / "README.md").read_text(encoding="utf-8")
SQL_EXAMPLES = re.findall(r"```sql\n(.*?)```", README, flags=re.DOTALL)


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


@pytest.mark.parametrize("query", SQL_EXAMPLES, ids=lambda q: q.strip().splitlines()[0][:40])
def test_readme_example_query_runs(sqlite_cli, tmp_path, query):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good line\n\xff\xfe broken\n")
    for i, source in enumerate((SAMPLE_INPUT, bad, tmp_path / "missing.txt")):
        sqlite_cli("run", "--input", str(source), "--output", str(tmp_path / f"p{i}.json"))
    with RunLogger(job="nightly", db=sqlite_cli.db) as run:
        run.log_warning("slow source")
    result = sqlite_cli("sql", query, "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("[")
    assert result.stdout.strip() != "[]", "each example should find something in this store"
