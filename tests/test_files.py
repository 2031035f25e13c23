"""Where outputs go: never over the store or the input (by identity, whatever the spelling),
devices and FIFOs written in place, ``-`` for standard output, a failed write a failed run."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO, SAMPLE_INPUT, Cli, error_line, file_digest

from runstore.store.store import Store


@pytest.fixture
def kept(sqlite_cli: Cli, tmp_path: Path) -> Cli:
    """A store that already holds one run, "kept", which no mistake below may lose."""
    made = sqlite_cli("run", "--input", str(SAMPLE_INPUT), "--output", str(tmp_path / "p.json"),
                      "--run-id", "kept")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    Store.open(sqlite_cli.db).engine.dispose()
    return sqlite_cli


def _spellings(tmp_path: Path, store: Path) -> dict[str, str]:
    """Ways to name the store file other than its own name."""
    (tmp_path / "sub").mkdir(exist_ok=True)
    os.symlink(store, tmp_path / "link.db")
    os.link(store, tmp_path / "hard.db")
    return {
        "plain": str(store),
        "dot-slash": f"{store.parent}/./{store.name}",
        "dot-dot": f"{store.parent}/sub/../{store.name}",
        "symlink": str(tmp_path / "link.db"),
        "hard link": str(tmp_path / "hard.db"),
    }


COMMANDS = {
    "run --log": lambda out, tmp: ["run", "--input", str(SAMPLE_INPUT), "--output",
                                   str(tmp / "p2.json"), "--log", out],
    "run --output": lambda out, tmp: ["run", "--input", str(SAMPLE_INPUT), "--output", out],
    "exec --log": lambda out, tmp: ["exec", "--log", out, "--", "touch", str(tmp / "ran")],
    "export -o": lambda out, tmp: ["export", "kept", "-o", out],
    "db backup": lambda out, tmp: ["db", "backup", out, "--force"],
}  # fmt: skip


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("spelling", ["plain", "dot-slash", "dot-dot", "symlink", "hard link"])
def test_no_output_lands_on_the_store(kept, tmp_path, command, spelling):
    store = Path(kept.db)
    target = _spellings(tmp_path, store)[spelling]
    before = file_digest(store)
    result = kept(*COMMANDS[command](target, tmp_path))
    assert result.exit_code == 2
    option = {"export -o": "--output", "db backup": "FILE"}.get(command, command.split()[-1])
    assert error_line(result) == f"Error: {option} names the store itself: {Path(target)}"
    assert file_digest(store) == before
    assert not (tmp_path / "ran").exists()  # exec: the command did not run
    assert Store.open(kept.db).find_run("kept")["status"] == "completed"


@pytest.mark.parametrize("companion", ["-wal", "-shm", "-journal"])
def test_no_output_lands_on_the_stores_companion_files(kept, tmp_path, companion):
    target = kept.db + companion  # whether or not that file exists right now
    result = kept("run", "--input", str(SAMPLE_INPUT), "--output", target)
    assert result.exit_code == 2
    assert error_line(result) == f"Error: --output names the store's {companion[1:]} file: {target}"
    assert Store.open(kept.db).count_runs() == 1


def test_a_store_reached_through_a_symlink_guards_its_real_companions(sqlite_cli, tmp_path):
    # SQLite names the WAL after the file the link leads to, not after the link.
    real = Path(sqlite_cli.db)
    made = sqlite_cli("run", "--input", str(SAMPLE_INPUT), "--output", str(tmp_path / "p.json"),
                      "--run-id", "kept")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    link = tmp_path / "link.db"
    os.symlink(real, link)
    target = f"{real}-wal"
    done = _runstore("run", "--input", str(SAMPLE_INPUT), "--output", str(tmp_path / "q.json"),
                     "--log", target, db=str(link))  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.decode().strip() == f"Error: --log names the store's wal file: {target}"
    assert Store.open(str(link)).find_run("kept")["status"] == "completed"


def test_the_metrics_textfile_never_lands_on_the_store(kept, tmp_path):
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    os.symlink(kept.db, textfiles / "runstore.prom")
    before = file_digest(Path(kept.db))
    result = kept("metrics", "--textfile", str(textfiles))
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: --textfile names the store itself: {textfiles / 'runstore.prom'}"
    )
    assert file_digest(Path(kept.db)) == before


def test_an_auth_file_is_never_the_store_nor_any_file_but_an_auth_file(kept, tmp_path):
    before = file_digest(Path(kept.db))
    added = kept("ui", "--add-user", "ann", "--auth-file", kept.db, input="correct horse\n")
    assert added.exit_code == 2
    assert error_line(added) == f"Error: --auth-file names the store itself: {kept.db}"
    assert file_digest(Path(kept.db)) == before
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    added = kept("ui", "--add-user", "ann", "--auth-file", str(notes), input="correct horse\n")
    assert added.exit_code == 2
    assert "is not user:" in error_line(added)
    assert notes.read_text() == "my notes\n"


def test_a_hard_link_to_the_input_is_the_input(sqlite_cli, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("a\nb\n")
    os.link(source, tmp_path / "alias.txt")
    result = sqlite_cli("run", "--input", str(source), "--output", str(tmp_path / "alias.txt"))
    assert result.exit_code == 2
    assert (
        error_line(result)
        == f"Error: --input and --output name the same file: {tmp_path}/alias.txt"
    )
    assert source.read_text() == "a\nb\n"
    assert Store.open(sqlite_cli.db).count_runs() == 0


def test_the_library_refuses_a_log_over_its_store(sqlite_db):
    from runstore.errors import UsageError
    from runstore.record.logger import RunLogger

    with pytest.raises(UsageError, match="log_path names the store itself"):
        RunLogger(job="j", db=sqlite_db, log_path=sqlite_db)


# -- devices, FIFOs, symlinks ---------------------------------------------------------------------


def _is_device(path: str) -> bool:
    return stat.S_ISCHR(os.stat(path).st_mode)


@pytest.mark.parametrize("which", ["--output", "--log"])
def test_a_full_device_fails_the_run_and_stays_a_device(cli, tmp_path, which):
    # On both backends: the run is recorded failed, whichever store holds it.
    paths = {"--output": str(tmp_path / "p.json"), "--log": str(tmp_path / "l.json")}
    paths[which] = "/dev/full"
    result = cli("run", "--input", str(SAMPLE_INPUT), "--output", paths["--output"],
                 "--log", paths["--log"], "--run-id", "full")  # fmt: skip
    assert result.exit_code == 1
    assert error_line(result) == "Error: cannot write /dev/full: No space left on device"
    run = Store.open(cli.db).find_run("full")
    assert run["status"] == "failed"
    assert run["error_summary"] == "cannot write /dev/full: No space left on device"
    assert _is_device("/dev/full")


def test_exec_log_to_a_full_device_keeps_the_commands_exit_code(cli):
    result = cli("exec", "--log", "/dev/full", "--run-id", "full", "--", "true")
    assert result.exit_code == 0  # the command's own: recording never changes it
    assert result.stderr.strip() == (
        "Warning: cannot write /dev/full: No space left on device; the run is recorded in the "
        "store only"
    )
    assert Store.open(cli.db).find_run("full")["status"] == "completed"
    assert _is_device("/dev/full")


def test_a_backup_to_a_full_device_is_one_error(kept):
    result = kept("db", "backup", "/dev/full", "--force")
    assert result.exit_code == 1
    assert error_line(result) == "Error: cannot write /dev/full: No space left on device"
    assert _is_device("/dev/full")


def test_export_to_a_full_device_is_one_error(kept):
    result = kept("export", "kept", "-o", "/dev/full")
    assert result.exit_code == 1
    assert error_line(result) == "Error: cannot write /dev/full: No space left on device"
    assert _is_device("/dev/full")


def test_dev_null_takes_every_output_and_stays_a_device(cli):
    result = cli("run", "--input", str(SAMPLE_INPUT), "--output", "/dev/null",
                 "--log", "/dev/null", "--run-id", "null")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert Store.open(cli.db).find_run("null")["status"] == "completed"
    assert _is_device("/dev/null")


def test_a_fifo_is_written_in_place(sqlite_cli, tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    result = sqlite_cli("run", "--input", str(SAMPLE_INPUT), "--output", str(fifo))
    reader.join(10)
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(got[0])) == 9
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_an_output_through_a_symlink_writes_its_target(sqlite_cli, tmp_path):
    target = tmp_path / "real" / "processed.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    result = sqlite_cli("run", "--input", str(SAMPLE_INPUT), "--output", str(link))
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert len(json.loads(target.read_text())) == 9
    assert [p.name for p in target.parent.iterdir()] == ["processed.json"]  # no temporary left


# -- `-` is standard output -----------------------------------------------------------------------


def _runstore(*args: str, db: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "RUNSTORE_DB": db, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "runstore", *args], capture_output=True,
                          env=env, timeout=60)  # fmt: skip


def test_run_output_dash_is_stdout_and_the_summary_moves_to_stderr(sqlite_db, tmp_path):
    done = _runstore("run", "--input", str(SAMPLE_INPUT), "--output", "-", db=sqlite_db)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 9  # stdout holds the data and nothing else
    assert b"completed" in done.stderr


def test_log_dash_is_stdout_for_run_and_exec(sqlite_db, tmp_path):
    done = _runstore("run", "--input", str(SAMPLE_INPUT), "--output", str(tmp_path / "p.json"),
                     "--log", "-", "--run-id", "dash", db=sqlite_db)  # fmt: skip
    assert done.returncode == 0, done.stderr
    log = json.loads(done.stdout)
    assert log["run_id"] == "dash" and log["events"][-1]["event_type"] == "run_finished"
    done = _runstore("exec", "--log", "-", "--run-id", "ex", "--", "true", db=sqlite_db)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["run_id"] == "ex"


def test_export_dash_and_backup_dash(kept, tmp_path):
    exported = kept("export", "kept", "-o", "-")
    assert exported.exit_code == 0 and json.loads(exported.stdout)["run_id"] == "kept"
    done = _runstore("db", "backup", "-", db=kept.db)
    assert done.returncode == 0, done.stderr
    copy = tmp_path / "from-stdout.db"
    copy.write_bytes(done.stdout)
    with sqlite3.connect(copy) as conn:
        assert conn.execute("select run_id from runs").fetchall() == [("kept",)]
    assert b"backed up 1 run" in done.stderr


def test_output_and_log_both_dash_is_a_clash(sqlite_cli):
    result = sqlite_cli("run", "--input", str(SAMPLE_INPUT), "--output", "-", "--log", "-")
    assert result.exit_code == 2
    assert error_line(result) == "Error: --output and --log name the same file: -"


def test_a_closed_stdout_is_one_error_and_never_another_file(sqlite_db, tmp_path):
    # With fd 1 closed, the next file runstore opened (the input, the store) used to get its
    # number and be taken for stdout.
    done = subprocess.run(
        [sys.executable, "-m", "runstore", "run", "--input", str(SAMPLE_INPUT), "--output", "-",
         "--run-id", "closed"],
        capture_output=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
        env={**os.environ, "RUNSTORE_DB": sqlite_db}, preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert done.returncode == 1
    assert b"Error: cannot write -: it was closed when runstore started" in done.stderr
    assert b"Traceback" not in done.stderr
    assert Store.open(sqlite_db).find_run("closed")["status"] == "failed"
    asked = subprocess.run(
        [sys.executable, "-m", "runstore", "history"], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, timeout=60, env={**os.environ, "RUNSTORE_DB": sqlite_db},
        preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert asked.returncode == 1
    assert asked.stderr.decode().strip() == (
        "Error: cannot write to standard output: it was closed when runstore started"
    )


def test_a_closed_stdin_as_input_is_a_failed_run_not_an_empty_one(sqlite_db, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "runstore", "run", "--input", "-", "--output",
         str(tmp_path / "p.json"), "--run-id", "nostdin"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
        env={**os.environ, "RUNSTORE_DB": sqlite_db}, preexec_fn=lambda: os.close(0),
    )  # fmt: skip
    assert done.returncode == 1
    assert b"Error: cannot read input -: it was closed when runstore started" in done.stderr
    assert Store.open(sqlite_db).find_run("nostdin")["status"] == "failed"


# -- nothing left behind --------------------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_temporary_files_of_dead_processes_are_removed_by_the_next_write(sqlite_cli, tmp_path):
    from runstore import procinfo

    out = tmp_path / "out"
    out.mkdir()
    dead = out / f".p.json.runstore-{_dead_pid()}-12345.abcd1234.tmp"
    dead.write_bytes(b"x" * 1000)
    mine = out / f".p.json.runstore-{os.getpid()}-{procinfo.process_start(os.getpid())}.k.tmp"
    mine.write_bytes(b"still being written")
    stranger = out / ".notes.txt.tmp"  # not ours: never touched
    stranger.write_text("keep")
    result = sqlite_cli("run", "--input", str(SAMPLE_INPUT), "--output", str(out / "p.json"))
    assert result.exit_code == 0, result.stderr
    assert not dead.exists()
    assert mine.exists() and stranger.exists()


@pytest.mark.slow
def test_a_killed_run_leaves_a_temporary_file_that_the_next_run_removes(sqlite_db, tmp_path):
    import signal
    import time

    source = tmp_path / "big.txt"
    source.write_text("".join(f"item {i}\n" for i in range(2_000_000)))
    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-m", "runstore", "run", "--input", str(source),
                              "--output", str(out / "p.json"), "--db", sqlite_db],
                             env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    deadline = time.monotonic() + 60
    while not [p for p in out.iterdir() if p.name.endswith(".tmp")]:
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)
    child.send_signal(signal.SIGKILL)
    child.wait()
    left = [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert left and left[0].stat().st_size > 0
    done = _runstore("run", "--input", str(SAMPLE_INPUT), "--output", str(out / "p.json"),
                     db=sqlite_db)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["p.json"]


def test_a_partial_backup_of_a_dead_process_is_removed_by_the_next_backup(kept, tmp_path):
    target_dir = tmp_path / "backups"
    target_dir.mkdir()
    partial = target_dir / f".b.db.runstore-{_dead_pid()}-1.zzzz.partial"
    partial.write_bytes(b"half a database")
    Path(str(partial) + "-journal").write_bytes(b"a hot journal")
    result = kept("db", "backup", str(target_dir / "b.db"))
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in target_dir.iterdir()) == ["b.db"]


@pytest.mark.parametrize(
    ("argv", "closed", "said"),
    [
        (["--help"], 1, "cannot write to standard output"),
        (["sql", "-"], 0, "cannot read standard input"),
        (["ui", "--add-user", "ann", "--auth-file", "auth"], 0, "cannot read standard input"),
    ],
    ids=["--help", "sql -", "ui --add-user"],
)  # fmt: skip
def test_a_closed_standard_stream_is_one_error_line_for_every_command(
    sqlite_db, tmp_path, argv, closed, said
):
    done = subprocess.run(
        [sys.executable, "-m", "runstore", *argv], cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
        env={**os.environ, "RUNSTORE_DB": sqlite_db}, preexec_fn=lambda: os.close(closed),
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.decode().strip() == f"Error: {said}: it was closed when runstore started"
    assert not (tmp_path / "auth").exists()
