"""``make bench``: run every ``benchmarks/bench_*.py``, each in its own process, then print all
their figures in one table.

    python benchmarks/run_all.py            # the figures as RESULTS.md records them
    python benchmarks/run_all.py --quick    # fewer, smaller repetitions: a smoke run
    python benchmarks/run_all.py ingest run # only bench_ingest.py and bench_run.py

A benchmark script takes ``--quick`` and reports its figures through ``common.report``. The exit
code is 1 when a script fails, 0 otherwise: a missed target is reported, not an error.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS_ENV, load_results, table

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and smaller repetitions")
    parser.add_argument("only", nargs="*", help="run only these (ingest, run, startup, ...)")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    failed = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="runstore-bench-") as tmp:
        collected = Path(tmp) / "figures.jsonl"
        collected.touch()
        env = {**os.environ, RESULTS_ENV: str(collected)}
        for script in scripts:
            print(f"\n== {script.name}", flush=True)
            argv = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
            began = time.monotonic()
            code = subprocess.call(argv, env=env, cwd=HERE)
            print(f"   ({time.monotonic() - began:.0f} s)", flush=True)
            if code != 0:
                failed.append(script.name)
        figures = load_results(collected)
    print(f"\n== all figures ({time.monotonic() - started:.0f} s)")
    print(table(figures))
    for name in failed:
        print(f"FAILED: {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
