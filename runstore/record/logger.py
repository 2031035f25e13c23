"""``RunLogger``: one run of a job, recorded as it happens.

    with RunLogger(job="etl") as run:
        run.log_event("rows_loaded", {"rows": 120})
        run.log_warning("slow source", seconds=12)

The run row is written when the logger is created, before any work. Info events are batched and
flushed by count or by time, whichever comes first; warnings, errors and the finish are flushed
at once (``batcher``). ``finish`` always happens: at the end of the ``with`` block, on an
exception (the run fails, the exception is recorded and re-raised), or by hand; calling it again
changes nothing. ``RunLogger.attach`` gives an ``AttachedRun``: the logging half alone, for a
process adding events to a run another one owns.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from time import time_ns
from types import TracebackType
from typing import Any

from runstore import __version__, env, procinfo
from runstore.errors import (
    Cancelled,
    DuplicateRunId,
    OutputError,
    RunstoreError,
    StoreBusy,
    describe,
)
from runstore.files import refuse_clashes
from runstore.record.batcher import EVENTS_PER_FLUSH, FLUSH_INTERVAL_S, Batcher
from runstore.record.ids import (
    check_job,
    check_metric,
    check_run_id,
    check_tags,
    new_run_id,
    tags_from_env,
)
from runstore.record.runlog import run_summary
from runstore.redact import command_line, redact_text
from runstore.signals import critical
from runstore.store.limits import MAX_ERROR_SUMMARY, MAX_EVENT_TYPE, storable_text
from runstore.store.location import store_files
from runstore.store.schema import FINISHED_STATUSES, LEVELS, RunStatus
from runstore.store.store import Store
from runstore.store.timestamps import datetime_from_ns

Echo = Callable[[str], None]


def echo_line(ts: datetime, level: str, event_type: str, data_json: str | None) -> str:
    """How ``--verbose`` shows an event: one line, time first."""
    clock = ts.strftime("%H:%M:%S.%f")[:-3]
    return f"{clock} {level:<7} {event_type} {data_json or '{}'}"


def stdout_echo(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


class _Events:
    """Logging into one run: the half that ``RunLogger`` and ``AttachedRun`` share."""

    store: Store
    run_id: str
    run_pk: int
    job: str
    _batch: Batcher
    _echo: Echo | None

    def _start_batch(self, store: Store, events_per_flush: int, echo: Echo | None) -> None:
        self._batch = Batcher(store, self.run_pk, events_per_flush)
        self._echo = echo
        self._closed = False

    def log_event(
        self,
        event_type: str,
        data: dict[str, Any] | None = None,
        *,
        level: str = "info",
        message: str | None = None,
        ts: int | None = None,
    ) -> None:
        """Record one event. ``data`` must be JSON-serialisable (other values become strings);
        ``ts``, when it happened in nanoseconds (``time.time_ns()``), is now by default."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        if not event_type or len(event_type) > MAX_EVENT_TYPE:
            raise ValueError(f"event type must be 1-{MAX_EVENT_TYPE} characters")
        if message is not None:
            message = storable_text(message)
        if event_type == "metric":  # its data is a row of run_metrics too: checked as one
            given = data or {}
            data = metric_data(given.get("name"), given.get("value"), given.get("step"))
        self.log_event_json(event_type, to_json(data) if data else None, level, message, ts=ts)

    def log_event_json(
        self,
        event_type: str,
        data_json: str | None,
        level: str = "info",
        message: str | None = None,
        *,
        ts: int | None = None,
    ) -> None:
        """Record one event whose data is already a JSON object text (the hot path of jobs that
        encode their own records once); the caller vouches for the type, level and JSON.
        ``ts`` is the time in nanoseconds (``time.time_ns()``), now by default."""
        if ts is None:
            ts = time_ns()  # the store formats it; far cheaper than a datetime per event
        batch = self._batch
        with batch.lock:
            if self._closed:
                raise RunstoreError(f"run {self.run_id} is already finished")
            urgent = batch.add(ts, event_type, level, message, data_json)
            if self._echo is not None:
                try:
                    self._echo(echo_line(datetime_from_ns(ts), level, event_type, data_json))
                except OSError:  # the reader of the echo left (`| head`): the run goes on
                    self._echo = None
            if urgent:
                batch.flush()

    def log_warning(self, message: str, **details: Any) -> None:
        """A non-fatal problem: recorded and flushed at once; the run goes on."""
        self.log_event("warning", {"message": message, **details}, level="warning", message=message)

    def log_error(self, message: str, **details: Any) -> None:
        """An error: recorded and flushed at once. A run with errors finishes as failed."""
        self.log_event("error", {"message": message, **details}, level="error", message=message)

    def log_metric(
        self, name: str, value: float, step: int | None = None, *, ts: int | None = None
    ) -> None:
        """Record a number the run produced (rows loaded, bytes backed up), with its ``step``
        if it has several: a row of the run's metrics, charted over the job's runs (``runstore
        metric JOB NAME``, the UI's job page), and a ``metric`` event in its timeline."""
        data = metric_data(name, value, step)
        self.log_event_json("metric", to_json(data), message=f"{name} = {data['value']}", ts=ts)

    def flush(self) -> None:
        """Write pending events (and the heartbeat) now."""
        self._batch.flush()

    # What this process logged into the run (the store counts other writers too).
    @property
    def event_count(self) -> int:
        return self._batch.event_count

    @property
    def warning_count(self) -> int:
        return self._batch.logged.warnings

    @property
    def error_count(self) -> int:
        return self._batch.logged.errors

    @property
    def items_ok(self) -> int:
        return self._batch.logged.items_ok

    @property
    def items_failed(self) -> int:
        return self._batch.logged.items_failed

    @property
    def items_total(self) -> int:
        return self.items_ok + self.items_failed

    @property
    def finished(self) -> bool:
        return self._closed


