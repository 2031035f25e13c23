"""Events on their way to the store: held in a batch, counted, and written by count, by time
(a thread of their own) or at once; and a quiet run's heartbeat, kept fresh by the same thread."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from runstore.signals import critical
from runstore.store.store import CounterDeltas, EventRow, Store

EVENTS_PER_FLUSH = 1000
FLUSH_INTERVAL_S = 1.0
# How often a live run's heartbeat is refreshed even when it logs nothing: the reaper judges
# runs of other hosts by it (see history.STALE_AFTER_S), and an abandoned run's duration is
# known up to its last beat.
HEARTBEAT_INTERVAL_S = 5.0
# Levels written at once, whatever the batch holds.
URGENT_LEVELS = ("warning", "error")


class Batcher:
    """The pending events of one run and what they add to its counters. ``lock`` guards it:
    logging threads, the flusher and the finish share it."""

    def __init__(self, store: Store, run_pk: int, events_per_flush: int = EVENTS_PER_FLUSH):
        self.store = store
        self.run_pk = run_pk
        self.events_per_flush = max(1, events_per_flush)
        self.lock = threading.RLock()
        self.pending: list[EventRow] = []
        self.deltas = CounterDeltas()
        # What this process logged into the run, written or not.
        self.logged = CounterDeltas()
        self.event_count = 0
        self._last_flush = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(
        self, ts: int, event_type: str, level: str, message: str | None, data: str | None
    ) -> bool:
        """Hold one event (the caller holds ``lock``); whether it should be written now."""
        self.pending.append((ts, event_type, level, message, data))
        self.event_count += 1
        deltas, logged = self.deltas, self.logged
        if level == "warning":
            deltas.warnings += 1
            logged.warnings += 1
        elif level == "error":
            deltas.errors += 1
            logged.errors += 1
        if event_type == "item_processed":
            deltas.items_ok += 1
            logged.items_ok += 1
        elif event_type == "item_failed":
            deltas.items_failed += 1
            logged.items_failed += 1
        return level in URGENT_LEVELS or len(self.pending) >= self.events_per_flush

    def flush(self) -> None:
        """Write pending events (and the heartbeat) now. A cancel signal that arrives meanwhile
        is raised once the events are safely stored (or kept for the next attempt)."""
        with critical(), self.lock:
            rows, self.pending = self.pending, []
            deltas, self.deltas = self.deltas, CounterDeltas()
            self._last_flush = time.monotonic()
            if not rows:
                return
            try:
                self.store.append_events(self.run_pk, rows, deltas, heartbeat_at=local_now())
            except BaseException:
                # Keep the events for the next attempt: nothing logged is dropped silently.
                self.pending[:0] = rows
                self.deltas.add(deltas)
                raise

    def start(self, interval: float = FLUSH_INTERVAL_S) -> None:
        """Write what waits longer than ``interval``, and beat a quiet run's heart, from a
        thread of its own until ``stop``."""
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, interval: float) -> None:
        last_beat = time.monotonic()
        while not self._stop.wait(interval / 2):
            now = time.monotonic()
            try:
                with self.lock:
                    if self._stop.is_set():
                        return
                    if self.pending and now - self._last_flush >= interval:
                        self.flush()
                        last_beat = now
                    elif now - last_beat >= HEARTBEAT_INTERVAL_S:
                        self.store.beat(self.run_pk, local_now())
                        last_beat = now
            except Exception:
                continue  # the next round tries again; the owner sees the failure itself


def local_now() -> datetime:
    """This machine's clock, as heartbeats are written with it (a server store uses its own)."""
    return datetime.now(timezone.utc)
