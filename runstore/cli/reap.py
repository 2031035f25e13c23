"""``runstore reap``: mark runs whose process is gone as abandoned."""

from __future__ import annotations

from typing import Annotated

import typer

from runstore.cli._app import STALE_AFTER, DbOption, StaleAfterOption, app
from runstore.cli.output import Column, CsvOption, JsonlOption, JsonOption

REAP_COLUMNS = [
    Column("run_id", "RUN", "id"),
    Column("job", "JOB", "id"),
    Column("host", "HOST", "id", drop=2),
    Column("pid", "PID", "number", drop=1),
    Column("started_at", "STARTED", "time"),
    Column("reason", "WHY"),
]


@app.command()
def reap(
    stale_after: StaleAfterOption = STALE_AFTER,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be marked; change nothing.")
    ] = False,
    as_json: JsonOption = False,
    as_jsonl: JsonlOption = False,
    as_csv: CsvOption = False,
    db: DbOption = None,
) -> None:
    """Mark running runs whose process is gone as `abandoned`, and list them.

    On the run's own host the process is checked exactly (pid, its start time, the boot id);
    for other hosts a heartbeat older than --stale-after decides. Finished runs are never
    changed. Read commands do this by themselves; `reap` does it on purpose, e.g. from cron.
    """
    import sys

    from runstore.cli.output import Format, choose_format, emit
    from runstore.history.reaper import find_stale
    from runstore.history.reaper import reap as reap_runs
    from runstore.humanize import parse_duration
    from runstore.store.store import Store

    fmt = choose_format(as_json, as_jsonl, as_csv)
    seconds = parse_duration(stale_after, "--stale-after")
    store = Store.open(db, mode="read")
    found = (find_stale if dry_run else reap_runs)(store, stale_after_s=seconds)
    if not found and fmt in (Format.TABLE, Format.TEXT):
        print("no stale runs", file=sys.stderr)
        return
    emit(found, REAP_COLUMNS, fmt)
