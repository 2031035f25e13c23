"""Figure 2: ``runstore run`` end to end on a 1,000,000-line input (the run and event rows,
processed.json and run_log.json), next to a minimal hand-written sqlite3 + json script doing the
same writes: a run row first, one event row per item, processed.json, then run_log.json read back
from the rows. Both write their files to a temporary name, fsync and rename. Wall time is the
whole process (start-up included); peak RSS is the child's own, from ``os.wait4``.

Each repetition writes into a fresh store: runstore's is a copy of an empty store created once
(creating the schema is not part of a run), the script creates its two tables itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from common import (
    PYTHON,
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

LINES = 1_000_000

WORDS = (
    "extract customer records from the CRM export",
    "validate invoice totals against the ledger",
    "résumé upload für Zoë — normalise names",
    "compress yesterday's access logs",
    "refresh the materialised sales view",
)


def make_input(path: Path, lines: int) -> None:
    """Mostly items of 20-80 characters, some non-ASCII; a comment or a blank line now and then."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(lines):
            if i % 500 == 0:
                f.write(f"# batch {i // 500}\n")
            elif i % 777 == 0:
                f.write("\n")
            else:
                f.write(f"{WORDS[i % len(WORDS)]} #{i}{' x' * (i % 13)}\n")


# -- the baseline: what a person would write by hand ---------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, job TEXT NOT NULL, status TEXT NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT, duration_ms INTEGER, event_count INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, run_pk INTEGER NOT NULL REFERENCES runs (id), seq INTEGER NOT NULL,
    ts TEXT NOT NULL, event_type TEXT NOT NULL, level TEXT NOT NULL, message TEXT, data TEXT,
    UNIQUE (run_pk, seq)
);
"""


def baseline_job(input_path: str, output_path: str, log_path: str, db: str) -> None:
    def now() -> str:
        return datetime.now(timezone.utc).isoformat(" ", "microseconds")[:26]

    quote = json.encoder.encode_basestring  # type: ignore[attr-defined]
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(SCHEMA)
    started = now()
    run_pk = con.execute(
        "INSERT INTO runs (run_id, job, status, started_at) VALUES (?, ?, 'running', ?)",
        ("baseline", "process-lines", started),
    ).lastrowid

    def items(out):  # type: ignore[no-untyped-def]
        index = 0
        out.write("[")
        with open(input_path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                q = quote(text)
                out.write("\n  " if index == 0 else ",\n  ")
                out.write(
                    f'{{"index": {index}, "item": {q}, "processed": true, '
                    f'"line": {number}, "length": {len(text)}}}'
                )
                yield (
                    run_pk,
                    index + 1,
                    now(),
                    "item_processed",
                    "info",
                    None,
                    f'{{"index": {index}, "item": {q}, "length": {len(text)}}}',
                )
                index += 1
        out.write("\n]\n")

    tmp_out = output_path + ".tmp"
    with open(tmp_out, "w", encoding="utf-8") as out:
        con.execute("BEGIN")
        con.executemany(
            "INSERT INTO events (run_pk, seq, ts, event_type, level, message, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            items(out),
        )
        count = con.execute("SELECT count(*) FROM events WHERE run_pk = ?", (run_pk,)).fetchone()
        con.execute(
            "UPDATE runs SET status = 'completed', finished_at = ?, event_count = ? WHERE id = ?",
            (now(), count[0], run_pk),
        )
        con.execute("COMMIT")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp_out, output_path)

    tmp_log = log_path + ".tmp"
    with open(tmp_log, "w", encoding="utf-8") as out:
        run = con.execute(
            "SELECT run_id, status, started_at, finished_at, event_count FROM runs WHERE id = ?",
            (run_pk,),
        ).fetchone()
        header = dict(zip(("run_id", "status", "start_time", "end_time", "event_count"), run))
        out.write(json.dumps(header, indent=2)[:-2] + ',\n  "events": [')
        prefix = '{"run_id": ' + json.dumps(run[0])
        rows = con.execute(
            "SELECT seq, ts, event_type, level, message, data FROM events "
            "WHERE run_pk = ? ORDER BY seq",
            (run_pk,),
        )
        for i, (seq, ts, etype, level, message, data) in enumerate(rows):
            out.write("\n    " if i == 0 else ",\n    ")
            out.write(
                f'{prefix}, "seq": {seq}, "timestamp": "{ts}", "event_type": "{etype}", '
                f'"level": "{level}", "message": {json.dumps(message)}, "data": {data}}}'
            )
        out.write("\n  ]\n}\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp_log, log_path)
    con.close()


def check_outputs(output_path: str, log_path: str) -> None:
    """Both files parse, and hold one record and one item event per item: print the count."""
    with open(output_path, encoding="utf-8") as f:
        processed = json.load(f)
    with open(log_path, encoding="utf-8") as f:
        events = json.load(f)["events"]
    items = sum(1 for e in events if e["event_type"] == "item_processed")
    if items != len(processed):
        raise SystemExit(f"{items} item events for {len(processed)} records")
    print(items)


# -- the benchmark ---------------------------------------------------------------------------------


def empty_store(path: Path) -> None:
    """An empty runstore store, created by runstore."""
    run_child([RUNSTORE, "db", "upgrade", "--quiet", "--db", str(path)], env=child_env())


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--lines", type=int, default=None, help=f"default {LINES:,}")
        parser.add_argument("--baseline", nargs=4, metavar=("IN", "OUT", "LOG", "DB"))
        parser.add_argument("--check", nargs=2, metavar=("OUT", "LOG"))

    args = arguments(__doc__.splitlines()[0], options)
    if args.baseline:
        baseline_job(*args.baseline)
        return
    if args.check:
        check_outputs(*args.check)
        return
    lines = args.lines or (100_000 if args.quick else LINES)
    repeat = args.repeat or (1 if args.quick else 5)
    with tempfile.TemporaryDirectory(prefix="runstore-bench-") as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "input.txt"
        progress(f"run: writing a {lines:,}-line input")
        make_input(source, lines)
        template = tmp / "template.db"
        empty_store(template)
        progress(f"run: {lines:,} lines, {repeat} interleaved repetitions")
        peaks: dict[str, list[float]] = {"runstore": [], "script": []}
        counter = iter(range(1_000_000))
        counts: list[str] = []

        def measure(variant: str) -> float:
            n = next(counter)
            work = tmp / f"{variant}-{n}"
            work.mkdir()
            out, log, db = work / "processed.json", work / "run_log.json", work / "store.db"
            if variant == "runstore":
                shutil.copyfile(template, db)
                os.chmod(db, 0o600)
                argv = [RUNSTORE, "run", "--input", str(source), "--output", str(out)]
                argv += ["--log", str(log), "--run-id", f"bench-{n}", "--db", str(db)]
            else:
                argv = [PYTHON, __file__, "--baseline", str(source), str(out), str(log), str(db)]
            child = run_child(argv, env=child_env())
            peaks[variant].append(child.peak_rss_mb)
            if n < 2:  # the first of each: both outputs parse and agree (checked in a child)
                counts.append(
                    run_child(
                        [PYTHON, __file__, "--check", str(out), str(log)], capture=True
                    ).stdout
                )
            shutil.rmtree(work)
            return child.wall_s

        samples = interleaved(
            {"runstore": lambda: measure("runstore"), "script": lambda: measure("script")},
            repeat,
        )
    if len(set(counts)) != 1:
        raise SystemExit(f"runstore and the script disagree on the items: {counts}")
    wall, base = median(samples["runstore"]), median(samples["script"])
    rss, base_rss = max(peaks["runstore"]), max(peaks["script"])
    report(
        [
            at_most_ratio(f"run {lines:,} lines: wall", wall, base, "s", 2.5),
            at_most(f"run {lines:,} lines: peak RSS", rss, base_rss, "MB", 100),
        ],
        [
            "runstore s: " + ", ".join(f"{v:.2f}" for v in samples["runstore"]),
            "script s:   " + ", ".join(f"{v:.2f}" for v in samples["script"]),
            f"peak RSS: script {base_rss:.1f} MB; this driver {own_peak_rss_mb():.1f} MB "
            "(a child's reported peak is never below it)",
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
