"""Shared fixtures: a real store per test, on SQLite and (when a server is given) PostgreSQL.

PostgreSQL tests run when RUNSTORE_TEST_POSTGRES_URL names a server
(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test); each test gets a database of its own.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from runstore.cli import app
from runstore.store import engine as engines
from runstore.store.location import resolve_db

POSTGRES_URL = os.environ.get("RUNSTORE_TEST_POSTGRES_URL")
NO_POSTGRES = "PostgreSQL tests need RUNSTORE_TEST_POSTGRES_URL (a server to create databases on)"

REPO = Path(__file__).resolve().parent.parent
SAMPLE_INPUT = REPO / "data" / "sample_input.txt"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test touches the user's real store or inherits a run to attach to."""
    monkeypatch.setenv("RUNSTORE_DB", str(tmp_path / "default-store.db"))
    monkeypatch.delenv("RUNSTORE_RUN_ID", raising=False)
    yield
    engines.dispose_all()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    return str(tmp_path / "store.db")


def postgres_database() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    from sqlalchemy.engine import make_url

    name = f"runstore_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        engines.dispose_all()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


READER_ROLE = "runstore_reader"


def reader_url(db: str) -> str:
    """The store as seen by a read-only role, the one the README recommends for `runstore sql`
    on PostgreSQL (a superuser is refused there); a SQLite path as it is."""
    if "://" not in db:
        return db
    from sqlalchemy.engine import make_url

    assert POSTGRES_URL
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": READER_ROLE})
        if exists.first() is None:
            conn.execute(text(f"CREATE ROLE {READER_ROLE} LOGIN"))
        conn.execute(text(f"GRANT pg_read_all_data TO {READER_ROLE}"))
    admin.dispose()
    return make_url(db).set(username=READER_ROLE, password=None).render_as_string(False)


@pytest.fixture
def postgres_db() -> Iterator[str]:
    yield from postgres_database()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store on each backend: a SQLite file path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        yield str(tmp_path / "store.db")
    else:
        yield from postgres_database()


def query(db: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Rows from a connection of our own: only what has been committed is visible."""
    engine = create_engine(resolve_db(db), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [dict(row) for row in conn.execute(text(sql), params).mappings()]
    finally:
        engine.dispose()


class Cli:
    """Runs ``runstore`` in-process against one store, the way a user types it."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.runner = CliRunner()

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str | None] | None = None
    ):
        env = {"RUNSTORE_DB": self.db, **(env or {})}
        return self.runner.invoke(app, list(args), input=input, env=env)

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def cli(db: str) -> Cli:
    return Cli(db)


@pytest.fixture
def sqlite_cli(sqlite_db: str) -> Cli:
    return Cli(sqlite_db)


def error_line(result: Any) -> str:
    """The one ``Error: ...`` line a failure prints on stderr, with no traceback anywhere."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the handful of known runs (helpers.record_handful), for the questions' tests ---------------

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def handful(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The handful of runs, built once per module and backend; tests only read it."""
    from helpers import handful_store

    yield from handful_store(request, tmp_path_factory)


@pytest.fixture(scope="module", params=BACKENDS)
def scratch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One store per module and backend for tests that add runs of their own uniquely named jobs
    (a fresh PostgreSQL database per test would cost a second or two)."""
    from helpers import fresh_store

    yield from fresh_store(request, tmp_path_factory)


@pytest.fixture
def qcli(handful: Any) -> Cli:
    """The handful on each backend: for answers that SQL computes."""
    return Cli(handful.db)


@pytest.fixture(scope="module")
def lite_handful(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from helpers import record_handful

    return record_handful(str(tmp_path_factory.mktemp("lite") / "store.db"),
                          tmp_path_factory.mktemp("lite-files"))  # fmt: skip


@pytest.fixture
def lcli(lite_handful: Any) -> Cli:
    """The handful on SQLite only: for formatting and option parsing, the same on every backend."""
    return Cli(lite_handful.db)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line per reason tests were skipped (how many PostgreSQL tests, and why), instead of
    a SKIPPED line for each."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        what = "PostgreSQL tests" if reason == NO_POSTGRES else "tests"
        terminalreporter.write_line(f"{count} {what} skipped: {reason}")
