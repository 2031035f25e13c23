"""The classic ``run_log.json``, regenerated from the rows: the file a run writes at its end and
``runstore export`` are the same function, so they cannot disagree.

The format is the original exercise's, as a superset: ``run_id``, ``status``, ``start_time``,
``end_time``, ``duration_ms``, ``event_count``, ``error_count`` and ``events`` (each with
``run_id``, ``timestamp``, ``event_type``, ``data``), plus runstore's own keys. Events are streamed
from the store, one per line, so a run of millions of events is never held in memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import chain, islice
from typing import Any, TextIO

from runstore.files import open_output
from runstore.store.store import Store

# One event as run_log.json is built from: (seq, ISO-8601 time, type, level, message, data JSON).
EventLine = tuple[int, str, str, str, "str | None", "str | None"]


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="microseconds") if moment is not None else None


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """A run row as people and scripts read it, in a stable order: what ``RunLogger.finish``
    returns (and ``runstore run --json`` prints) and the head of run_log.json."""
    return {
        "run_id": run["run_id"],
        "job": run["job"],
        "status": run["status"],
        "start_time": iso(run["started_at"]),
        "end_time": iso(run["finished_at"]),
        "duration_ms": run["duration_ms"],
        "event_count": run["event_count"],
        "error_count": run["error_count"],
        "warning_count": run["warning_count"],
        "items": {
            "total": run["items_total"],
            "ok": run["items_ok"],
            "failed": run["items_failed"],
        },
        "exit_code": run["exit_code"],
        "error_summary": run["error_summary"],
    }


def run_header(run: dict[str, Any], store: Store | None = None) -> dict[str, Any]:
    """The run-level keys of run_log.json: the summary, where the run ran, and its tags (when
    it has any, read from ``store``)."""
    header = {**run_summary(run), "host": run["host"], "command": run["command"]}
    tags = store.run_tags(run["id"]) if store is not None else {}
    return {**header, "tags": tags} if tags else header


def event_lines(store: Store, run: dict[str, Any], more: Iterable[EventLine] = ()) -> Iterator[str]:
    """Each event as one compact JSON object; the stored data text is spliced in unparsed.
    ``more`` follows the stored events (a run's last event, written with it as it finishes)."""
    prefix = '{"run_id": ' + json.dumps(run["run_id"])
    quoted: dict[str, str] = {}  # event types repeat: encode each once
    for seq, ts, event_type, level, message, data in chain(store.iter_event_rows(run["id"]), more):
        etype = quoted.get(event_type)
        if etype is None:
            etype = quoted[event_type] = json.dumps(event_type)
        text = "null" if message is None else json.dumps(message)
        yield (
            f'{prefix}, "seq": {seq}, "timestamp": "{ts}", "event_type": {etype}, '
            f'"level": "{level}", "message": {text}, "data": {data or "{}"}}}'
        )


def write_run_log(
    out: TextIO, store: Store, run: dict[str, Any], more: Iterable[EventLine] = ()
) -> None:
    header = json.dumps(run_header(run, store), indent=2, ensure_ascii=False)
    out.write(header[:-2])  # drop the closing "\n}" to append the events
    out.write(',\n  "events": [')
    wrote = write_joined(out, event_lines(store, run, more), ",\n    ", first="\n    ")
    out.write("\n  ]\n}\n" if wrote else "]\n}\n")


def write_run_log_line(out: TextIO, store: Store, run: dict[str, Any]) -> None:
    """The same document on one line: the ``export --jsonl`` form."""
    header = json.dumps(run_header(run, store), ensure_ascii=False)
    out.write(header[:-1])
    out.write(', "events": [')
    write_joined(out, event_lines(store, run), ", ")
    out.write("]}\n")


def write_joined(
    out: TextIO, lines: Iterable[str], between: str, *, first: str = "", chunk: int = 2000
) -> bool:
    """Write ``lines`` with ``between`` between them (and ``first`` before the first) a chunk at
    a time: few writes, bounded memory. Whether there was any line."""
    it = iter(lines)
    batch = list(islice(it, chunk))
    if not batch:
        return False
    out.write(first)
    while True:
        out.write(between.join(batch))
        batch = list(islice(it, chunk))
        if not batch:
            return True
        out.write(between)


def save_run_log(
    path: str | os.PathLike[str],
    store: Store,
    run: dict[str, Any],
    more: Iterable[EventLine] = (),
) -> None:
    """Write run_log.json for ``run`` (whole or not at all, readable by its owner only)."""
    with open_output(path, private=True) as out:
        write_run_log(out, store, run, more)
