"""Figure 8: the events channel of ``runstore exec`` (``RUNSTORE_EVENTS``). One event: the wall
time of a ``runstore event "loaded" --data '{"rows": N}'`` call made from a shell loop inside
``runstore exec``, timed by the script itself, next to ``python -c pass`` (the same interpreter)
called in the same loop: a call down the channel should cost little more than starting Python.
Many events: a shell loop echoing 10,000 JSON lines into ``$RUNSTORE_EVENTS``, the whole exec
timed, next to the same loop writing to /dev/null without runstore. Every event sent is counted
in the store afterwards; one missing is an error. A fresh store; medians of interleaved runs.

    python benchmarks/bench_events.py            # 100 calls, 10,000 lines
    python benchmarks/bench_events.py --quick    # 20 calls, 10,000 lines, fewer repetitions
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

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
    progress,
    report,
    run_child,
)

CALLS, QUICK_CALLS = 100, 20
LINES = 10_000
# One `runstore event` down the channel: within 3x of a bare Python start.
CALL_RATIO = 3.0
# 10,000 events echoed into the channel: the whole exec, start-up included, under 2 s.
LINES_LIMIT_S = 2.0

# $1 runs $2 times in a loop; the script prints the loop's time in nanoseconds.
TIMED_LOOP = (
    't0=$(date +%s%N); i=0; while [ "$i" -lt "$2" ]; do {call}; i=$((i + 1)); done; '
    't1=$(date +%s%N); echo "$((t1 - t0))"'
)
EVENT_CALL = '"$1" event loaded --data "{\\"rows\\": $i}"'
PYTHON_CALL = '"$1" -c pass'
# $1 lines, each appended to {target}: the channel, or /dev/null for the baseline.
ECHO_LOOP = (
    'i=0; while [ "$i" -lt "$1" ]; do '
    'echo "{{\\"type\\": \\"rows_loaded\\", \\"rows\\": $i}}" >> {target}; '
    "i=$((i + 1)); done"
)


def count(db: str, query: str, run_id: str) -> dict[str, int]:
    """One row of counts for ``run_id``, asked of ``runstore sql`` (what a user would do)."""
    argv = [RUNSTORE, "sql", query, "--param", f"run={run_id}", "--json", "--db", db]
    rows = json.loads(run_child(argv, env=child_env(), capture=True).stdout)
    return {key: int(value or 0) for key, value in rows[0].items()}


def check(run_id: str, got: dict[str, int], wanted: dict[str, int]) -> None:
    """Stop the benchmark (exit 1) unless the store has what was sent: a lost event is a bug."""
    if got != wanted:
        raise SystemExit(f"run {run_id}: the store should have {wanted}, it has {got}")


def per_call_ms(stdout: str, calls: int) -> float:
    """A timed loop's time per call, in ms: the script prints nanoseconds (GNU ``date +%N``)."""
    words = stdout.split()
    if not words or not words[-1].isdigit():
        raise SystemExit(f"the timed loop printed {stdout!r}, not a count of nanoseconds")
    return int(words[-1]) / calls / 1e6


CALLED = (
    "SELECT count(*) AS events, count(DISTINCT json_extract(e.data, '$.rows')) AS distinct_rows "
    "FROM events e JOIN runs r ON r.id = e.run_pk "
    "WHERE r.run_id = :run AND e.event_type = 'log' AND e.message = 'loaded'"
)
ECHOED = (
    "SELECT count(*) FILTER (WHERE e.event_type = 'rows_loaded') AS events, "
    "count(DISTINCT json_extract(e.data, '$.rows')) FILTER (WHERE e.event_type = 'rows_loaded') "
    "AS distinct_rows, count(*) FILTER (WHERE e.event_type = 'malformed_event') AS malformed "
    "FROM events e JOIN runs r ON r.id = e.run_pk WHERE r.run_id = :run"
)


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--calls", type=int, default=None, help="`runstore event` calls a repetition makes"
        )
        parser.add_argument(
            "--lines", type=int, default=LINES, help="lines echoed into the channel (10,000)"
        )

    args = arguments(__doc__.splitlines()[0], options)
    repeat = args.repeat or (3 if args.quick else 11)
    calls = args.calls or (QUICK_CALLS if args.quick else CALLS)
    lines = args.lines
    figures: list[Figure] = []
    notes: list[str] = []
    numbers = itertools.count(1)
    with tempfile.TemporaryDirectory(prefix="runstore-bench-") as tmp:
        db = str(Path(tmp) / "store.db")
        env = child_env()
        run_child([RUNSTORE, "exec", "--db", db, "--", "true"], env=env)  # creates the store

        def exec_argv(run_id: str, script: str, *words: str) -> list[str]:
            return [RUNSTORE, "exec", "--db", db, "--job", "bench", "--run-id", run_id, "--",
                    "sh", "-c", script, "sh", *words]  # fmt: skip

        # -- one event from a shell script
        def event_calls() -> float:
            run_id = f"bench-event-{next(numbers)}"
            script = TIMED_LOOP.format(call=EVENT_CALL)
            out = run_child(exec_argv(run_id, script, RUNSTORE, str(calls)), env=env, capture=True)
            check(run_id, count(db, CALLED, run_id), {"events": calls, "distinct_rows": calls})
            return per_call_ms(out.stdout, calls)

        def python_calls() -> float:
            script = TIMED_LOOP.format(call=PYTHON_CALL)
            out = run_child(["sh", "-c", script, "sh", PYTHON, str(calls)], env=env, capture=True)
            return per_call_ms(out.stdout, calls)

        progress(f"events, one call: {calls} calls a repetition, {repeat} interleaved repetitions")
        samples = interleaved({"event": event_calls, "python": python_calls}, repeat, warmup=1)
        ms = {name: median(values) for name, values in samples.items()}
        figures.append(
            at_most_ratio(
                "runstore event inside exec (one call)", ms["event"], ms["python"], "ms", CALL_RATIO
            )
        )
        notes.append(
            f"one event: the mean of {calls} calls in a shell loop, timed by the script; "
            f"baseline `python -c pass` in the same loop ({ms['python']:.1f} ms); every call's "
            "event counted in the store"
        )

        # -- many events echoed into the channel
        def echoed() -> float:
            run_id = f"bench-echo-{next(numbers)}"
            script = ECHO_LOOP.format(target='"$RUNSTORE_EVENTS"')
            wall = run_child(exec_argv(run_id, script, str(lines)), env=env).wall_s
            wanted = {"events": lines, "distinct_rows": lines, "malformed": 0}
            check(run_id, count(db, ECHOED, run_id), wanted)
            return wall

        def to_null() -> float:
            script = ECHO_LOOP.format(target="/dev/null")
            return run_child(["sh", "-c", script, "sh", str(lines)], env=env).wall_s

        progress(f"events, echoed: {lines:,} lines, {repeat} interleaved repetitions")
        samples = interleaved({"exec": echoed, "null": to_null}, repeat, warmup=1)
        wall = {name: median(values) for name, values in samples.items()}
        name = f"exec, {lines:,} events echoed into the channel"
        figures.append(at_most(name, wall["exec"], wall["null"], "s", LINES_LIMIT_S))
        notes.append(
            f"echoed events: the whole exec (start-up included) {wall['exec']:.2f} s; baseline "
            f"the same loop to /dev/null without runstore ({wall['null'] * 1000:.0f} ms); all "
            f"{lines:,} rows_loaded events counted in the store, none malformed"
        )
    report(figures, notes)


if __name__ == "__main__":
    sys.exit(main())