def metric_data(name: Any, value: Any, step: Any = None) -> dict[str, Any]:
    """A ``metric`` event's data, checked: a name, a finite number, a whole-number step."""
    number: float = check_metric(name, value, step)
    data = {"name": name, "value": value if isinstance(value, int) else number}
    return data if step is None else {**data, "step": step}


def inherited_tags() -> dict[str, str]:
    """The tags of ``RUNSTORE_TAGS`` (``env=prod,team=data``); a malformed entry is left out,
    with a warning: recording never fails over it."""
    import warnings

    from runstore.errors import StoreWarning

    tags, bad = tags_from_env(os.environ.get(env.TAGS))
    if bad:
        warnings.warn(f"{env.TAGS}: left out {', '.join(map(repr, bad))} (KEY=VALUE, "
                      "comma-separated)", StoreWarning, stacklevel=3)  # fmt: skip
    return tags


def new_run_row(
    run_id: str, job: str, started_at: datetime, argv: Sequence[str] | None
) -> dict[str, Any]:
    """The row of a run this process records, begun at ``started_at``: who, where, what
    command (redacted)."""
    pid = os.getpid()
    return {
        "run_id": run_id,
        "job": job,
        "status": RunStatus.RUNNING.value,
        "started_at": started_at,
        "heartbeat_at": started_at,
        "host": procinfo.hostname(),
        "pid": pid,
        "process_start": procinfo.process_start(pid),
        "boot_id": procinfo.boot_id(),
        "username": procinfo.username(),
        "cwd": procinfo.current_cwd(),
        "command": command_line(sys.argv if argv is None else argv),
        "runstore_version": __version__,
    }


