"""``runstore run``: the built-in line-processing job, recorded as a run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from runstore.cli._app import (
    DbOption,
    TagOption,
    alert_after_run,
    app,
    error,
    leave,
    parse_tags,
    warn,
)
from runstore.job import DEFAULT_JOB

PROGRESS_MIN_ITEMS = 20_000


@app.command()
def run(
    input: Annotated[
        Path,
        # readable=False: an unreadable input is a failed run (recorded), not a usage error.
        typer.Option("--input", "-i", readable=False, help="Text file: one item per line."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where processed.json goes (- for stdout).")
    ],
    log: Annotated[
        Path | None,
        typer.Option("--log", help="Also write the run as run_log.json here (- for stdout)."),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", help="Unique id for this run. Default: generated, time-sortable."),
    ] = None,
    job: Annotated[
        str, typer.Option("--job", help="Job name the run is filed under.")
    ] = DEFAULT_JOB,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print each event to stdout as it is logged.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    tags: TagOption = None,
    db: DbOption = None,
) -> None:
    """Process INPUT line by line into OUTPUT, recording the run and each item as events.

    Blank lines and # comments are skipped; a line that cannot be decoded, holds control
    characters or is too long fails as an item and the run goes on.

    Exit codes: 0 completed, 1 failed (for example a missing input), 2 usage error (for example
    a --run-id that is already taken).

    Example: runstore run --input data/sample_input.txt --output data/processed.json
    --log data/run_log.json --run-id demo-001
    """
    from runstore.files import descriptor
    from runstore.job.pipeline import run_job
    from runstore.signals import exit_on_signal

    # When an output goes to stdout, what is said about the run goes to stderr, out of its way.
    data_on_stdout = any(p is not None and descriptor(str(p)) == 1 for p in (output, log))
    say = sys.stderr if data_on_stdout else sys.stdout
    bars: list[Any] = []
    try:
        summary, problem = run_job(
            input_path=input,
            output_path=output,
            log_path=log,
            run_id=run_id,
            job=job,
            db=db,
            verbose=verbose,
            echo=(lambda line: print(line, file=say, flush=True)) if verbose else None,
            on_start=lambda total: _progress_bar(total, bars),
            tags=parse_tags(tags),
        )
    finally:
        for bar in bars:  # cancelled or failed half way: the bar goes before anything is said
            bar.stop()
    exit_on_signal(summary["exit_code"])  # from here on, a signal exits as the store says
    alert_after_run(db, job)
    if problem is not None:
        error(problem)
    elif summary["status"] == "completed" and summary["items"]["total"] == 0:
        warn(f"{input} has no items: it is empty, or holds only blank lines and # comments")
    print(json.dumps(summary) if as_json else summary_line(summary), file=say, flush=True)
    leave(summary["exit_code"])


def summary_line(summary: dict[str, Any]) -> str:
    from runstore.humanize import humane_duration, plural

    items = summary["items"]
    counts = ", ".join(
        plural(summary[f"{kind}_count"], kind) for kind in ("warning", "error", "event")
    )
    return (
        f"run {summary['run_id']} {summary['status']}: {plural(items['total'], 'item')} "
        f"({items['ok']:,} ok, {items['failed']:,} failed), {counts} "
        f"in {humane_duration(summary['duration_ms'])}"
    )


def _progress_bar(total: int, bars: list[Any]) -> Any:
    """A progress bar for large inputs (a small one is done before a bar would show)."""
    from runstore.cli.output import progress_bar

    bar = progress_bar("processing", total) if total >= PROGRESS_MIN_ITEMS else None
    if bar is not None:
        bars.append(bar)
    return bar
