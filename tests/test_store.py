"""The store's read side: one consistent snapshot per read, on every backend."""

from __future__ import annotations

from sqlalchemy import func, select

from runstore.record.logger import RunLogger
from runstore.store.schema import runs
from runstore.store.store import Store


def test_a_read_sees_one_snapshot_while_other_runs_commit(db):
    store = Store.open(db)
    with RunLogger(job="before", store=store):
        pass
    count = select(func.count()).select_from(runs)
    with store.read() as conn:
        first = conn.execute(count).scalar_one()
        # another process's run commits meanwhile (its own store, its own connection)
        with RunLogger(job="meanwhile", store=Store(store.url, store.engine)):
            pass
        assert conn.execute(count).scalar_one() == first == 1
    with store.read() as conn:
        assert conn.execute(count).scalar_one() == 2


def test_the_write_lock_of_another_connection_is_seen_without_waiting(sqlite_db):
    import sqlite3
    from pathlib import Path

    from runstore.store.engine import write_lock_taken

    Store.open(sqlite_db)
    path = Path(sqlite_db)
    assert write_lock_taken(path) is False  # free: asked, and let go at once
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert write_lock_taken(path) is True
    finally:
        holder.rollback()
        holder.close()
    assert write_lock_taken(path) is False
    assert write_lock_taken(path.with_name("none.db")) is False  # and never creates a file
    assert not path.with_name("none.db").exists()
