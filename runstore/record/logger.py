"""``RunLogger``: one run of a job, recorded as it happens.

    with RunLogger(job="etl") as run:
        run.log_event("rows_loaded", {"rows": 120})
        run.log_warning("slow source", seconds=12)

The run row is written when the logger is created, before any work. Info events are batched and
flushed by count or by time, whichever comes first; warnings, errors and the finish are flushed
at once. ``finish`` always happens: at the end of the ``with`` block, on an exception (the run
fails, the exception is recorded and re-raised), or by hand; calling it again changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from time import time_ns
from types import TracebackType
from typing import Any

from runstore import __version__, procinfo
from runstore.errors import (
    Cancelled,
    DuplicateRunId,
    OutputError,
    RunstoreError,
    StoreBusy,
    UsageError,
    describe,
)
from runstore.files import refuse_clashes
from runstore.record.ids import check_run_id, new_run_id
from runstore.redact import command_line, redact_text
from runstore.signals import critical
from runstore.store.location import store_files
from runstore.store.schema import FINISHED_STATUSES, LEVELS, RunStatus
from runstore.store.store import CounterDeltas, EventRow, Store
from runstore.store.timestamps import datetime_from_ns

EVENTS_PER_FLUSH = 1000
FLUSH_INTERVAL_S = 1.0
# How often a live run's heartbeat is refreshed even when it logs nothing.
HEARTBEAT_INTERVAL_S = 30.0
MAX_ERROR_SUMMARY = 500
# The sizes of events.event_type and runs.job: PostgreSQL refuses longer values.
MAX_EVENT_TYPE = 64
MAX_JOB = 200

Echo = Callable[[str], None]

# Set by ``runstore exec`` for its child: the run that child code may attach to.
RUN_ID_ENV = "RUNSTORE_RUN_ID"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def echo_line(ts: datetime, level: str, event_type: str, data_json: str | None) -> str:
    """How ``--verbose`` shows an event: one line, time first."""
    clock = ts.strftime("%H:%M:%S.%f")[:-3]
    return f"{clock} {level:<7} {event_type} {data_json or '{}'}"


def stdout_echo(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


class RunLogger:
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
    ) -> None:
        """``started`` is when the run began, as (UTC time, ``time.monotonic()``), if earlier
        than now: a wrapper that waited for a busy store before the run row could be written."""
        if not job or len(job) > MAX_JOB:
            raise UsageError(f"job name must be 1-{MAX_JOB} characters")
        self._init_state(
            store if store is not None else Store.open(db),
            job,
            log_path,
            echo,
            verbose,
            events_per_flush,
        )
        if log_path is not None:  # run_log.json must never land on the store
            refuse_clashes({"log_path": log_path}, store_files=store_files(self.store.url))
        self._attached = False
        self.run_id = check_run_id(run_id) if run_id is not None else new_run_id()
        self.started_at, self._started_clock = started or (_now(), time.monotonic())
        pid = os.getpid()
        values = {
            "run_id": self.run_id,
            "job": job,
            "status": RunStatus.RUNNING.value,
            "started_at": self.started_at,
            "heartbeat_at": self.started_at,
            "host": procinfo.hostname(),
            "pid": pid,
            "process_start": procinfo.process_start(pid),
            "boot_id": procinfo.boot_id(),
            "username": procinfo.username(),
            "cwd": procinfo.current_cwd(),
            "command": command_line(sys.argv if argv is None else argv),
            "runstore_version": __version__,
        }
        while True:
            try:
                self.run_pk = self.store.create_run(values)
                break
            except DuplicateRunId:
                if run_id is not None:
                    raise
                values["run_id"] = self.run_id = new_run_id()  # a generated id collided: retry
        self.log_event("run_started", {"run_id": self.run_id, "job": job, **(started_data or {})})
        with contextlib.suppress(StoreBusy):  # the run is recorded; the event waits for a flush
            self.flush()
        self._start_flusher(flush_interval)

    def _init_state(
        self,
        store: Store,
        job: str,
        log_path: str | os.PathLike[str] | None,
        echo: Echo | None,
        verbose: bool,
        events_per_flush: int,
    ) -> None:
        self.store = store
        self.job = job
        self.log_path = Path(log_path) if log_path is not None else None
        self.events_per_flush = max(1, events_per_flush)
        self._echo: Echo | None = echo if echo is not None else (stdout_echo if verbose else None)
        self._lock = threading.RLock()
        self._pending: list[EventRow] = []
        self._deltas = CounterDeltas()
        self._summary: dict[str, Any] | None = None
        self._ending: dict[str, Any] | None = None  # the final values, once decided
        self._last_flush = time.monotonic()
        self.event_count = 0
        self.warning_count = 0
        self.error_count = 0
        self.items_ok = 0
        self.items_failed = 0

    def _start_flusher(self, interval: float) -> None:
        self._stop = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_periodically, args=(interval,), daemon=True
        )
        self._flusher.start()

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
    ) -> RunLogger:
        """Log into a run that another process started (``runstore exec`` sets
        ``RUNSTORE_RUN_ID`` and ``RUNSTORE_DB`` for its child). Finishing an attached logger
        flushes its events; the run itself is finished by its owner."""
        run_id = run_id or os.environ.get(RUN_ID_ENV)
        if not run_id:
            raise RunstoreError(f"no run to attach to: give a run id or set {RUN_ID_ENV}")
        store = store if store is not None else Store.open(db)
        row = store.find_run(run_id)
        if row["status"] != RunStatus.RUNNING.value:
            raise RunstoreError(f"run {row['run_id']} is {row['status']}, not running")
        self = cls.__new__(cls)
        self._init_state(store, row["job"], None, echo, verbose, events_per_flush)
        self._attached = True
        self.run_id = row["run_id"]
        self.run_pk = row["id"]
        self.started_at = row["started_at"]
        self._started_clock = time.monotonic()
        self._start_flusher(flush_interval)
        return self

    # -- logging ---------------------------------------------------------------------------------

    def log_event(
        self,
        event_type: str,
        data: dict[str, Any] | None = None,
        *,
        level: str = "info",
        message: str | None = None,
    ) -> None:
        """Record one event. ``data`` must be JSON-serialisable (other values become strings)."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        if not event_type or len(event_type) > MAX_EVENT_TYPE:
            raise ValueError(f"event type must be 1-{MAX_EVENT_TYPE} characters")
        if message is not None:
            message = _storable_text(message)
        self.log_event_json(event_type, _to_json(data) if data else None, level, message)

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
        with self._lock:
            if self._summary is not None:
                raise RunstoreError(f"run {self.run_id} is already finished")
            self._pending.append((ts, event_type, level, message, data_json))
            self.event_count += 1
            deltas = self._deltas
            if level == "warning":
                self.warning_count += 1
                deltas.warnings += 1
            elif level == "error":
                self.error_count += 1
                deltas.errors += 1
            if event_type == "item_processed":
                self.items_ok += 1
                deltas.items_ok += 1
            elif event_type == "item_failed":
                self.items_failed += 1
                deltas.items_failed += 1
            if self._echo is not None:
                try:
                    self._echo(echo_line(datetime_from_ns(ts), level, event_type, data_json))
                except OSError:  # the reader of the echo left (`| head`): the run goes on
                    self._echo = None
            if level in ("warning", "error") or len(self._pending) >= self.events_per_flush:
                self.flush()

    def log_warning(self, message: str, **details: Any) -> None:
        """A non-fatal problem: recorded and flushed at once; the run goes on."""
        self.log_event("warning", {"message": message, **details}, level="warning", message=message)

    def log_error(self, message: str, **details: Any) -> None:
        """An error: recorded and flushed at once. A run with errors finishes as failed."""
        self.log_event("error", {"message": message, **details}, level="error", message=message)

    @property
    def items_total(self) -> int:
        return self.items_ok + self.items_failed

    # -- flushing --------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write pending events (and the heartbeat) now. A cancel signal that arrives meanwhile
        is raised once the events are safely stored (or kept for the next attempt)."""
        with critical(), self._lock:
            rows, self._pending = self._pending, []
            deltas, self._deltas = self._deltas, CounterDeltas()
            self._last_flush = time.monotonic()
            if not rows:
                return
            try:
                self.store.append_events(self.run_pk, rows, deltas, heartbeat_at=_now())
            except BaseException:
                # Keep the events for the next attempt: nothing logged is dropped silently.
                self._pending[:0] = rows
                self._merge_deltas(deltas)
                raise

    def _merge_deltas(self, deltas: CounterDeltas) -> None:
        for name in ("warnings", "errors", "items_ok", "items_failed"):
            setattr(self._deltas, name, getattr(self._deltas, name) + getattr(deltas, name))

    def _flush_periodically(self, interval: float) -> None:
        last_beat = time.monotonic()
        while not self._stop.wait(interval / 2):
            now = time.monotonic()
            try:
                with self._lock:
                    if self._summary is not None:
                        return
                    if self._pending and now - self._last_flush >= interval:
                        self.flush()
                        last_beat = now
                    elif now - last_beat >= HEARTBEAT_INTERVAL_S:
                        self.store.beat(self.run_pk, _now())
                        last_beat = now
            except Exception:
                continue

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
        with critical(raise_held=False):
            return self._finish(status, exit_code, error_summary, extra)

    def _finish(
        self,
        status: str | RunStatus | None,
        exit_code: int | None,
        error_summary: str | None,
        extra: dict[str, Any] | None,
    ) -> dict[str, Any]:
        with self._lock:
            if self._summary is not None:
                return self._summary
            if self._attached:
                self.flush()
                self._stop.set()
                self._summary = {
                    "run_id": self.run_id,
                    "job": self.job,
                    "attached": True,
                    "event_count": self.event_count,
                }
                return self._summary
            if self._ending is None:
                self._ending = self._end(status, exit_code, error_summary, extra)
            # A retry after a failed write (store locked too long, disk full) finishes the same
            # way, without a second run_finished event.
            ending = self._ending
            self.flush()
            self._stop.set()
            self.store.finish_run(self.run_pk, {**ending, "heartbeat_at": ending["finished_at"]})
            status = RunStatus(ending["status"])
            finished_at, duration_ms = ending["finished_at"], ending["duration_ms"]
            exit_code, error_summary = ending["exit_code"], ending["error_summary"]
            self._summary = summary = {
                "run_id": self.run_id,
                "job": self.job,
                "status": status.value,
                "start_time": self.started_at.isoformat(timespec="microseconds"),
                "end_time": finished_at.isoformat(timespec="microseconds"),
                "duration_ms": duration_ms,
                "event_count": self.event_count,
                "warning_count": self.warning_count,
                "error_count": self.error_count,
                "items": {
                    "total": self.items_total,
                    "ok": self.items_ok,
                    "failed": self.items_failed,
                },
                "exit_code": exit_code,
                "error_summary": error_summary,
                "log": str(self.log_path) if self.log_path is not None else None,
            }
        return summary

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
        ending = self._ending_values(status, exit_code, error_summary, extra)
        finished_ns = time_ns()
        if self.log_path is not None:
            try:
                self._write_log_before_finish(ending, finished_ns)
            except OutputError as exc:
                self.log_path = None
                self.log_error(str(exc), kind="OutputError")
                if ending["status"] == RunStatus.COMPLETED.value:
                    ending.update(status=RunStatus.FAILED.value, exit_code=1)
                ending["error_summary"] = ending["error_summary"] or _summary_text(str(exc))
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
        status = (
            RunStatus(status)
            if status is not None
            else (RunStatus.FAILED if self.error_count else RunStatus.COMPLETED)
        )
        if status.value not in FINISHED_STATUSES:
            raise ValueError(f"a run cannot finish as {status.value}")
        if exit_code is None:
            exit_code = {RunStatus.COMPLETED: 0, RunStatus.FAILED: 1}.get(status, 1)
        return {
            "status": status.value,
            "finished_at": _now(),
            "duration_ms": int((time.monotonic() - self._started_clock) * 1000),
            "exit_code": exit_code,
            "error_summary": _summary_text(error_summary) if error_summary is not None else None,
            **(extra or {}),
        }

    def _finished_data(self, ending: dict[str, Any]) -> str:
        return _to_json(
            {
                "status": ending["status"],
                "duration_ms": ending["duration_ms"],
                "errors": self.error_count,
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
        """Write this run's run_log.json (atomically) from what the store holds."""
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
        if exc is None:
            self.finish()
            return
        if isinstance(exc, SystemExit) and exc.code in (0, None):
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


# One encoder for every event: json.dumps with options would build a new one per call.
_encode_json = json.JSONEncoder(default=str, allow_nan=False).encode


def _to_json(data: dict[str, Any]) -> str:
    try:
        return _encode_json(data)
    except ValueError:
        # NaN and infinities are not JSON (PostgreSQL refuses them): keep them as text.
        return _encode_json(_finite(data))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _summary_text(text: str) -> str:
    """An error summary as stored: secrets redacted (it often quotes a command), NUL-free, short."""
    return _storable_text(redact_text(text))[:MAX_ERROR_SUMMARY]


def _storable_text(text: str) -> str:
    # PostgreSQL text cannot hold NUL; one refused event would block every later flush.
    return text.replace("\x00", "\\x00")


def _format_tb(exc: BaseException, limit: int = 20) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=limit))[
        -4000:
    ]
