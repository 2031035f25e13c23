"""What every benchmark script shares: interleaved timing, a child's peak memory, the figure table.

A benchmark measures runstore next to a raw baseline doing the same work, in the same run, and
prints one line per figure:

    name  value  baseline  ratio  target  PASS/MISS

Repetitions of the variants are interleaved (A B, B A, A B, ...) so that a slow moment of the
machine hits both alike, and each figure is the median of its repetitions. ``report`` prints the
table and, when ``run_all.py`` asks for it (``RUNSTORE_BENCH_RESULTS``), appends the figures as
JSON lines so that the whole run ends with one table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the interpreter running the benchmarks: the project's venv
PYTHON = sys.executable
RUNSTORE = str(BIN / "runstore")
RESULTS_ENV = "RUNSTORE_BENCH_RESULTS"


def arguments(
    description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """The options every benchmark script takes: ``--quick`` (fewer, smaller repetitions, for a
    smoke run) and ``--repeat N``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer and smaller repetitions")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions of each variant")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


# -- measuring -------------------------------------------------------------------------------------


def interleaved(
    variants: dict[str, Callable[[], float]], repeat: int, *, warmup: int = 0
) -> dict[str, list[float]]:
    """Run each variant ``repeat`` times, alternating the order every round; each call returns
    its own measurement. ``warmup`` rounds run first and are thrown away."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + repeat):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            value = variants[name]()
            if round_ >= warmup:
                samples[name].append(value)
    return samples


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@dataclass
class Child:
    """One finished child process: wall time, peak resident memory, exit code and stdout."""

    wall_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str


def run_child(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    capture: bool = False,
    check: bool = True,
) -> Child:
    """Run ``argv`` to its end; its wall time and peak RSS come from ``os.wait4``, so they are
    the child's own. stdout is captured or discarded; stderr passes through.

    Linux counts the memory a child shared with its parent before its exec in the child's peak
    (fork and vfork alike), so the peak reported is never below this process's own peak: keep
    the benchmark driver small (``own_peak_rss_mb`` shows it) and check big outputs in a child.
    """
    actions: list[tuple[object, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
    ]
    read_end = write_end = -1
    if capture:
        read_end, write_end = os.pipe()
        actions += [(os.POSIX_SPAWN_DUP2, write_end, 1), (os.POSIX_SPAWN_CLOSE, read_end)]
    else:
        actions.append((os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0))
    started = time.perf_counter()
    pid = os.posix_spawnp(
        argv[0], list(argv), os.environ if env is None else env, file_actions=actions
    )
    out = b""
    if capture:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            out = pipe.read()
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if check and code != 0:
        raise SystemExit(f"benchmark child failed ({code}): {' '.join(argv)}")
    return Child(wall, usage.ru_maxrss / 1024, code, out.decode())


def own_peak_rss_mb() -> float:
    """This process's peak RSS: the floor under every child's reported peak."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child: this one, without anything that would change what runstore
    does (a store location, debugging), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTORE_")}
    env.update(extra)
    return env


# -- reporting -------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure next to its baseline. ``ratio`` is value / baseline; ``target`` says
    what is wanted in words, ``met`` whether the measurement meets it."""

    name: str
    value: float
    baseline: float | None
    unit: str
    target: str
    met: bool

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline


def at_least_ratio(name: str, value: float, baseline: float, unit: str, low: float) -> Figure:
    """A higher-is-better figure (throughput) that must reach ``low`` times its baseline."""
    return Figure(name, value, baseline, unit, f"ratio >= {low:g}", value >= low * baseline)


def at_most_ratio(name: str, value: float, baseline: float, unit: str, high: float) -> Figure:
    """A lower-is-better figure (time) that must stay within ``high`` times its baseline."""
    return Figure(name, value, baseline, unit, f"ratio <= {high:g}", value <= high * baseline)


def at_most(name: str, value: float, baseline: float | None, unit: str, limit: float) -> Figure:
    """A figure with an absolute ceiling (memory); the baseline is shown for scale."""
    return Figure(name, value, baseline, unit, f"<= {limit:g} {unit}", value <= limit)


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".rstrip()


def table(figures: Sequence[Figure]) -> str:
    rows = [("figure", "value", "baseline", "ratio", "target", "result")]
    for f in figures:
        ratio = f.ratio
        rows.append(
            (
                f.name,
                _number(f.value, f.unit),
                _number(f.baseline, f.unit),
                "-" if ratio is None else f"{ratio:.2f}",
                f.target,
                "PASS" if f.met else "MISS",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {1, 2, 3}
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def report(figures: Sequence[Figure], notes: Sequence[str] = ()) -> None:
    """Print the figures (and any notes); hand them to run_all.py when it is collecting."""
    print(table(figures))
    for note in notes:
        print(f"  {note}")
    sys.stdout.flush()
    collect = os.environ.get(RESULTS_ENV)
    if collect:
        with open(collect, "a", encoding="utf-8") as out:
            for f in figures:
                out.write(json.dumps({**asdict(f), "script": Path(sys.argv[0]).name}) + "\n")


def load_results(path: str | os.PathLike[str]) -> list[Figure]:
    figures = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            record.pop("script", None)
            figures.append(Figure(**record))
    return figures


def progress(message: str) -> None:
    """Progress goes to stderr: stdout is the table."""
    print(message, file=sys.stderr, flush=True)
