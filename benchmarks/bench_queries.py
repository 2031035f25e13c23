"""Figure 5: the query commands on a big store. A SQLite store of 1,000,000 runs over 50 jobs
(about 5% of them not completed) answers ``history --failed --limit 20`` (the library call, and
the whole command next to ``python -c "import sqlalchemy, typer"``) and ``stats`` over every run
(library and command); the commands' peak RSS is compared with the same commands on a store ten
times smaller: memory must stay flat in the number of runs.

    python benchmarks/bench_queries.py                 # 1,000,000 runs
    python benchmarks/bench_queries.py --runs 200000   # another size
    python benchmarks/bench_queries.py --try-indexes   # also: would another index help?

The store is created by runstore (so the schema, indexes and views are the real ones), filled with
raw ``sqlite3.executemany`` and cached under the temporary directory, keyed by its size and the
schema revision; later runs reuse it. The timing driver stays small: building the store and the
library calls run in child processes, so that the children's peak RSS (from ``os.wait4``) is
their own.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from common import (
    PYTHON,
    RUNSTORE,
    Figure,
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

DEFAULT_RUNS = 1_000_000
QUICK_RUNS = 100_000
JOBS = 50
CACHE = Path(tempfile.gettempdir()) / "runstore-bench"
FORMAT_VERSION = 2  # bump when the generated data changes, so old cached stores are not reused

HISTORY_TARGET_MS = 10.0
STATS_TARGET_S = 1.0
# The command is start-up plus a query: within 1.5x of importing its two big dependencies.
COMMAND_RATIO = 1.5
# Flat memory: the commands' peak RSS on N runs within 1.2x of the same on N/10 runs.
FLAT_RATIO = 1.2

# Candidates for --try-indexes: a covering index for counting runs by (job, status).
CANDIDATE_INDEXES = {
    "ix_bench_job_status_duration": "CREATE INDEX ix_bench_job_status_duration "
    "ON runs (job, status, duration_ms)",
}


# -- building the store (in a child process) -------------------------------------------------------


def generate(n: int, jobs: int, seed: int = 20261128) -> Any:
    """Rows for the runs table, oldest first: every job every half hour or so, durations
    log-normal around a per-job typical time, about 5% not completed (a few jobs much flakier)."""
    from runstore.store.timestamps import sqlite_timestamp

    rng = random.Random(seed)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    span = timedelta(minutes=30) * (n // max(jobs, 1) + 1)
    start = now - span
    typical_ms = [int(200 * 1.25**j) for j in range(jobs)]  # 200 ms ... about 9 hours
    failure_rate = [0.30 if j % 17 == 3 else 0.035 for j in range(jobs)]
    step = span / n
    for i in range(n):
        j = rng.randrange(jobs)
        started = start + step * i
        duration = max(1, int(typical_ms[j] * rng.lognormvariate(0, 0.5)))
        roll = rng.random()
        if roll >= failure_rate[j]:
            status, code, summary = "completed", 0, None
        elif roll < failure_rate[j] * 0.8:
            status, code, summary = "failed", 1, "exit status 1"
        elif roll < failure_rate[j] * 0.95:
            status, code, summary = "cancelled", 143, "terminated by SIGTERM"
        else:
            status, code, summary = "abandoned", None, "abandoned: process 4242 is gone"
        finished = started + timedelta(milliseconds=duration)
        items = rng.randrange(0, 500)
        yield (
            f"bench-{i:08d}.j{j:02d}",
            f"job-{j:02d}",
            status,
            sqlite_timestamp(started),
            sqlite_timestamp(finished),
            duration,
            code,
            summary,
            items + 2,
            items,
            items,
            f"host-{j % 5}",
            10_000 + i % 50_000,
            "batch",
            f"/usr/local/bin/job-{j:02d} --all",
            sqlite_timestamp(finished),
        )


INSERT = (
    "INSERT INTO runs (run_id, job, status, started_at, finished_at, duration_ms, exit_code, "
    "error_summary, event_count, items_total, items_ok, host, pid, username, command, "
    "heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def build(n: int, jobs: int, cache: Path) -> Path:
    """The cached store of ``n`` runs, built when missing. Prints nothing; returns its path."""
    from itertools import islice

    from runstore.store import engine as engines
    from runstore.store.schema import SCHEMA_REVISION
    from runstore.store.store import Store

    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"queries-{n}-{jobs}-r{SCHEMA_REVISION}-v{FORMAT_VERSION}.db"
    if path.exists():
        return path
    partial = path.with_name(path.name + ".partial")
    for stale in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        stale.unlink(missing_ok=True)
    Store.open(str(partial))  # the real schema, indexes and views, in WAL mode
    engines.dispose_all()
    conn = sqlite3.connect(partial)
    try:
        conn.execute("PRAGMA synchronous=OFF")  # a benchmark fixture: nothing to keep on a crash
        rows = generate(n, jobs)
        with conn:
            while chunk := list(islice(rows, 50_000)):
                conn.executemany(INSERT, chunk)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    partial.rename(path)
    return path


# -- library timings (in a child process) ----------------------------------------------------------


def library(path: Path, n: int, repeat: int, try_indexes: bool) -> dict[str, Any]:
    """Median-ready samples of the library calls, the query plans, and candidate indexes."""
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    from runstore.history.queries import HistoryFilter, check_job, history, history_query, stats
    from runstore.store.schema import NOT_COMPLETED_STATUSES
    from runstore.store.store import Store

    store = Store.open(str(path))
    failed = HistoryFilter(statuses=NOT_COMPLETED_STATUSES, limit=20)
    week_ago = datetime.now(timezone.utc) - timedelta(days=7)

    def timed(work: Any) -> float:
        began = time.perf_counter()
        work()
        return time.perf_counter() - began

    samples = interleaved(
        {
            "history": lambda: timed(lambda: history(store, failed)),
            "stats": lambda: timed(lambda: stats(store)),
            "stats_7d": lambda: timed(lambda: stats(store, since=week_ago)),
            "check": lambda: timed(lambda: check_job(store, "job-07", max_age_s=86400)),
            "find_prefix": lambda: timed(lambda: store.find_run(f"bench-{n // 2:08d}")),
        },
        repeat,
        warmup=1,
    )
    sql = str(
        history_query(failed).compile(
            dialect=sqlite_dialect.dialect(), compile_kwargs={"literal_binds": True}
        )
    )
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    plans = {}
    for what, query in (
        ("history --failed", sql),
        ("stats, runs per job", "SELECT job, count(*) FROM runs GROUP BY job"),
        (
            "stats, runs not completed",
            "SELECT job, status, count(*) FROM runs WHERE status IN "
            "('running', 'failed', 'cancelled', 'abandoned') GROUP BY job, status",
        ),
    ):
        plans[what] = [r[3] for r in raw.execute(f"EXPLAIN QUERY PLAN {query}")]
    raw.close()
    out: dict[str, Any] = {"samples": samples, "plans": plans, "indexes": {}}
    if try_indexes:
        out["indexes"] = _try_indexes(path, repeat)
    return out


def _try_indexes(path: Path, repeat: int) -> dict[str, Any]:
    """``stats`` on a copy of the store with each candidate index added."""
    from runstore.history.queries import stats
    from runstore.store import engine as engines
    from runstore.store.store import Store

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="runstore-bench-") as tmp:
        for name, ddl in CANDIDATE_INDEXES.items():
            copy = Path(tmp) / "copy.db"
            shutil.copyfile(path, copy)
            conn = sqlite3.connect(copy)
            with conn:
                conn.execute(ddl)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the index into the file, for its size
            conn.close()
            store = Store.open(str(copy))
            stats(store)  # warm
            times = []
            for _ in range(repeat):
                began = time.perf_counter()
                stats(store)
                times.append(time.perf_counter() - began)
            engines.dispose_all()
            results[name] = {"ddl": ddl, "stats_s": times, "bytes": copy.stat().st_size}
            copy.unlink()
    return results


# -- the driver ------------------------------------------------------------------------------------


def child_json(*argv: str) -> Any:
    return json.loads(run_child([PYTHON, __file__, *argv], capture=True).stdout)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return

    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--runs", type=int, default=None, help="runs in the big store")
        parser.add_argument("--jobs", type=int, default=JOBS, help="jobs the runs belong to")
        parser.add_argument("--cache", type=Path, default=CACHE, help="where stores are kept")
        parser.add_argument(
            "--try-indexes", action="store_true", help="measure stats with candidate indexes"
        )

    args = arguments(__doc__.splitlines()[0], options)
    n = args.runs or (QUICK_RUNS if args.quick else DEFAULT_RUNS)
    small_n = max(n // 10, 1000)
    repeat = args.repeat or (3 if args.quick else 7)
    figures: list[Figure] = []
    notes: list[str] = []

    stores = {}
    for size in (n, small_n):
        progress(f"store of {size:,} runs (built once, then cached in {args.cache})")
        began = time.perf_counter()
        stores[size] = child_json("--child", "build", str(size), str(args.jobs), str(args.cache))
        progress(f"  ready in {time.perf_counter() - began:.1f} s: {stores[size]['path']}")

    big = Path(stores[n]["path"])
    progress(f"library calls: {repeat} interleaved repetitions")
    lib = child_json(
        "--child", "library", str(big), str(n), str(repeat), "1" if args.try_indexes else "0"
    )
    history_ms = median(lib["samples"]["history"]) * 1000
    stats_s = median(lib["samples"]["stats"])
    figures.append(
        at_most(
            f"history --failed --limit 20, library ({n:,} runs)",
            history_ms,
            None,
            "ms",
            HISTORY_TARGET_MS,
        )
    )
    figures.append(
        at_most(
            f"stats over all runs, library ({n:,} runs)",
            stats_s * 1000,
            None,
            "ms",
            STATS_TARGET_S * 1000,
        )
    )

    commands = {
        "imports": [PYTHON, "-c", "import sqlalchemy, typer"],
        "history": [RUNSTORE, "history", "--failed", "--limit", "20"],
        "stats": [RUNSTORE, "stats"],
    }
    progress(f"commands: {repeat} interleaved repetitions on {n:,} and {small_n:,} runs")
    peaks: dict[tuple[str, int], list[float]] = {}

    def command(name: str, size: int) -> Any:
        env = child_env(RUNSTORE_DB=stores[size]["path"])

        def once() -> float:
            child = run_child(commands[name], env=env)
            peaks.setdefault((name, size), []).append(child.peak_rss_mb)
            return child.wall_s

        return once

    samples = interleaved(
        {
            "imports": command("imports", n),
            "history": command("history", n),
            "stats": command("stats", n),
            "history small": command("history", small_n),
            "stats small": command("stats", small_n),
        },
        repeat,
        warmup=1,
    )
    ms = {name: median(values) * 1000 for name, values in samples.items()}
    figures.append(
        at_most_ratio(
            "runstore history --failed --limit 20 (vs imports)",
            ms["history"],
            ms["imports"],
            "ms",
            COMMAND_RATIO,
        )
    )
    figures.append(
        at_most_ratio(
            "runstore stats (vs imports + library stats)",
            ms["stats"],
            ms["imports"] + stats_s * 1000,
            "ms",
            COMMAND_RATIO,
        )
    )
    for name in ("history", "stats"):
        rss_big = median(peaks[(name, n)])
        rss_small = median(peaks[(name, small_n)])
        figures.append(
            at_most_ratio(
                f"runstore {name} peak RSS, {n:,} vs {small_n:,} runs",
                rss_big,
                rss_small,
                "MB",
                FLAT_RATIO,
            )
        )

    notes.append(
        f"library medians: history --failed {history_ms:.2f} ms, stats {stats_s * 1000:.0f} ms, "
        f"stats --since 7d {median(lib['samples']['stats_7d']) * 1000:.0f} ms, "
        f"check {median(lib['samples']['check']) * 1000:.2f} ms, show by id prefix "
        f"{median(lib['samples']['find_prefix']) * 1000:.1f} ms"
    )
    notes.append(
        f"commands: imports {ms['imports']:.0f} ms, history {ms['history']:.0f} ms "
        f"({ms['history'] / ms['imports']:.2f}x), stats {ms['stats']:.0f} ms "
        f"({ms['stats'] / ms['imports']:.2f}x); on {small_n:,} runs: history "
        f"{ms['history small']:.0f} ms, stats {ms['stats small']:.0f} ms"
    )
    notes.append(
        "peak RSS (MB): "
        + ", ".join(f"{name} {size:,} runs {median(v):.0f}" for (name, size), v in peaks.items())
        + f"; driver's own floor {own_peak_rss_mb():.0f} MB"
    )
    for what, plan in lib["plans"].items():
        notes.append(f"plan, {what}: " + " / ".join(plan))
    for found in lib["indexes"].values():
        with_index = median(found["stats_s"])
        notes.append(
            f"with {found['ddl']}: stats {with_index * 1000:.0f} ms vs {stats_s * 1000:.0f} ms "
            f"(a speed-up of {stats_s / with_index:.2f}x), store {found['bytes'] / 1e6:.0f} MB "
            f"vs {big.stat().st_size / 1e6:.0f} MB"
        )
    report(figures, notes)


def _child(argv: list[str]) -> None:
    """The work that must not grow the driver: prints one JSON document."""
    what, rest = argv[0], argv[1:]
    if what == "build":
        path = build(int(rest[0]), int(rest[1]), Path(rest[2]))
        print(json.dumps({"path": str(path)}))
    elif what == "library":
        print(json.dumps(library(Path(rest[0]), int(rest[1]), int(rest[2]), rest[3] == "1")))
    else:
        raise SystemExit(f"unknown child task {what!r}")


if __name__ == "__main__":
    sys.exit(main())
