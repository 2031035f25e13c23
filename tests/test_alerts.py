"""Alerts end to end: real ``runstore`` processes, a real HTTP receiver on 127.0.0.1 reached through
an Apprise ``json://`` URL, and a command target. One alert per change of state, however many
checks overlap; recovered after the next success; a failing target never changes the job's exit
code. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import Cli
from helpers import NOW, insert_runs, ok, runstore

from runstore.store.schema import notifications
from runstore.store.store import Store


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        received = self.received = []  # type: list[dict]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(size)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def titles(self) -> list[str]:
        return [body["title"] for body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()


@pytest.fixture
def said(tmp_path: Path) -> Path:
    """Where the command target appends each alert it is given (one JSON line each)."""
    return tmp_path / "alerts.jsonl"


def _told(said: Path) -> list[dict]:
    return [json.loads(line) for line in said.read_text().splitlines()] if said.exists() else []


def _rows(db: str) -> list[dict]:
    from sqlalchemy import select

    with Store.open(db).read() as conn:
        return [dict(r) for r in conn.execute(select(notifications).order_by(notifications.c.id))
                .mappings()]  # fmt: skip


def test_an_alert_per_change_of_state_from_the_process_that_records_the_run(db, receiver, said):
    cli = Cli(db)
    ok(cli("job", "set", "nightly", "--notify", receiver.url, "--notify", f"command:cat >> {said}"))
    done = runstore(db, "exec", "--job", "nightly", "--", "sh", "-c", "echo disk full >&2; exit 3")
    assert done.returncode == 3 and done.stderr == b"disk full\n"  # the job's own, unchanged
    assert receiver.titles() == ["runstore: nightly has failed"]
    [first] = _told(said)
    assert (first["job"], first["state"], first["previous_state"]) == ("nightly", "failed", None)
    assert first["reason"].endswith("failed: exit code 3: disk full") and first["problem"]
    assert first["run_status"] == "failed" and first["run_id"] == receiver_run_id(db)
    again = runstore(db, "exec", "--job", "nightly", "--", "sh", "-c", "exit 3")
    assert again.returncode == 3 and len(receiver.received) == 1  # still failed: nothing new
    assert runstore(db, "exec", "--job", "nightly", "--", "true").returncode == 0
    assert receiver.titles() == ["runstore: nightly has failed", "runstore: nightly recovered"]
    recovered = _told(said)[-1]
    assert (recovered["state"], recovered["previous_state"], recovered["problem"]) == (
        "recovered", "failed", False,
    )  # fmt: skip
    assert [(r["state"], r["outcome"]) for r in _rows(db)] == [
        ("failed", "sent"), ("failed", "sent"), ("recovered", "sent"), ("recovered", "sent"),
    ]  # fmt: skip
    shown = cli.json("job", "show", "nightly")
    assert [a["state"] for a in shown["alerts"]][:2] == ["recovered", "recovered"]


def receiver_run_id(db: str) -> str:
    from helpers import last_run

    return last_run(db)["run_id"]


def test_overlapping_checks_send_a_late_alert_once(db, receiver, said):
    cli = Cli(db)
    insert_runs(db, [{"run_id": "sync-1", "job": "sync", "status": "completed",
                      "started_at": NOW - timedelta(hours=3), "duration_ms": 1000}])  # fmt: skip
    ok(cli("job", "set", "sync", "--every", "1h", "--notify", receiver.url,
           "--notify", f"command:cat >> {said}"))  # fmt: skip
    env = {**os.environ, "RUNSTORE_DB": db}
    checks = [
        subprocess.Popen([sys.executable, "-m", "runstore", "check", "--all", "--notify"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(8)
    ]  # fmt: skip
    outputs = [c.communicate(timeout=120) for c in checks]
    assert [c.returncode for c in checks] == [0] * 8, outputs
    assert receiver.titles() == ["runstore: sync is late"]
    assert [a["state"] for a in _told(said)] == ["late"]
    lines = [line for out, _ in outputs for line in out.decode().splitlines()]
    assert sorted(lines) == ["alerted command:cat …: sync late", "alerted json://127.0.0.1:"
                             f"{receiver.server.server_address[1]}/…: sync late"]  # fmt: skip
    assert all(err == b"" for _, err in outputs)
    again = runstore(db, "check", "--all", "--notify")
    assert again.returncode == 0 and again.stdout == b"" and len(receiver.received) == 1
    assert runstore(db, "exec", "--job", "sync", "--", "true").returncode == 0
    assert receiver.titles() == ["runstore: sync is late", "runstore: sync recovered"]


def test_a_failing_target_is_recorded_and_never_changes_the_exit_code(sqlite_db, said):
    cli = Cli(sqlite_db)
    refused = "json://127.0.0.1:9/hook"  # nothing listens there
    ok(cli("job", "set", "etl", "--notify", refused, "--notify", f"command:cat >> {said}",
           "--notify", "command:echo no route >&2; exit 7"))  # fmt: skip
    assert runstore(sqlite_db, "exec", "--job", "etl", "--", "true").stderr == b""  # ok: no alert
    failed = runstore(sqlite_db, "exec", "--job", "etl", "--", "sh", "-c", "exit 4")
    assert failed.returncode == 4  # the job's own exit code, whatever the targets do
    warnings = failed.stderr.decode().splitlines()
    assert len(warnings) == 2 and all(w.startswith("Warning: could not alert ") for w in warnings)
    assert (
        warnings[1] == "Warning: could not alert command:echo … (etl failed): exit code 7: no route"
    )
    recovered = runstore(sqlite_db, "exec", "--job", "etl", "--", "true")
    assert recovered.returncode == 0 and len(recovered.stderr.decode().splitlines()) == 2
    rows = _rows(sqlite_db)
    outcomes = {(r["state"], r["target"]): (r["outcome"], r["detail"]) for r in rows}
    assert outcomes[("failed", "json://127.0.0.1:9/…")][0] == "failed"
    assert outcomes[("failed", "command:cat …")] == ("sent", None)
    assert outcomes[("failed", "command:echo …")] == ("failed", "exit code 7: no route")
    assert [a["state"] for a in _told(said)] == ["failed", "recovered"]
    shown = ok(cli("job", "show", "etl"))
    assert "exit code 7: no route" in shown


def test_job_test_sends_a_test_alert_to_each_target(sqlite_db, receiver, said):
    cli = Cli(sqlite_db)
    ok(cli("job", "set", "etl", "--notify", receiver.url, "--notify", f"command:cat >> {said}"))
    result = cli("job", "test", "etl")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"sent to json://127.0.0.1:{receiver.server.server_address[1]}/…",
        "sent to command:cat …",
    ]
    assert receiver.titles() == ["runstore: test alert for etl"]
    assert receiver.received[0]["type"] == "info"
    [test] = _told(said)
    assert test["state"] == "test" and test["problem"] is False
    ok(cli("job", "set", "etl", "--notify", "json://127.0.0.1:9/hook"))
    failing = cli("job", "test", "etl")
    assert failing.exit_code == 1 and failing.stdout.startswith("failed: json://127.0.0.1:9/…: ")
    assert "has no expectations" in cli("job", "test", "other").stderr


def test_a_job_without_expectations_alerts_no_one(sqlite_db):
    assert runstore(sqlite_db, "exec", "--job", "plain", "--", "sh", "-c", "exit 3").returncode == 3
    assert _rows(sqlite_db) == []
