"""``runstore.LoggingHandler``: existing logging calls become events of the current run."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from conftest import query
from helpers import recorded_events

import runstore
from runstore.record.logger import RunLogger


@pytest.fixture
def log() -> Iterator[logging.Logger]:
    """A logger of its own per test, with nothing else attached."""
    logger = logging.getLogger(f"etl.test.{id(object())}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def logged(db: str, run_id: str) -> list[dict]:
    return [
        e
        for e in recorded_events(db, run_id)
        if e["event_type"] not in ("run_started", "run_finished")
    ]


def test_records_become_events_with_levels_mapped(db, log):
    with RunLogger(job="etl", db=db) as run:
        log.addHandler(runstore.LoggingHandler(run))
        log.debug("detail")
        log.info("loaded %d rows", 120)
        log.warning("slow source")
        log.error("bad row")
        log.critical("giving up")
    got = [(e["event_type"], e["level"], e["message"]) for e in logged(db, run.run_id)]
    assert got == [
        ("log", "debug", "detail"),
        ("log", "info", "loaded 120 rows"),
        ("warning", "warning", "slow source"),
        ("error", "error", "bad row"),
        ("error", "error", "giving up"),
    ]
    [row] = query(db, "SELECT status, warning_count, error_count FROM runs")
    assert row == {"status": "failed", "warning_count": 1, "error_count": 2}


def test_extra_fields_go_into_data_and_can_choose_the_type(db, log):
    with RunLogger(job="etl", db=db) as run:
        log.addHandler(runstore.LoggingHandler(run))
        log.info("table loaded", extra={"table": "orders", "rows": 5, "event_type": "table_loaded"})
    [event] = logged(db, run.run_id)
    assert event["event_type"] == "table_loaded"
    assert event["data"] == {
        "message": "table loaded",
        "logger": log.name,
        "table": "orders",
        "rows": 5,
    }


def test_exceptions_are_kept_with_their_traceback(db, log):
    with RunLogger(job="etl", db=db) as run:
        log.addHandler(runstore.LoggingHandler(run))
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            log.exception("division failed")
    [event] = logged(db, run.run_id)
    assert event["level"] == "error"
    assert "ZeroDivisionError: division by zero" in event["data"]["exception"]


def test_attaches_to_the_run_named_by_the_environment(db, log, monkeypatch):
    """What a Python step under `runstore exec` does: two lines, no run id in the code."""
    with RunLogger(job="wrapped", db=db) as owner:
        monkeypatch.setenv("RUNSTORE_RUN_ID", owner.run_id)
        monkeypatch.setenv("RUNSTORE_DB", db)
        handler = runstore.LoggingHandler()
        log.addHandler(handler)
        log.info("from the child")
        handler.close()  # as logging.shutdown() does at exit: flushes
        assert [e["message"] for e in logged(db, owner.run_id)] == ["from the child"]
    assert query(db, "SELECT status FROM runs") == [{"status": "completed"}]


def test_outside_a_run_it_does_nothing(log, capsys):
    handler = runstore.LoggingHandler()
    log.addHandler(handler)
    log.warning("nobody records this")
    assert handler.run is None
    assert capsys.readouterr().err == ""


def test_a_store_failure_warns_once_and_never_raises(sqlite_db, log, monkeypatch):
    from runstore.errors import StoreWarning

    monkeypatch.setenv("RUNSTORE_RUN_ID", "missing-run")
    monkeypatch.setenv("RUNSTORE_DB", sqlite_db)
    log.addHandler(runstore.LoggingHandler())
    with pytest.warns(StoreWarning) as warned:
        log.error("first")
        log.error("second")
    assert [str(w.message) for w in warned] == [
        "log records are no longer recorded: no run matches 'missing-run'"
    ]


def test_records_after_the_run_finished_are_dropped_quietly(sqlite_db, log, capsys):
    with RunLogger(job="etl", db=sqlite_db) as run:
        log.addHandler(runstore.LoggingHandler(run))
    log.info("too late")
    assert capsys.readouterr().err == ""


def test_the_stores_own_logging_is_not_recorded(sqlite_db):
    with RunLogger(job="etl", db=sqlite_db) as run:
        handler = runstore.LoggingHandler(run)
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            logging.getLogger("sqlalchemy.engine.Engine").warning("SELECT 1")
            logging.getLogger("app").warning("kept")
        finally:
            root.removeHandler(handler)
    assert [e["message"] for e in logged(sqlite_db, run.run_id)] == ["kept"]
