"""Figure 7: ``runstore ui`` on a big store: 1,000,000 runs over 50 jobs and 10,000,000 events (8
for each run, and one run of 2,000,000). A real ``runstore ui`` process is asked for the overview,
the runs list (filtered, and a page deep by keyset), a job page and the first screen of the big
run, over HTTP; each answer's time is the median of several, after one to warm up. Targets: the
overview, the runs list and a job page under 100 ms; the big run's first screen under 200 ms;
the server's memory bounded whatever the run's size (pages of events, never all of them). And
``runstore history --grep TEXT --limit 20`` (output lines and event messages, through the search
index that ``runstore db search on`` gives the store) for a text a few runs said and for one no
run said, under 1 s each, next to the scan the index saves: ``LIKE`` over every event's message
and output line, by raw ``sqlite3``.

    python benchmarks/bench_ui.py            # 1,000,000 runs, 10,000,000 events
    python benchmarks/bench_ui.py --quick    # 100,000 runs, 1,000,000 events

The store (bench_queries' runs, with events added by raw ``sqlite3.executemany``; a few runs end
with an error event whose message is searched for) is cached under the temporary directory; the
first build takes a few minutes.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from bench_queries import CACHE, JOBS, build
from common import (
    PYTHON,
    RUNSTORE,
    Figure,
    arguments,
    at_most,
    child_env,
    interleaved,
    median,
    progress,
    report,
    run_child,
)

RUNS, QUICK_RUNS = 1_000_000, 100_000
EVENTS_PER_RUN = 8
BIG_EVENTS, QUICK_BIG_EVENTS = 2_000_000, 200_000
PAGE_MS, RUN_PAGE_MS, SERVER_RSS_MB = 100.0, 200.0, 150.0
GREP_S = 1.0
UI_FORMAT = 4  # bump when the generated events or the schema's indexes change: no old store reused
# The error a few runs (GREP_RUNS, spread over the store) end with, and what is searched for.
GREP_RUNS = 5
GREP_MESSAGE = "checksum mismatch in part-00042.parquet, retrying"
GREP_FOUND, GREP_NOWHERE = "checksum mismatch", "disk quota exceeded"
EVENT_INSERT = ("INSERT INTO events (run_pk, seq, ts, event_type, level, message, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)")  # fmt: skip
# What history --grep answers, without its index: every event's message and output line read.
GREP_SCAN = (
    "SELECT run_id FROM runs WHERE id IN (SELECT run_pk FROM events WHERE message LIKE :text "
    "OR (event_type = 'output' AND json_extract(data, '$.line') LIKE :text))"
)


def build_ui_store(runs: int, big: int) -> Path:
    """bench_queries' store of ``runs`` runs, with events for every run and one big run."""
    from runstore.store.schema import SCHEMA_REVISION

    path = CACHE / f"ui-{runs}-{big}-r{SCHEMA_REVISION}-v{UI_FORMAT}.db"
    if path.exists():
        return path
    base = build(runs, JOBS, CACHE)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(base.read_bytes())
    conn = sqlite3.connect(partial)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        with conn:
            rows = conn.execute("SELECT id, started_at FROM runs ORDER BY id").fetchall()
            marked = {rows[len(rows) * k // (GREP_RUNS + 1)][0] for k in range(1, GREP_RUNS + 1)}
            error = (GREP_MESSAGE, json.dumps({"message": GREP_MESSAGE}))
            batch: list[tuple[object, ...]] = []
            for run_pk, started in rows:
                for seq in range(1, EVENTS_PER_RUN + 1):
                    kind = ("run_started" if seq == 1 else "run_finished"
                            if seq == EVENTS_PER_RUN else "output")  # fmt: skip
                    data = (f'{{"stream": "stdout", "line": "step {seq} of run {run_pk}"}}'
                            if kind == "output" else '{"status": "completed"}')  # fmt: skip
                    if run_pk in marked and seq == EVENTS_PER_RUN - 1:  # the last output line
                        batch.append((run_pk, seq, started, "error", "error", *error))
                        continue
                    batch.append((run_pk, seq, started, kind, "info", None, data))
                if len(batch) >= 100_000:
                    conn.executemany(EVENT_INSERT, batch)
                    batch.clear()
            conn.executemany(EVENT_INSERT, batch)
            started = rows[-1][1]
            conn.execute(
                "INSERT INTO runs (run_id, job, status, started_at, finished_at, duration_ms, "
                "exit_code, event_count, host) VALUES ('bench-big', 'job-big', 'completed', ?, ?, "
                "600000, 0, ?, 'host-big')", (started, started, big),
            )  # fmt: skip
            big_pk = conn.execute("SELECT id FROM runs WHERE run_id = 'bench-big'").fetchone()[0]
            for first in range(1, big + 1, 100_000):
                conn.executemany(EVENT_INSERT, [
                    (big_pk, seq, started, "item_processed", "info", None,
                     f'{{"index": {seq}, "item": "row {seq}", "length": 7}}')
                    for seq in range(first, min(big, first + 99_999) + 1)
                ])  # fmt: skip
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    # history --grep through the store's search index, as `runstore db search on` makes it.
    subprocess.run([RUNSTORE, "db", "search", "on", "--db", str(partial)], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    partial.rename(path)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get_ms(url: str) -> float:
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as answer:
        answer.read()
        assert answer.status == 200, url
    return (time.perf_counter() - began) * 1000


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _grep_scan(store: str, text: str) -> tuple[float, list[str]]:
    """The runs whose messages or output lines contain ``text``, found by a scan of every event;
    and the seconds it took."""
    began = time.perf_counter()
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        found = [row[0] for row in conn.execute(GREP_SCAN, {"text": f"%{text}%"})]
    finally:
        conn.close()
    return time.perf_counter() - began, sorted(found)


def grep_figures(store: str, label: str, repeat: int) -> tuple[list[Figure], list[str]]:
    """``history --grep`` for a text a few runs said and for one none did, each checked against
    the scan (the same runs, or the benchmark stops), and timed next to it."""
    texts = {"found": GREP_FOUND, "nowhere": GREP_NOWHERE}

    def history(text: str, *more: str) -> list[str]:
        return [RUNSTORE, "history", "--grep", text, "--db", store, "--limit", "20", *more]

    scans: dict[str, float] = {}
    matched: dict[str, int] = {}
    for name, text in texts.items():
        times, found = zip(*(_grep_scan(store, text) for _ in range(min(repeat, 3))))
        scans[name] = median(times) * 1000
        answer = run_child(history(text, "--json"), env=child_env(), capture=True).stdout
        listed = sorted(run["run_id"] for run in json.loads(answer))
        if listed != found[0] or (name == "found") != bool(listed):
            raise SystemExit(f"history --grep {text!r} lists {listed}, the scan finds {found[0]}")
        matched[name] = len(listed)
    progress(f"  history --grep: {repeat} interleaved repetitions")
    samples = interleaved(
        {
            name: (lambda t=text: run_child(history(t), env=child_env()).wall_s)
            for name, text in texts.items()
        },
        repeat,
        warmup=1,
    )
    ms = {name: median(values) * 1000 for name, values in samples.items()}
    figures = [
        at_most(f"history --grep, a text {matched['found']} runs said ({label})",
                ms["found"], scans["found"], "ms", GREP_S * 1000),
        at_most(f"history --grep, a text no run said ({label})",
                ms["nowhere"], scans["nowhere"], "ms", GREP_S * 1000),
    ]  # fmt: skip
    notes = [
        f"history --grep: the whole command, start-up included ({GREP_FOUND!r}, "
        f"{GREP_NOWHERE!r}); baseline a raw sqlite3 LIKE scan of every event's message and "
        "output line, which found the same runs"
    ]
    return figures, notes


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    runs = QUICK_RUNS if args.quick else RUNS
    big = QUICK_BIG_EVENTS if args.quick else BIG_EVENTS
    repeat = args.repeat or (3 if args.quick else 7)
    progress(f"the store: {runs:,} runs, {runs * EVENTS_PER_RUN + big:,} events (cached)")
    built = run_child([PYTHON, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                       "import bench_ui; print(bench_ui.build_ui_store(int(sys.argv[2]), "
                       "int(sys.argv[3])))", str(Path(__file__).parent), str(runs), str(big)],
                      capture=True, env=child_env())  # fmt: skip
    store = built.stdout.strip().splitlines()[-1]
    port = _free_port()
    server = subprocess.Popen([RUNSTORE, "ui", "--port", str(port), "--db", store],
                              env=child_env(), stderr=subprocess.PIPE)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                _get_ms(base + "/static/runstore.css")
                break
            except OSError:
                time.sleep(0.1)
        deep = urllib.parse.quote(
            json.load(urllib.request.urlopen(base + "/api/runs?job=job-07&limit=1000"))["next"]
        )
        deep_events = min(big - 500, 1_000_000)
        pages = {
            "overview (/)": "/",
            "runs list (/runs)": "/runs",
            "runs, failed of one job": "/runs?job=job-07&status=failed",
            "runs, a page 1,000 deep (keyset)": f"/runs?job=job-07&before={deep}",
            "job page (/jobs/job-07)": "/jobs/job-07",
            f"run page, first screen of a {big:,}-event run": "/runs/bench-big",
            f"run page, a page {deep_events:,} events in": f"/runs/bench-big?after={deep_events}",
        }  # fmt: skip
        timings: dict[str, float] = {}
        for name, path in pages.items():
            _get_ms(base + path)  # warm
            timings[name] = median([_get_ms(base + path) for _ in range(repeat)])
            progress(f"  {name}: {timings[name]:.1f} ms")
        rss = _vm_hwm_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)
    label = f"{runs:,} runs"
    figures = []
    for name, ms in timings.items():
        limit = RUN_PAGE_MS if name.startswith("run page") else PAGE_MS
        figures.append(at_most(f"ui {name} ({label})", ms, None, "ms", limit))
    figures.append(at_most(f"ui server peak RSS ({label})", rss, None, "MB", SERVER_RSS_MB))
    progress("history --grep on the same store")
    searched, notes = grep_figures(store, label, repeat)
    report(figures + searched, notes)


if __name__ == "__main__":
    sys.exit(main())
