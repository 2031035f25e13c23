"""The cheap clock of the event hot path writes exactly what the datetime path writes."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from runstore import RunLogger
from runstore.store.schema import events
from runstore.store.store import Store
from runstore.store.timestamps import datetime_from_ns, sqlite_timestamp, sqlite_timestamp_ns

# From 1970 to 2100, in nanoseconds.
moments = st.integers(min_value=0, max_value=4_102_444_800 * 10**9)


@given(moments)
def test_nanoseconds_format_as_their_datetime_does(nanoseconds: int) -> None:
    moment = datetime_from_ns(nanoseconds)
    assert moment.tzinfo is timezone.utc
    assert sqlite_timestamp_ns(nanoseconds) == sqlite_timestamp(moment)
    assert int(moment.timestamp()) == nanoseconds // 10**9
    assert moment.microsecond == nanoseconds // 1000 % 10**6


@given(st.lists(moments, min_size=2, max_size=20))
def test_the_text_sorts_as_the_times_do(values: list[int]) -> None:
    assert sorted(values, key=sqlite_timestamp_ns) == sorted(values, key=lambda ns: ns // 1000)


def test_logged_events_fall_between_the_run_start_and_finish(sqlite_db: str) -> None:
    store = Store.open(sqlite_db)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    with RunLogger("clock", store=store, argv=["x"]) as run:
        for i in range(3):
            run.log_event("tick", {"i": i})
            time.sleep(0.002)
    after = datetime.now(timezone.utc)
    with store.read() as conn:
        query = select(events.c.ts).where(events.c.run_pk == run.run_pk).order_by(events.c.seq)
        times = list(conn.execute(query).scalars())
    assert times == sorted(times)
    assert before <= times[0] and times[-1] <= after
    assert run.started_at <= times[0]
