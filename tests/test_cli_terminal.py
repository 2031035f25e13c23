"""What a person sees at a real terminal (a pty, 80 and 120 columns wide): tables that fit,
identifiers never cut, free text cut with …, records for rows too wide, a pager only there."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from helpers import at_terminal, recorded_runs

from runstore.record.logger import RunLogger

LONG_ERROR = "could not reach the orders database at db.internal:5432: connection refused; " * 3
LONG_WARNING = "the source answered slowly: " + "0123456789" * 15


@pytest.fixture(scope="module")
def term_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Runs with generated ids (the longest identifiers a store holds), long job names, a long
    error summary and a long warning."""
    db = str(tmp_path_factory.mktemp("terminal") / "store.db")
    for i in range(3):
        with RunLogger(job="backup-nightly", db=db) as run:
            run.log_event("item_processed", {"index": i})
    with RunLogger(job="etl-orders-eu-west", db=db) as run:
        run.log_warning(LONG_WARNING)
        run.finish("failed", exit_code=3, error_summary=LONG_ERROR)
    return db


def _rows(lines: list[str]) -> list[list[str]]:
    return [line.split() for line in lines[1:] if line.strip()]


@pytest.mark.parametrize("columns", [80, 120])
def test_history_fits_the_terminal_and_never_cuts_a_run_id(term_db, columns):
    screen = at_terminal("history", "--db", term_db, columns=columns)
    assert screen.code == 0, screen.stderr
    assert max(map(len, screen.lines)) <= columns, screen.text
    assert screen.lines[0].split()[:5] == ["RUN", "JOB", "STATUS", "STARTED", "DURATION"]
    shown = _rows(screen.lines)
    assert sorted(row[0] for row in shown) == sorted(r["run_id"] for r in recorded_runs(term_db))
    assert {row[1] for row in shown} == {"backup-nightly", "etl-orders-eu-west"}
    assert {row[2] for row in shown} == {"completed", "failed"}
    if columns >= 120:  # room for more columns, and for the error summary, cut with …
        assert "EXIT" in screen.lines[0] and "ERROR" in screen.lines[0]
        failed = next(line for line in screen.lines if "failed" in line)
        assert "could not" in failed and failed.endswith("…")


def test_history_wide_shows_everything_whatever_the_width(term_db):
    screen = at_terminal("history", "--wide", "--db", term_db, columns=80)
    assert screen.lines[0].split() == ["RUN", "JOB", "STATUS", "STARTED", "DURATION", "ITEMS",
                                       "WARN/ERR", "EXIT", "ERROR"]  # fmt: skip
    assert any(line.endswith(LONG_ERROR.strip()) for line in screen.lines)
    assert at_terminal("history", "--no-trunc", "--db", term_db).lines == screen.lines


@pytest.mark.parametrize("columns", [80, 120])
def test_stats_fits_without_splitting_a_header_or_a_status(term_db, columns):
    screen = at_terminal("stats", "--db", term_db, columns=columns)
    assert screen.code == 0, screen.stderr
    assert max(map(len, screen.lines)) <= columns, screen.text
    header = screen.lines[0]
    assert header.startswith("JOB") and "RUNS" in header and "P95" in header
    assert "LAST RUN" in header
    for row in screen.lines[1:]:
        assert re.search(r"\b(completed|failed)\b", row), row


@pytest.mark.parametrize("columns", [80, 120])
def test_show_fits_with_milliseconds_and_cuts_the_message(term_db, columns):
    failed = next(r["run_id"] for r in recorded_runs(term_db) if r["status"] == "failed")
    screen = at_terminal("show", failed, "--db", term_db, columns=columns)
    assert screen.code == 0, screen.stderr
    assert max(map(len, screen.lines)) <= columns, screen.text
    assert f"run_id            {failed}" in screen.lines
    events = screen.lines[screen.lines.index("") + 1 :]
    assert events[0].split()[:4] == ["SEQ", "TIME", "LEVEL", "TYPE"]
    warning = next(line for line in events if " warning " in line)
    assert re.search(r"\b\d\d:\d\d:\d\d\.\d{3}\b", warning)  # milliseconds
    assert "the source answered" in warning and "…" in warning
    wide = at_terminal("show", failed, "--wide", "--db", term_db, columns=columns)
    assert any(LONG_WARNING in line for line in wide.lines)


def test_sql_rows_too_wide_become_records(term_db):
    screen = at_terminal("sql", "select * from run_summary limit 2", "--db", term_db, columns=80)
    assert screen.code == 0, screen.stderr
    assert max(map(len, screen.lines)) <= 80, screen.text
    assert screen.lines[0].startswith("-[ RECORD 1 ]")
    assert sum(line.startswith("-[ RECORD") for line in screen.lines) == 2
    run_id_lines = [line for line in screen.lines if line.startswith("run_id ")]
    ids = {r["run_id"] for r in recorded_runs(term_db)}
    assert len(run_id_lines) == 2 and all(line.split(" | ")[1] in ids for line in run_id_lines)
    narrow = at_terminal("sql", "select run_id, job from runs", "--db", term_db, columns=80)
    assert narrow.lines[0].split() == ["run_id", "job"]  # a table while it fits
    wide = at_terminal("sql", "select * from run_summary", "--wide", "--db", term_db)
    assert wide.lines[0].startswith("run_id") and max(map(len, wide.lines)) > 80


def test_long_output_at_a_terminal_goes_through_the_pager_and_never_when_piped(term_db):
    pager = {"PAGER": "sed s/^/paged:/"}
    screen = at_terminal("history", "--db", term_db, env=pager)
    assert screen.lines and all(line.startswith("paged:") for line in screen.lines)
    piped = subprocess.run(
        [sys.executable, "-m", "runstore", "history", "--db", term_db],
        capture_output=True, text=True, env={**_env(), **pager}, check=True,
    )  # fmt: skip
    assert piped.stdout.startswith("RUN ") and "paged:" not in piped.stdout
    off = at_terminal("history", "--db", term_db, env={"PAGER": "cat"})
    assert off.lines[0].startswith("RUN ")


def test_a_filter_that_matches_nothing_says_so_at_a_terminal(term_db):
    screen = at_terminal("history", "--job", "nightly", "--since", "7d", "--db", term_db)
    assert screen.code == 0 and screen.lines == []
    assert screen.stderr == "no runs match --job nightly --since 7d\n"


def test_history_says_when_more_runs_match_than_it_shows(term_db):
    screen = at_terminal("history", "--limit", "2", "--db", term_db)
    assert len(_rows(screen.lines)) == 2
    assert "--all" not in screen.stderr  # --limit given: no hint
    screen = at_terminal("history", "--db", term_db)
    assert screen.stderr == ""  # all four fit under the default


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_ctrl_c_during_run_leaves_no_progress_bar_after_the_summary(tmp_path):
    import fcntl
    import os
    import pty
    import signal
    import struct
    import termios
    import time

    big = tmp_path / "big.txt"
    big.write_text("".join(f"item {i}\n" for i in range(1_500_000)))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runstore", "run", "-i", str(big), "-o", str(tmp_path / "o.json"),
         "--db", str(tmp_path / "s.db")],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    while b"processing" not in seen and time.monotonic() < deadline:
        seen += os.read(master, 65536)  # the bar is drawn
    time.sleep(0.5)  # and redrawn a few times
    proc.send_signal(signal.SIGINT)
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 130
    text = seen.decode(errors="replace")
    summary = text.rindex("cancelled:")
    assert "\x1b[?25h" in text[:summary]  # the bar was taken down (the cursor shown again)
    assert "processing" not in text[summary:]  # and nothing redrawn after the summary
