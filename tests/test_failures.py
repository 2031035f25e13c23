"""The failure table of the README, one test per row: one clear line on stderr, a non-zero exit,
nothing already recorded lost, no file left half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REPO, SAMPLE_INPUT, Cli
from sqlalchemy import event

from runstore.store import engine as engines
from runstore.store.location import resolve_db
from runstore.store.store import Store

NOBODY = 65534


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def _run(cli, tmp_path, source, *extra: str, run_id: str = "r1"):
    return cli(
        "run", "--input", str(source), "--output", str(tmp_path / "out" / "p.json"),
        "--log", str(tmp_path / "out" / "l.json"), "--run-id", run_id, *extra,
    )  # fmt: skip


@pytest.fixture
def out(tmp_path: Path) -> Path:
    (tmp_path / "out").mkdir()
    return tmp_path / "out"


def _status(db: str, run_id: str) -> str:
    return Store.open(db).find_run(run_id)["status"]


def _no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith((".tmp", ".probe"))]


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda d: d / "missing.txt", "input file not found"),
        (lambda d: d, "input is a directory, not a file"),
        (lambda d: (d / "b.bin").write_bytes(b"PK\x03\x04\x00\x00binary") and d / "b.bin",
         "input looks binary, not text (NUL byte at offset 4)"),
    ],
    ids=["missing input", "directory as input", "binary input"],
)  # fmt: skip
def test_unusable_input_fails_the_run_and_records_it(
    sqlite_cli, tmp_path, out, make_input, message
):
    source = make_input(tmp_path)
    result = _run(sqlite_cli, tmp_path, source)
    assert result.exit_code == 1
    line = _error_line(result)
    assert message in line and str(source) in line
    assert _status(sqlite_cli.db, "r1") == "failed"
    log = json.loads((out / "l.json").read_text())
    assert log["status"] == "failed" and log["error_count"] == 1
    assert not (out / "p.json").exists() and _no_temp_files(out)


def test_undecodable_and_overlong_lines_fail_as_items_and_the_run_goes_on(
    sqlite_cli, tmp_path, out
):
    source = tmp_path / "mixed.txt"
    source.write_bytes(b"good\ncaf\xe9 latin-1\n" + b"x" * (10 * 1024 * 1024) + b"\nlast\n")
    result = _run(sqlite_cli, tmp_path, source, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed"
    assert summary["items"] == {"total": 4, "ok": 2, "failed": 2}
    records = json.loads((out / "p.json").read_text())
    assert [r["processed"] for r in records] == [True, False, False, True]
    assert "not valid UTF-8" in records[1]["error"]
    assert "line too long" in records[2]["error"]
    assert len(records[2]["item"]) <= 80  # a preview, not 10 MB


@pytest.mark.parametrize("which", ["--output", "--log"])
def test_output_in_a_missing_directory_fails_the_run_but_records_it(sqlite_cli, tmp_path, which):
    paths = {"--output": tmp_path / "p.json", "--log": tmp_path / "l.json"}
    paths[which] = tmp_path / "nowhere" / "file.json"
    result = sqlite_cli(
        "run", "--input", str(SAMPLE_INPUT), "--output", str(paths["--output"]),
        "--log", str(paths["--log"]), "--run-id", "r1",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "does not exist" in _error_line(result)
    assert _status(sqlite_cli.db, "r1") == "failed"
    assert not paths["--output"].exists()


def test_store_that_is_not_a_database_is_left_untouched(tmp_path):
    from conftest import Cli

    fake = tmp_path / "notes.db"
    fake.write_bytes(b"these are my notes, not a database\n" * 100)
    before = fake.read_bytes()
    result = Cli(str(fake))("history")
    assert result.exit_code == 1
    assert "cannot be opened as a runstore store" in _error_line(result)
    assert fake.read_bytes() == before


def test_store_newer_than_the_code_is_refused(sqlite_cli):
    assert sqlite_cli("db", "upgrade", "--quiet").exit_code == 0
    with sqlite3.connect(sqlite_cli.db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    result = sqlite_cli("history")
    assert result.exit_code == 1
    assert "schema revision 9999, newer than this runstore" in _error_line(result)


def test_duplicate_run_id_is_a_usage_error_and_the_first_run_stays(sqlite_cli, tmp_path, out):
    assert _run(sqlite_cli, tmp_path, SAMPLE_INPUT).exit_code == 0
    first = Store.open(sqlite_cli.db).find_run("r1")
    result = _run(sqlite_cli, tmp_path, SAMPLE_INPUT)
    assert result.exit_code == 2
    assert "already exists" in _error_line(result)
    assert Store.open(sqlite_cli.db).find_run("r1") == first


@pytest.mark.parametrize(
    "args",
    [["history", "--since", "last tuesday"], ["history", "--min-duration", "fast"],
     ["sql", "select 1", "--timeout", "soon"], ["check", "job", "--max-age", "old"]],
    ids=["--since", "--min-duration", "sql --timeout", "check --max-age"],
)  # fmt: skip
def test_malformed_time_values_are_usage_errors(sqlite_cli, args):
    result = sqlite_cli(*args)
    assert result.exit_code == 2
    assert "expected" in _error_line(result)


def test_unknown_run_id(sqlite_cli):
    assert sqlite_cli("db", "upgrade", "--quiet").exit_code == 0
    result = sqlite_cli("show", "no-such-run")
    assert result.exit_code == 1
    assert _error_line(result) == "Error: no run matches 'no-such-run'"


def test_full_disk_fails_clearly_and_keeps_what_was_recorded(sqlite_cli, tmp_path, out):
    assert _run(sqlite_cli, tmp_path, SAMPLE_INPUT, run_id="before").exit_code == 0
    big = tmp_path / "big.txt"
    big.write_text("".join(f"item number {i} with some padding text\n" for i in range(50_000)))
    engines.dispose_all()
    engine = engines.get_engine(resolve_db(sqlite_cli.db))
    with sqlite3.connect(sqlite_cli.db) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]

    @event.listens_for(engine, "connect")
    def _small_disk(dbapi_connection, _record):  # SQLite's own "database or disk is full"
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + 40}")

    result = _run(sqlite_cli, tmp_path, big, run_id="during")
    assert result.exit_code == 1
    assert "database or disk is full" in _error_line(result)
    engines.dispose_all()
    assert _status(sqlite_cli.db, "before") == "completed"
    # the earlier run's output is still whole: the failed run replaced nothing
    assert len(json.loads((out / "p.json").read_text())) == 9
    assert _no_temp_files(out)


# -- as an unprivileged user: root may write anywhere, so permissions are tested as nobody --------


def _as_nobody() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot test permissions as another user")
    prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import runstore"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("the unprivileged user cannot run this Python here")
    return prefix


@pytest.fixture
def shared_dir():
    path = Path(tempfile.mkdtemp(prefix="runstore-perm-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _runstore(prefix: list[str], *args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNSTORE_DB": str(db), "PYTHONPATH": str(REPO)}
    return subprocess.run([*prefix, sys.executable, "-m", "runstore", *args],
                          capture_output=True, text=True, env=env)  # fmt: skip


def test_unreadable_input_and_read_only_output_directory(shared_dir):
    prefix = _as_nobody()
    db = shared_dir / "store.db"
    secret = shared_dir / "secret.txt"
    secret.write_text("a\nb\n")
    secret.chmod(0o000)
    result = _runstore(prefix, "run", "--input", str(secret), "--output",
                       str(shared_dir / "p.json"), "--run-id", "u1", db=db)  # fmt: skip
    assert result.returncode == 1
    assert "not readable (permission denied)" in _error_line(result)

    locked = shared_dir / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    result = _runstore(prefix, "run", "--input", str(SAMPLE_INPUT), "--output",
                       str(locked / "p.json"), "--run-id", "u2", db=db)  # fmt: skip
    assert result.returncode == 1
    assert "Permission denied" in _error_line(result)
    history = _runstore(prefix, "history", "--json", db=db)
    assert {r["run_id"]: r["status"] for r in json.loads(history.stdout)} == {
        "u1": "failed",
        "u2": "failed",
    }


def test_read_only_store_is_readable_and_a_new_run_fails_clearly(shared_dir, tmp_path):
    prefix = _as_nobody()
    store_dir = shared_dir / "ro"
    store_dir.mkdir()
    db = store_dir / "store.db"
    made = _runstore([], "run", "--input", str(SAMPLE_INPUT), "--output",
                     str(tmp_path / "p.json"), "--run-id", "kept", db=db)  # fmt: skip
    assert made.returncode == 0, made.stderr
    if prefix:
        db.chmod(0o644)  # owned by root: readable, not writable, for nobody
        store_dir.chmod(0o755)
    else:
        db.chmod(0o444)
        store_dir.chmod(0o555)
    try:
        history = _runstore(prefix, "history", "--json", db=db)
        assert history.returncode == 0, history.stderr
        assert [r["run_id"] for r in json.loads(history.stdout)] == ["kept"]
        count = _runstore(prefix, "sql", "select count(*) as n from runs", "--json", db=db)
        assert json.loads(count.stdout) == [{"n": 1}]
        for look in (["db", "current"], ["db", "check"]):  # these change nothing either
            looked = _runstore(prefix, *look, db=db)
            assert looked.returncode == 0, looked.stderr
        result = _runstore(prefix, "run", "--input", str(SAMPLE_INPUT), "--output",
                           str(shared_dir / "p.json"), "--run-id", "new", db=db)  # fmt: skip
        assert result.returncode == 1
        assert "read-only" in _error_line(result)
    finally:
        store_dir.chmod(0o755)
        db.chmod(0o644)
    store = Store.open(db)
    assert store.find_run("kept")["status"] == "completed"
    assert store.count_runs() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["history", "--limit", "abc"], "Invalid value for '--limit'"),
        (["history", "--bogus"], "No such option: --bogus"),
        (["bogus"], "No such command 'bogus'"),
        (["check"], "give a job, or --all"),
        (["history", "--since", "99999999999d"], "too long"),
        (["history", "--limit", "99999999999999999999"], "Invalid value for '--limit'"),
        (["exec", "--tail-lines", "99999999999999999999", "--", "true"], "--tail-lines"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_too(sqlite_cli, args, message):
    result = sqlite_cli(*args)
    assert result.exit_code == 2
    assert message in _error_line(result)


@pytest.mark.parametrize("clash", ["output-is-input", "log-is-output"])
def test_a_run_never_writes_over_its_input_or_its_own_output(sqlite_cli, tmp_path, clash):
    source = tmp_path / "in.txt"
    source.write_text("a\nb\n")
    out = source if clash == "output-is-input" else tmp_path / "p.json"
    log = out if clash == "log-is-output" else tmp_path / "l.json"
    result = sqlite_cli("run", "--input", str(source), "--output", str(out), "--log", str(log))
    assert result.exit_code == 2
    assert "name the same file" in _error_line(result)
    assert source.read_text() == "a\nb\n"
    assert Store.open(sqlite_cli.db).count_runs() == 0


def test_an_unsupported_store_url_says_what_is_supported(tmp_path):
    from conftest import Cli

    result = Cli("mysql://user:secret@db.example/runs")("history")
    assert result.exit_code == 1
    line = _error_line(result)
    assert "postgresql+psycopg://" in line and "secret" not in line


def test_copy_from_a_missing_store_creates_nothing(sqlite_cli, tmp_path):
    typo = tmp_path / "typo.db"
    result = sqlite_cli("db", "copy", "--from", str(typo))
    assert result.exit_code == 1
    assert "no runstore store" in _error_line(result)
    assert not typo.exists()


# -- round three: the smaller ones ----------------------------------------------------------------


def test_an_unreadable_store_says_so(shared_dir):
    prefix = _as_nobody()
    if not prefix:
        pytest.skip("only root can make a file this test's user cannot read")
    db = shared_dir / "store.db"
    made = _runstore([], "run", "--input", str(SAMPLE_INPUT), "--output",
                     str(shared_dir / "p.json"), db=db)  # fmt: skip
    assert made.returncode == 0, made.stderr
    db.chmod(0o600)  # root's alone
    result = _runstore(prefix, "history", db=db)
    assert result.returncode == 1
    assert _error_line(result) == f"Error: cannot read the store {db}: Permission denied"


def test_a_store_path_under_a_file_says_so(sqlite_cli, tmp_path):
    from conftest import Cli

    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    for args in (
        ["history"],
        ["run", "--input", str(SAMPLE_INPUT), "--output", str(tmp_path / "p")],
    ):
        result = Cli(str(afile / "store.db"))(*args)
        assert result.exit_code == 1
        assert (
            _error_line(result) == f"Error: cannot open the store {afile}/store.db: Not a directory"
        )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+psycopg://u:pw@localhost:99999/x",
         "the store URL postgresql+psycopg://u:***@localhost:99999/x has port 99999"),
        ("postgresql+psycopg://u@localhost:abc/x",
         "cannot read the store URL postgresql+psycopg://u@localhost:abc/x: a port must be"),
    ],
)  # fmt: skip
def test_a_bad_port_in_a_store_url_is_a_usage_error(url, message):
    from conftest import Cli

    result = Cli(url)("history")
    assert result.exit_code == 2
    assert message in _error_line(result)


@pytest.fixture
def full_disk(tmp_path):
    """A small filesystem of its own, to be filled to the last byte."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_at_zero_bytes_free_an_intact_store_can_still_be_read(full_disk, tmp_path):
    from conftest import Cli

    cli = Cli(str(full_disk / "store.db"))
    made = cli("run", "--input", str(SAMPLE_INPUT), "--output", str(tmp_path / "p.json"),
               "--run-id", "kept")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    engines.dispose_all()
    with open(full_disk / "fill", "wb") as fill, contextlib.suppress(OSError):
        while True:
            fill.write(b"\0" * 65536)
    assert os.statvfs(full_disk).f_bavail == 0
    reads = [
        ["history"],
        ["show", "kept"],
        ["stats"],
        ["check", "process-lines"],
        ["export", "kept"],
        ["db", "check"],
        ["sql", "select count(*) as n from runs"],
    ]
    for args in reads:
        result = cli(*args)
        assert result.exit_code == 0, (args, result.stderr)
    assert json.loads(cli("sql", "select run_id from runs", "--json").stdout) == [
        {"run_id": "kept"}
    ]
    result = cli("run", "--input", str(SAMPLE_INPUT), "--output", str(tmp_path / "p2.json"))
    assert result.exit_code == 1
    assert "the disk holding it is full" in _error_line(result)


def test_sql_may_use_table_valued_pragmas(sqlite_cli):
    assert sqlite_cli("db", "upgrade", "--quiet").exit_code == 0
    result = sqlite_cli("sql", "select name from pragma_table_info('runs') limit 2", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [{"name": "id"}, {"name": "run_id"}]


@pytest.mark.parametrize(
    "args",
    [["history"], ["show", "--last"], ["logs", "--last"], ["stats"], ["check", "nightly"],
     ["export", "--jsonl"], ["sql", "select 1"], ["db", "check"], ["prune", "--older-than", "7d"],
     ["reap"]],
    ids=lambda args: " ".join(args),
)  # fmt: skip
def test_a_read_command_never_creates_a_store(tmp_path, args):
    missing = tmp_path / "typo" / "stor.db"
    result = Cli(str(missing))(*args)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: no runstore store at {missing} (a store is created by the first recorded run; "
        "check --db / RUNSTORE_DB)\n"
    )
    assert not missing.exists() and not missing.parent.exists()
    beside = tmp_path / "stor.db"  # in a directory that exists: still nothing created
    assert Cli(str(beside))(*args).exit_code == 1 and not beside.exists()
