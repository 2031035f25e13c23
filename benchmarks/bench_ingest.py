"""Figure 1: event ingestion. N events through ``RunLogger`` into a fresh SQLite store, next to the
same rows through plain ``sqlite3`` ``executemany`` in one transaction (WAL, synchronous=NORMAL).

Both sides start from the same Python values (an event type and a dict) and do the same per-row
work: a UTC timestamp, the dict encoded as JSON text, one row (run key, sequence number, time,
type, level, message, data) in an ``events`` table with the same columns and unique index.
runstore keeps its durability policy as configured: a transaction every ``EVENTS_PER_FLUSH``
events (begun IMMEDIATE), each bumping the run's counters.

Each repetition is a fresh child process and a fresh database file; the clock runs from the
start of the run (RunLogger created) to its finish (last events flushed, run row finished).
Creating the store's schema is not timed: it happens once per store, not once per run.

Two more figures do the same with output lines (what ``exec`` stores): in a plain store, and in a
store with the search index on (``runstore db search on``), where each line is also written into
the index by the store's triggers. The raw side has no index, so that ratio carries the index's
whole cost: what the README quotes (its target is that figure, "about a fifth").
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from common import (
    PYTHON,
    arguments,
    at_least_ratio,
    interleaved,
    median,
    progress,
    report,
    run_child,
)

EVENTS = 200_000

# The raw side's table: the columns and the unique (run, seq) index of runstore's events table.
RAW_SCHEMA = """
CREATE TABLE runs (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, job TEXT NOT NULL);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    run_pk INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    ts DATETIME NOT NULL,
    event_type VARCHAR(64) NOT NULL,
    level VARCHAR(8) NOT NULL,
    message TEXT,
    data JSON,
    UNIQUE (run_pk, seq)
);
"""


def event_data(i: int) -> dict[str, object]:
    """A typical item event's data: a few small fields."""
    return {"index": i, "item": f"record {i} from the nightly export", "length": 31 + i % 7}


WORDS = "fetch load table rows copied part parquet checksum retry connection bytes done".split()


def output_data(i: int) -> dict[str, object]:
    """An output line's data: a line of a typical job's log."""
    words = " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(6))
    return {"stream": "stdout", "line": f"2026-12-02 03:{i % 60:02d}:{i % 59:02d} {words} {i}"}


KINDS = {
    "items": ("item_processed", event_data),
    "output": ("output", output_data),
    "indexed": ("output", output_data),  # into a store with the search index on
}


def ingest_runstore(db: Path, n: int, kind: str) -> float:
    from runstore import RunLogger
    from runstore.store.store import Store

    event_type, data = KINDS[kind]
    store = Store.open(db)  # creates the schema: not part of a run
    if kind == "indexed":
        from runstore.store.search import create_index

        store.write(create_index)
    started = time.perf_counter()
    with RunLogger("bench-ingest", store=store, argv=["bench"]) as run:
        log = run.log_event
        for i in range(n):
            log(event_type, data(i))
    elapsed = time.perf_counter() - started
    stored = store.get_run(run.run_pk)["event_count"]
    assert stored == n + 2, stored  # run_started and run_finished besides the items
    return elapsed


def ingest_raw(db: Path, n: int, kind: str) -> float:
    event_type, data = KINDS[kind]
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(RAW_SCHEMA)
    con.execute("INSERT INTO runs (id, run_id, job) VALUES (1, 'raw', 'bench-ingest')")
    started = time.perf_counter()
    now, utc, dumps = datetime.now, timezone.utc, json.dumps
    rows = (
        (
            1,
            i + 1,
            now(utc).isoformat(" ", "microseconds")[:26],
            event_type,
            "info",
            None,
            dumps(data(i)),
        )
        for i in range(n)
    )
    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO events (run_pk, seq, ts, event_type, level, message, data) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    con.execute("COMMIT")
    elapsed = time.perf_counter() - started
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == n
    con.close()
    return elapsed


def run_variant(variant: str, db: str, n: int) -> None:
    side, kind = variant.split("-")
    elapsed = (ingest_runstore if side == "runstore" else ingest_raw)(Path(db), n, kind)
    print(json.dumps({"seconds": elapsed}))


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--events", type=int, default=None, help=f"default {EVENTS:,}")
        parser.add_argument("--child", nargs=2, metavar=("VARIANT", "DB"), help="(internal)")

    args = arguments(__doc__.splitlines()[0], options)
    n = args.events or (20_000 if args.quick else EVENTS)
    if args.child:
        run_variant(args.child[0], args.child[1], n)
        return
    repeat = args.repeat or (2 if args.quick else 7)
    progress(f"ingest: {n:,} events, {repeat} interleaved repetitions")
    with tempfile.TemporaryDirectory(prefix="runstore-bench-") as tmp:
        counter = iter(range(1_000_000))

        def measure(variant: str) -> float:
            db = Path(tmp) / f"{variant}-{next(counter)}.db"
            argv = [PYTHON, __file__, "--child", variant, str(db), "--events", str(n)]
            out = run_child(argv, capture=True).stdout
            for leftover in Path(tmp).glob(f"{db.name}*"):
                leftover.unlink()
            return n / json.loads(out)["seconds"]

        variants = [f"{side}-{kind}" for kind in KINDS for side in ("runstore", "raw")]
        samples = interleaved(
            {variant: (lambda v=variant: measure(v)) for variant in variants}, repeat, warmup=1
        )
    figures, notes = [], []
    for kind, label, low in (
        ("items", "events", 0.5),
        ("output", "output lines", 0.5),
        ("indexed", "output lines, search index on", 0.15),
    ):
        ours, raw = samples[f"runstore-{kind}"], samples[f"raw-{kind}"]
        figures.append(
            at_least_ratio(f"ingest {n:,} {label}", median(ours), median(raw), "events/s", low)
        )
        notes += [
            f"runstore {kind}: " + ", ".join(f"{v:,.0f}" for v in ours),
            f"raw {kind}:      " + ", ".join(f"{v:,.0f}" for v in raw),
        ]
    report(figures, notes)


if __name__ == "__main__":
    sys.exit(main())
