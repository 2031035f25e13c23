"""Fuzzing the input reader and every command's argument parsing: random bytes as input files,
random command lines for each command. Whatever comes in, no traceback, an exit code that means
something, and the run recorded earlier is still there, unchanged.

Slow: `.ci/run` runs it with a fixed budget (RUNSTORE_FUZZ_EXAMPLES examples per test).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from conftest import SAMPLE_INPUT, Cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.core import TyperGroup, TyperOption

from runstore.cli import app
from runstore.job.textinput import count_items, iter_items, open_input
from runstore.store import engine as engines
from runstore.store.store import Store

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("RUNSTORE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# -- random bytes as input ------------------------------------------------------------------------

LINE_PIECES = [b"item", b"\n", b"\r\n", b"\r", b"#", b" ", b"\t", b"\x00", b"\xff", b"\xc3\xa9",
               b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x1b[31m", b"\x85",
               b"x" * 70_000]  # fmt: skip
inputs = st.one_of(
    st.binary(max_size=2048),
    st.lists(st.sampled_from(LINE_PIECES), max_size=40).map(b"".join),
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, Path]]:
    """One store holding a run, "kept", that nothing below may lose or change."""
    home = tmp_path_factory.mktemp("fuzz")
    cli = Cli(str(home / "store.db"))
    made = cli("run", "--input", str(SAMPLE_INPUT), "--output", str(home / "p.json"),
               "--run-id", "kept")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    # Other names of the store, which random values also try: a symlink, and a directory
    # whose runstore.prom (metrics --textfile DIR) is one.
    os.symlink(home / "store.db", home / "link.db")
    (home / "prom").mkdir()
    os.symlink(home / "store.db", home / "prom" / "runstore.prom")
    yield cli, home
    engines.dispose_all()


def _kept(db: str) -> dict[str, Any]:
    run = Store.open(db).find_run("kept")
    return {key: run[key] for key in ("status", "event_count", "items_total", "finished_at")}


def _no_traceback(result: Any) -> None:
    exception = result.exception
    assert exception is None or isinstance(exception, SystemExit), repr(exception)
    assert "Traceback" not in result.stdout + result.stderr


@FUZZ
@given(data=inputs)
def test_the_reader_counts_what_it_yields_whatever_the_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("in") / "input.txt"
    path.write_bytes(data)
    try:
        f, encoding = open_input(path)
    except Exception as exc:  # only the one clear kind of refusal
        assert type(exc).__name__ == "InputError", repr(exc)
        return
    with f:
        items = list(iter_items(f, encoding))
    assert count_items(path) == len(items)
    for item in items:
        assert (item.text is None) == (item.error is not None)
        assert item.text is None or (item.text == item.text.strip() and item.text)


@FUZZ
@given(data=inputs)
def test_run_takes_any_bytes_as_input(store, data):
    cli, home = store
    before = _kept(cli.db)
    source = home / "random.txt"
    source.write_bytes(data)
    result = cli("run", "--input", str(source), "--output", str(home / "out.json"), "--json")
    _no_traceback(result)
    assert result.exit_code in (0, 1), result.stderr
    if result.exit_code == 1:
        assert result.stderr.startswith("Error: input looks binary"), result.stderr
    assert _kept(cli.db) == before


# -- random command lines -------------------------------------------------------------------------


def _commands(group: typer.Typer) -> dict[str, Any]:
    root = typer.main.get_command(group)
    assert isinstance(root, TyperGroup)
    found: dict[str, Any] = {}
    for name, command in root.commands.items():
        if isinstance(command, TyperGroup):
            found.update({f"{name} {sub}": c for sub, c in command.commands.items()})
        else:
            found[name] = command
    return found


COMMANDS = _commands(app)
SAFE_PROGRAMS = [["true"], ["false"], ["sh", "-c", "exit 3"], ["no-such-program-here"]]


def _values(home: Path, db: str) -> st.SearchStrategy[str]:
    """Option values: the awkward ones people type, files that matter, and random text."""
    awkward = ["", " ", "-", "--", "0", "1", "-1", "3", "1e9", "nan", "inf", "7d", "1h30m",
               "500ms", "99999999999999999999", "2026-11-31", "today", "kept", "k", "a=b", "=",
               "{}", "[]", '{"rows": 1}', "null", "é", "\x1b[2J", "select 1", "failed,running",
               "warning", "../escape", "/dev/null", "/dev/full", db, db + "-wal", db + "-shm",
               str(home / "out.json"), str(home), str(home / "missing" / "x"),
               str(home / "link.db"), str(home / "prom"), str(SAMPLE_INPUT)]  # fmt: skip
    return st.one_of(
        st.sampled_from(awkward), st.text(max_size=12).filter(lambda t: "\x00" not in t)
    )


@st.composite
def command_lines(
    draw: st.DrawFn, home: Path, db: str, names: list[str] | None = None
) -> list[str]:
    name = draw(st.sampled_from(names or sorted(COMMANDS)))
    command = COMMANDS[name]
    values = _values(home, db)
    argv = name.split()
    for param in draw(st.lists(st.sampled_from(command.params), max_size=6)):
        if isinstance(param, TyperOption):
            flag = draw(st.sampled_from(param.opts))
            argv.append(flag)
            if not param.is_flag:
                argv.append(draw(values))
        elif name != "exec":
            argv.append(draw(values))
    if name == "exec":  # the command it runs is always a harmless one
        argv += ["--", *draw(st.sampled_from(SAFE_PROGRAMS))]
    if name == "prune":
        argv.append("--dry-run")  # a prune removes runs on purpose: look, don't touch
    return argv


@pytest.fixture
def fuzzing(store, monkeypatch) -> Iterator[tuple[Cli, Path]]:
    """The store, in its home; `runstore ui` fuzzed up to the point where its server would
    start (serving is tested in test_ui_routes.py and test_ui_browser.py)."""
    cli, home = store
    monkeypatch.chdir(home)  # relative paths in random values land here
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    monkeypatch.setattr("webbrowser.open", lambda *args, **kwargs: True)
    yield cli, home


def _fuzz(cli: Cli, lines: st.SearchStrategy[list[str]], examples: int = EXAMPLES) -> None:
    before = _kept(cli.db)
    exec_codes = {0, 1, 2, 3, 124, 126, 127}

    @settings(FUZZ, max_examples=examples)
    @given(argv=lines)
    def one(argv: list[str]) -> None:
        result = cli(*argv)
        _no_traceback(result)
        allowed = exec_codes if argv[0] == "exec" else {0, 1, 2}
        assert result.exit_code in allowed, (argv, result.exit_code, result.stderr)
        if result.exit_code != 0 and argv[0] != "exec" and not _check_answered(argv, result):
            assert result.stderr.startswith("Error: "), (argv, result.stderr)
        assert _kept(cli.db) == before, argv

    one()


def _check_answered(argv: list[str], result: Any) -> bool:
    """`check --json` exiting 1: its answer (not healthy), said in JSON on stdout, not an error."""
    return (
        argv[0] == "check"
        and result.exit_code == 1
        and result.stderr == ""
        and result.stdout.lstrip().startswith(("{", "["))
    )


def test_random_command_lines_never_trace_back_nor_lose_a_run(fuzzing):
    cli, home = fuzzing
    _fuzz(cli, command_lines(home, cli.db))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_fuzzed(fuzzing, name):
    """Each command on its own, a few examples, so that none is left to chance (a new command
    is picked up by itself)."""
    cli, home = fuzzing
    _fuzz(cli, command_lines(home, cli.db, [name]), examples=max(5, EXAMPLES // 20))
