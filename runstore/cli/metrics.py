"""``runstore metrics``: the jobs' health for Prometheus (``health.metrics``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from runstore.cli._app import DbOption, app, open_store


@app.command()
def metrics(
    textfile: Annotated[
        Path | None,
        typer.Option(
            "--textfile",
            metavar="DIR",
            help="Write DIR/runstore.prom (replaced whole) for node_exporter's textfile "
            "collector, instead of printing.",
        ),
    ] = None,
    openmetrics: Annotated[
        bool, typer.Option("--openmetrics", help="The OpenMetrics format instead of Prometheus'.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Print the jobs' health in Prometheus' exposition format: per job, the last success and
    the last run's time, status, duration and exit code, runs running now, the check state, and
    p50/p95 duration (gauges labelled by job; see the README's Monitoring section).

    Example (cron, every minute): `runstore metrics --textfile /var/lib/node_exporter/textfile`
    """
    from runstore.errors import UsageError
    from runstore.files import STANDARD_STREAM
    from runstore.health.metrics import exposition, write_textfile

    if textfile is not None and openmetrics:
        raise UsageError("node_exporter's textfile collector reads Prometheus' format only")
    if textfile is not None and str(textfile) == STANDARD_STREAM:
        raise UsageError("--textfile takes a directory; without it the metrics go to stdout")
    store = open_store(db)
    if textfile is not None:
        write_textfile(store, textfile)
        return
    sys.stdout.buffer.write(exposition(store, openmetrics=openmetrics))
    sys.stdout.flush()