class RunLogger(_Events):
    """Record one run of ``job`` into ``store`` (or the store named by ``db``)."""

    def __init__(
        self,
        job: str = "default",
        run_id: str | None = None,
        *,
        db: str | os.PathLike[str] | None = None,
        store: Store | None = None,
        log_path: str | os.PathLike[str] | None = None,
        verbose: bool = False,
        echo: Echo | None = None,
        argv: Sequence[str] | None = None,
        events_per_flush: int = EVENTS_PER_FLUSH,
        flush_interval: float = FLUSH_INTERVAL_S,
        started_data: dict[str, Any] | None = None,
        started: tuple[datetime, float] | None = None,
        tags: Mapping[str, object] | None = None,
    ) -> None:
        """``started`` is when the run began, as (UTC time, ``time.monotonic()``), if earlier
        than now: a wrapper that waited for a busy store before the run row could be written.
        ``tags`` label the run (``{"env": "prod"}``), after those of ``RUNSTORE_TAGS``."""
        check_job(job)
        self.tags = inherited_tags() | check_tags(tags or {})
        self.store = store if store is not None else Store.open(db)
        if log_path is not None:  # run_log.json must never land on the store
            refuse_clashes({"log_path": log_path}, store_files=store_files(self.store.url))
        self.job = job
        self.log_path = Path(log_path) if log_path is not None else None
        self.run_id = check_run_id(run_id) if run_id is not None else new_run_id()
        self.started_at, self._started_clock = started or (_now(), time.monotonic())
        self.run_pk = self._create_row(run_id is None, argv)
        self._summary: dict[str, Any] | None = None
        self._ending: dict[str, Any] | None = None  # the final values, once decided
        self._errors_elsewhere = 0  # errors other writers logged into the run
        self._start_batch(
            self.store,
            events_per_flush,
            echo if echo is not None else (stdout_echo if verbose else None),
        )
        self.log_event("run_started", {"run_id": self.run_id, "job": job, **(started_data or {})})
        with contextlib.suppress(StoreBusy):  # the run is recorded; the event waits for a flush
            self.flush()
        self._batch.start(flush_interval)

    def _create_row(self, generated: bool, argv: Sequence[str] | None) -> int:
        values = new_run_row(self.run_id, self.job, self.started_at, argv)
        while True:
            try:
                return self.store.create_run(values, self.tags)
            except DuplicateRunId:
                if not generated:
                    raise
                values["run_id"] = self.run_id = new_run_id()  # a generated id collided: retry

    @classmethod
    def attach(
        cls,
        run_id: str | None = None,
        *,
        db: str | os.PathLike[str] | None = None,
        store: Store | None = None,
        verbose: bool = False,
        echo: Echo | None = None,
        events_per_flush: int = EVENTS_PER_FLUSH,
        flush_interval: float = FLUSH_INTERVAL_S,
    ) -> AttachedRun:
        """Log into a run that another process started (``runstore exec`` sets
        ``RUNSTORE_RUN_ID`` and ``RUNSTORE_DB`` for its child)."""
        return AttachedRun(
            run_id,
            db=db,
            store=store,
            echo=echo if echo is not None else (stdout_echo if verbose else None),
            events_per_flush=events_per_flush,
            flush_interval=flush_interval,
        )

    # -- finishing -------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._summary is not None

    def finish(
        self,
        status: str | RunStatus | None = None,
        *,
        exit_code: int | None = None,
        error_summary: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """End the run and return its summary. Later calls return the same summary.

        Without a status the run is ``completed``, or ``failed`` when errors were logged.
        ``extra`` holds more columns of the run row (signal, resource use). A cancel signal
        that arrives while the run finishes does not interrupt it.
        """
        with critical(raise_held=False), self._batch.lock:
            if self._summary is not None:
                return self._summary
            if self._ending is None:
                self._ending = self._end(status, exit_code, error_summary, extra)
            # A retry after a failed write (store locked too long, disk full) finishes the same
            # way, without a second run_finished event.
            ending = self._ending
            self.flush()
            self.store.finish_run(self.run_pk, {**ending, "heartbeat_at": ending["finished_at"]})
            self._closed = True
            self._batch.stop()
            log = str(self.log_path) if self.log_path is not None else None
            self._summary = {**run_summary(self.store.get_run(self.run_pk)), "log": log}
            return self._summary

    def _end(
        self,
        status: str | RunStatus | None,
        exit_code: int | None,
        error_summary: str | None,
        extra: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Decide how the run ends, write its run_log.json, and log its run_finished event:
        the run row's final values. The log is written before the store hears of the end, so a
        log that cannot be written fails the run instead of leaving it completed without one."""
        # The store's counters hold what every writer logged into the run (``runstore event``
        # from the command, an attached run), this process's pending events once flushed.
        self.flush()
        counted = self.store.get_run(self.run_pk)
        self._errors_elsewhere = counted["error_count"] - self.error_count
        ending = self._ending_values(status, exit_code, error_summary, extra)
        if ending["status"] == RunStatus.FAILED.value and ending["error_summary"] is None:
            first = self.store.first_error_message(self.run_pk) if counted["error_count"] else None
            ending["error_summary"] = summary_text(first) if first else None
        finished_ns = time_ns()
        if self.log_path is not None:
            try:
                self._write_log_before_finish(ending, finished_ns)
            except OutputError as exc:
                self.log_path = None
                self.log_error(str(exc), kind="OutputError")
                if ending["status"] == RunStatus.COMPLETED.value:
                    ending.update(status=RunStatus.FAILED.value, exit_code=1)
                ending["error_summary"] = ending["error_summary"] or summary_text(str(exc))
                finished_ns = time_ns()
        self.log_event_json("run_finished", self._finished_data(ending), ts=finished_ns)
        return ending

    def _ending_values(
        self,
        status: str | RunStatus | None,
        exit_code: int | None,
        error_summary: str | None,
        extra: dict[str, Any] | None,
    ) -> dict[str, Any]:
        errors = self.error_count + self._errors_elsewhere
        status = (
            RunStatus(status)
            if status is not None
            else (RunStatus.FAILED if errors else RunStatus.COMPLETED)
        )
        if status.value not in FINISHED_STATUSES:
            raise ValueError(f"a run cannot finish as {status.value}")
        if exit_code is None:
            exit_code = {RunStatus.COMPLETED: 0, RunStatus.FAILED: 1}.get(status, 1)
        # A caller may say when the run ended (a command's exit), however long its store then
        # made it wait to write that down.
        extra = dict(extra or {})
        finished_at = extra.pop("finished_at", None) or _now()
        duration_ms = extra.pop("duration_ms", None)
        if duration_ms is None:
            duration_ms = int((time.monotonic() - self._started_clock) * 1000)
        return {
            "status": status.value,
            "finished_at": finished_at,
            "duration_ms": duration_ms,
            "exit_code": exit_code,
            "error_summary": summary_text(error_summary) if error_summary is not None else None,
            **extra,
        }

    def _finished_data(self, ending: dict[str, Any]) -> str:
        return to_json(
            {
                "status": ending["status"],
                "duration_ms": ending["duration_ms"],
                "errors": self.error_count + self._errors_elsewhere,
            }
        )

    def _write_log_before_finish(self, ending: dict[str, Any], finished_ns: int) -> None:
        """run_log.json as it will read once the run is finished: the stored events, then the
        run_finished event that is logged right after."""
        from runstore.record.runlog import save_run_log

        assert self.log_path is not None
        self.flush()
        row = self.store.get_run(self.run_pk)
        seq = row["event_count"] + 1
        row.update(ending, event_count=seq)
        last = (
            seq,
            datetime_from_ns(finished_ns).isoformat(timespec="microseconds"),
            "run_finished",
            "info",
            None,
            self._finished_data(ending),
        )
        save_run_log(self.log_path, self.store, row, [last])

    def write_log(self, path: str | os.PathLike[str]) -> None:
        """Write this run's run_log.json (whole or not at all) from what the store holds."""
        from runstore.record.runlog import save_run_log

        save_run_log(path, self.store, self.store.get_run(self.run_pk))

    # -- context manager -------------------------------------------------------------------------

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.finished:
            return
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            self.finish()
            return
        if isinstance(exc, Cancelled):
            self.log_warning(str(exc), signal=exc.signum)
            self.finish(
                RunStatus.CANCELLED,
                exit_code=exc.exit_code,
                error_summary=str(exc),
                extra={"signal": exc.signum},
            )
            return
        if isinstance(exc, KeyboardInterrupt):
            self.log_warning("interrupted", exception="KeyboardInterrupt")
            self.finish(RunStatus.CANCELLED, exit_code=130, error_summary="interrupted")
            return
        summary = describe(exc)
        self.log_error(summary, exception=type(exc).__name__, traceback=_format_tb(exc))
        # sys.exit(3): the process exits 3, and so does the run; anything else exits 1.
        code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else None
        self.finish(RunStatus.FAILED, error_summary=summary, exit_code=code)


class AttachedRun(_Events):
    """Logging into a run that another process owns (``runstore exec`` names it in
    RUNSTORE_RUN_ID for its command): ``finish`` flushes the events; the run itself is finished
    by its owner."""

    def __init__(
        self,
        run_id: str | None = None,
        *,
        db: str | os.PathLike[str] | None = None,
        store: Store | None = None,
        echo: Echo | None = None,
        events_per_flush: int = EVENTS_PER_FLUSH,
        flush_interval: float = FLUSH_INTERVAL_S,
    ) -> None:
        run_id = run_id or os.environ.get(env.RUN_ID)
        if not run_id:
            raise RunstoreError(f"no run to attach to: give a run id or set {env.RUN_ID}")
        self.store = store if store is not None else Store.open(db)
        row = self.store.find_run(run_id)
        if row["status"] != RunStatus.RUNNING.value:
            raise RunstoreError(f"run {row['run_id']} is {row['status']}, not running")
        self.run_id, self.run_pk, self.job = row["run_id"], row["id"], row["job"]
        self.started_at = row["started_at"]
        self._start_batch(self.store, events_per_flush, echo)
        self._batch.start(flush_interval)

    def finish(self) -> dict[str, Any]:
        """Write what is pending and stop logging; the run goes on."""
        with self._batch.lock:
            if not self._closed:
                self.flush()
                self._closed = True
                self._batch.stop()
        return {"run_id": self.run_id, "job": self.job, "attached": True}

    def __enter__(self) -> AttachedRun:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.finish()


# One encoder for every event: json.dumps with options would build a new one per call.
_encode_json = json.JSONEncoder(default=str, allow_nan=False).encode


def to_json(data: dict[str, Any]) -> str:
    """An event's data as JSON; NaN and infinities (PostgreSQL refuses them) become text."""
    try:
        return _encode_json(data)
    except ValueError:
        return _encode_json(_finite(data))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def summary_text(text: str) -> str:
    """An error summary as stored: secrets redacted (it often quotes a command), NUL-free, short."""
    return storable_text(redact_text(text))[:MAX_ERROR_SUMMARY]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _format_tb(exc: BaseException, limit: int = 20) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=limit))[
        -4000:
    ]
