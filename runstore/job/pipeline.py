"""The built-in line-processing job (the original exercise): one item per input line.

Each good item becomes ``{"index", "item", "processed": true, "length", "line"}`` in the output
JSON list and an ``item_processed`` event; a bad line becomes ``processed: false`` with its
reason and an ``item_failed`` warning, and the run goes on. Input and output are streamed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from runstore.errors import Cancelled, InputError, OutputError
from runstore.files import (
    check_output,
    is_regular_file,
    open_output,
    refuse_clashes,
)
from runstore.job.textinput import count_items, iter_items, open_input
from runstore.record.ids import check_job, check_run_id, check_tags
from runstore.record.logger import Echo, RunLogger
from runstore.signals import cancel_on_signals
from runstore.store.location import resolve_db, store_files
from runstore.store.schema import RunStatus

Progress = Callable[[int], None]

# A JSON string literal for a str, non-ASCII kept as is (json's own C escaper).
_quote: Callable[[str], str] = json.encoder.encode_basestring


def process_item(text: str) -> int:
    """The job's work on one item: its length."""
    return len(text)


def process_lines(
    run: RunLogger,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    on_start: Callable[[int], Progress | None] | None = None,
) -> dict[str, int]:
    """Process ``input_path`` into ``output_path`` as part of ``run``; return the item counts.

    Raises InputError (before any output is written) when the input cannot be read. A regular
    file is counted first, for ``processing_started`` and the progress bar; a pipe, FIFO or
    ``-`` is read once, as it streams, so its ``item_count`` is null (``streamed``: true) and
    ``processing_completed`` gives the count. ``on_start(item_count)`` may return a progress
    callback, called with items done so far. Each item's text is JSON-encoded once and used in
    both its output record and its event.
    """
    streamed = not is_regular_file(input_path)
    item_count = None if streamed else count_items(input_path)
    opening: dict[str, Any] = {"item_count": item_count, "input": os.fspath(input_path)}
    if streamed:
        opening["streamed"] = True
    f, encoding = open_input(input_path)  # before processing_started: a bad input logs nothing
    run.log_event("processing_started", opening)
    progress = on_start(item_count) if on_start is not None and item_count is not None else None
    ok = failed = 0
    log = run.log_event_json
    clock = time.perf_counter
    with f, open_output(output_path) as out:
        out.write("[")
        for index, item in enumerate(iter_items(f, encoding)):
            out.write("\n  " if index == 0 else ",\n  ")
            if item.text is None:
                failed += 1
                text, reason = _quote(item.preview), _quote(item.error or "")
                out.write(
                    f'{{"index": {index}, "item": {text}, "processed": false, '
                    f'"line": {item.line}, "error": {reason}}}'
                )
                data = (
                    f'{{"index": {index}, "line": {item.line}, "item": {text}, "reason": {reason}}}'
                )
                log("item_failed", data, "warning", item.error)
            else:
                started = clock()
                length = process_item(item.text)
                elapsed_ms = (clock() - started) * 1000
                ok += 1
                text = _quote(item.text)
                out.write(
                    f'{{"index": {index}, "item": {text}, "processed": true, '
                    f'"line": {item.line}, "length": {length}}}'
                )
                log(
                    "item_processed",
                    f'{{"index": {index}, "item": {text}, "length": {length}, '
                    f'"duration_ms": {elapsed_ms:.3f}}}',
                )
            if progress is not None and index % 1000 == 999:
                progress(index + 1)
        out.write("\n]\n" if ok + failed else "]\n")
    if progress is not None:
        progress(ok + failed)
    run.log_event(
        "processing_completed", {"results_count": ok + failed, "ok": ok, "failed": failed}
    )
    if ok + failed == 0:
        run.log_warning("input has no items", input=os.fspath(input_path))
    return {"total": ok + failed, "ok": ok, "failed": failed}


def run_job(
    *,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    log_path: str | os.PathLike[str] | None,
    run_id: str | None,
    job: str,
    db: str | os.PathLike[str] | None = None,
    verbose: bool = False,
    echo: Echo | None = None,
    on_start: Callable[[int], Progress | None] | None = None,
    tags: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], str | None]:
    """``runstore run``: the line-processing job as one recorded run.

    Returns the run's summary and, for a run that did not complete, what stopped it. A duplicate
    run id raises DuplicateRunId before anything is written. SIGTERM, SIGINT and SIGHUP cancel the
    run (exit code 128+N) after its events are flushed and its run_log.json written.
    """
    from runstore.store.store import Store

    # Before anything is written, the store included: names that can be recorded, and no output
    # over the store, the input or the other output.
    check_job(job)
    if run_id is not None:
        check_run_id(run_id)
    tags = check_tags(tags or {})
    refuse_clashes(
        {"--output": output_path, "--log": log_path},
        inputs={"--input": input_path},
        store_files=store_files(resolve_db(db)),
    )
    store = Store.open(db)
    run = RunLogger(job, run_id, store=store, log_path=log_path, verbose=verbose, echo=echo,
                    tags=tags)  # fmt: skip
    try:
        with cancel_on_signals(), run:
            try:
                if log_path is not None:
                    try:
                        check_output(log_path)
                    except OutputError:
                        run.log_path = None  # cannot be written: the store still holds the run
                        raise
                check_output(output_path)
                process_lines(run, input_path, output_path, on_start=on_start)
            except (InputError, OutputError) as problem:
                run.log_error(str(problem), kind=type(problem).__name__)
                return run.finish(RunStatus.FAILED, error_summary=str(problem)), str(problem)
    except Cancelled as cancelled:
        # The run's __exit__ has finished it as cancelled; should the signal have come later,
        # while the job was already done, this records it as cancelled all the same.
        summary = run.finish(
            RunStatus.CANCELLED,
            exit_code=cancelled.exit_code,
            error_summary=str(cancelled),
            extra={"signal": cancelled.signum},
        )
        return summary, str(cancelled)
    summary = run.finish()  # a run_log.json that cannot be written fails the run here
    return summary, summary["error_summary"] if summary["status"] != "completed" else None
