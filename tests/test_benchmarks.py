"""The benchmarks still run: `make bench`'s driver in its quick mode prints every figure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_every_benchmark_runs_and_reports_its_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run_all.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.split("== all figures", 1)[1]
    for figure in ("ingest", "run 100,000 lines: wall", "runstore --version", "history --limit"):
        assert figure in summary
    assert all(
        line.rstrip().endswith(("PASS", "MISS")) for line in summary.splitlines()[2:] if line
    )
