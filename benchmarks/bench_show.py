"""Figure 6: reading one big run back. A run of 2,000,000 events (``runstore run`` over a
2,000,000-line input) is shown with ``runstore show RUN`` into a pipe, next to ``runstore export
RUN`` (its run_log.json) of the same run: ``show`` streams as ``export`` does, so its time stays
within 2x of export's and its memory flat (peak RSS under 100 MB, whatever the run's size).
``show --jsonl`` is measured too.

    python benchmarks/bench_show.py              # 2,000,000 events
    python benchmarks/bench_show.py --quick      # 200,000

The store is made once by runstore itself and cached under the temporary directory, keyed by
its size and the schema revision.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from common import (
    RUNSTORE,
    arguments,
    at_most,
    at_most_ratio,
    child_env,
    interleaved,
    median,
    own_peak_rss_mb,
    progress,
    report,
    run_child,
)

EVENTS = 2_000_000
QUICK_EVENTS = 200_000
CACHE = Path(tempfile.gettempdir()) / "runstore-bench"
RUN_ID = "big-run"
SHOW_RATIO = 2.0
SHOW_RSS_MB = 100.0


def big_store(events: int) -> Path:
    """A store holding one run of about ``events`` events, made by ``runstore run``."""
    from runstore.store.schema import SCHEMA_REVISION

    store = CACHE / f"show-{events}-{SCHEMA_REVISION}.db"
    if store.exists():
        return store
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="runstore-bench-") as tmp:
        lines = Path(tmp) / "input.txt"
        with open(lines, "w", encoding="utf-8") as f:
            for i in range(events - 4):  # run_started, processing_started/completed, finished
                f.write(f"item {i}: refresh the materialised view for region {i % 97}\n")
        building = Path(tmp) / "store.db"
        progress(f"building a run of {events:,} events (once; cached in {CACHE})")
        run_child(
            [RUNSTORE, "run", "--input", str(lines), "--output", str(Path(tmp) / "out.json"),
             "--run-id", RUN_ID, "--db", str(building)],
            env=child_env(),
        )  # fmt: skip
        shutil.move(building, store)
    return store


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--events", type=int, default=None, help="events in the run")

    args = arguments(__doc__.splitlines()[0], options)
    events = args.events or (QUICK_EVENTS if args.quick else EVENTS)
    repeat = args.repeat or (1 if args.quick else 3)
    store = big_store(events)
    env = child_env(RUNSTORE_DB=str(store), PAGER="")
    runs: dict[str, list] = {"show": [], "show --jsonl": [], "export": []}

    def timed(name: str, argv: list[str]) -> float:
        child = run_child(argv, env=env)
        runs[name].append(child)
        return child.wall_s

    progress(f"show and export of {events:,} events, {repeat} times each, interleaved")
    samples = interleaved(
        {
            "show": lambda: timed("show", [RUNSTORE, "show", RUN_ID]),
            "show --jsonl": lambda: timed("show --jsonl", [RUNSTORE, "show", RUN_ID, "--jsonl"]),
            "export": lambda: timed("export", [RUNSTORE, "export", RUN_ID]),
        },
        repeat,
    )
    show, jsonl, export = (median(samples[n]) for n in ("show", "show --jsonl", "export"))
    peak = max(child.peak_rss_mb for child in runs["show"])
    export_peak = max(child.peak_rss_mb for child in runs["export"])
    label = f"{events:,} events"
    report(
        [
            at_most_ratio(f"show RUN | ... ({label}, vs export)", show, export, "s", SHOW_RATIO),
            at_most_ratio(f"show RUN --jsonl ({label}, vs export)", jsonl, export, "s", SHOW_RATIO),
            at_most(f"show RUN peak RSS ({label})", peak, export_peak, "MB", SHOW_RSS_MB),
        ],
        notes=[
            f"driver's own peak RSS (the floor under every child's): {own_peak_rss_mb():.1f} MB"
        ],
    )


if __name__ == "__main__":
    main()
