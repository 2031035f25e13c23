"""Following a run as it goes (``logs --follow``, ``show --follow``): its events read from the
store as they are written, on any backend, by polling the run's events after the last one seen
(the (run, seq) key makes each poll an index seek). Following ends when the run does; a run
whose process is gone is marked abandoned by the reaper, checked every few seconds, and that
ends it too."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from runstore.history.reaper import reap_quietly
from runstore.store.event_rows import EventFilter
from runstore.store.schema import RunStatus
from runstore.store.store import Store

POLL_S = 0.5
REAP_EVERY_S = 5.0


def follow_events(
    store: Store,
    run_pk: int,
    only: EventFilter,
    *,
    waiting: Callable[[], None] | None = None,
    poll_s: float = POLL_S,
) -> Iterator[tuple[Any, ...]]:
    """A run's events (as ``Store.iter_event_rows`` gives them) that ``only`` lets through:
    those stored so far (its ``tail`` applies to these), then each new one as it is written,
    until the run is over. ``waiting`` is called before each pause (to flush what was written)."""
    seen = only.after_seq
    wanted = only
    reaped = time.monotonic()
    while True:
        # Its status before its events: once it says the run is over, every event is stored.
        run = store.get_run(run_pk)
        for row in store.iter_event_rows(run_pk, wanted):
            seen = max(seen, row[0])
            yield row
        if run["status"] != RunStatus.RUNNING:
            return
        wanted = replace(only, after_seq=seen, tail=None)
        if waiting is not None:
            waiting()
        time.sleep(poll_s)
        if time.monotonic() - reaped >= REAP_EVERY_S:
            reap_quietly(store)  # a process gone without a word: its run is abandoned
            reaped = time.monotonic()
