"""The thread that records a wrapped command's run: it owns the run's RunLogger and takes typed
messages from a queue, so a locked, full or read-only store never blocks the command's output or
changes its exit code. A store that another process keeps locked is tried again until it frees
or the execution gives up waiting."""

from __future__ import annotations

import functools
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from runstore import errors
from runstore.errors import DuplicateRunId, StoreBusy
from runstore.exec.capture import Line
from runstore.humanize import format_duration

# A busy store is tried again this often, and said to be waited for after this long.
BUSY_RETRY_S = 0.5
BUSY_NOTE_AFTER_S = 3.0


@dataclass(frozen=True)
class OutputLine:
    """A line of the command's output, stored as an ``output`` event."""

    line: Line


@dataclass(frozen=True)
class Event:
    """An event about the command: runstore's own (started, a signal, a timeout...) or one the
    command sent on its events channel."""

    event_type: str
    data: dict[str, Any]
    level: str
    message: str | None
    flush: bool = False  # written at once, before anything that follows
    ts: int = field(default_factory=time.time_ns)  # when it happened, in nanoseconds


@dataclass(frozen=True)
class Finish:
    """The run's end: the events that close its timeline, then its final values."""

    events: list[OutputLine | Event]
    status: str
    exit_code: int
    reason: str | None
    extra: dict[str, Any] = field(default_factory=dict)


Message = OutputLine | Event | Finish


class Recorder(threading.Thread):
    """Records one run of ``job``; ``inbox.put`` a Message, ``Finish`` last."""

    def __init__(
        self,
        *,
        job: str,
        run_id: str | None,
        db: str | os.PathLike[str] | None,
        argv: list[str],
        log_path: str | os.PathLike[str] | None,
        started: tuple[datetime, float],
        tags: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(name="runstore-recorder", daemon=True)
        self.job = job
        self.requested_run_id = run_id
        self.db = db
        self.argv = argv
        self.log_path = log_path
        self.started = started
        self.tags = dict(tags or {})
        # SimpleQueue.put is reentrant: signal handlers may enqueue.
        self.inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.ready = threading.Event()  # the run row is written, or could not be
        self.done = threading.Event()  # the run's end is written, or could not be
        self.give_up = threading.Event()
        self.logger: Any = None
        self.run_id: str | None = None
        self.store_address: str | None = None  # the store, as the command's RUNSTORE_DB
        self.problem: str | None = None  # why the run is not (fully) recorded
        self.busy: str | None = None  # why the store refuses us right now (another writer)
        self.log_problem: str | None = None
        self.note: str | None = None
        self._passfile: Path | None = None

    def environment(self) -> dict[str, str]:
        """The command's environment: ours, and the run to add to, RUNSTORE_RUN_ID and
        RUNSTORE_DB (never with a password: see ``store_for_child``)."""
        from runstore import env

        environment = dict(os.environ)
        if self.run_id is not None and self.store_address is not None:
            environment[env.RUN_ID] = self.run_id
            environment[env.DB] = self.store_address
            if self.logger.tags:  # the run's tags, inherited by runs CMD starts
                environment[env.TAGS] = ",".join(f"{k}={v}" for k, v in self.logger.tags.items())
        found = runstore_bin()
        if found is not None:
            environment[env.BIN] = found
        if "://" in environment.get(env.DB, ""):
            environment[env.DB], self._passfile = store_for_child(environment[env.DB])
            if self._passfile is not None:
                environment[env.PGPASSFILE] = str(self._passfile)
        return environment

    def close(self) -> None:
        """Remove what the command needed only while it ran (the passfile)."""
        if self._passfile is not None:
            self._passfile.unlink(missing_ok=True)

    def run(self) -> None:
        try:
            self._keep_trying(self._open)
        except Exception as exc:  # recording must never break the job
            self.problem = errors.reason(exc)
        finally:
            self.ready.set()
        while True:
            message = self.inbox.get()
            if isinstance(message, Finish):
                self._finish(message)
                self.done.set()
                return
            if self.logger is not None and self.problem is None:
                try:
                    self._log(message)
                except Exception as exc:
                    self.problem = errors.reason(exc)

    def wait(self, finish_wait: float, say: Callable[[str], None]) -> list[str]:
        """Wait for the run's end to be written: a store that another process keeps locked is
        waited for (up to ``finish_wait``, which ``say`` is told at once). What is left
        unrecorded, as warnings to show (none when the run's end is written)."""
        waited = min(BUSY_NOTE_AFTER_S, finish_wait)
        if not self.done.wait(waited) and waited < finish_wait and (busy := self._busy()):
            say(
                f"the store is busy ({busy.rsplit(': ', 1)[-1]}); waiting up to "
                f"{format_duration(finish_wait)} to record this run"
            )
        if self.done.wait(max(0.0, finish_wait - waited)):
            return []
        self.give_up.set()
        answer = f"the store did not answer within {format_duration(finish_wait)}"
        why = self._busy() or self.problem or answer
        if self.logger is None:
            return [f"this run is not recorded: {why}"]
        return [f"the run's end is not recorded ({why}); it stays running until reaped"]

    def _busy(self) -> str | None:
        """Why the store keeps us waiting: what it last refused us with, or, while the recorder
        is still inside SQLite's own wait for the lock, that the lock is taken (by another
        process, most likely: this one's recorder is the one waiting)."""
        if self.busy is not None:
            return self.busy
        from runstore.store.engine import write_lock_taken
        from runstore.store.location import resolve_db, sqlite_path

        path = sqlite_path(resolve_db(self.db))
        if path is not None and write_lock_taken(path):
            return "database is locked"
        return None

    def _keep_trying(self, work: Callable[[], None]) -> None:
        """Run ``work`` until the store lets it through (another process may hold the write
        lock for minutes: a VACUUM, a long prune) or the execution gives up waiting."""
        while True:
            try:
                work()
                self.busy = None
                return
            except StoreBusy as exc:
                self.busy = str(exc)
                if self.give_up.wait(BUSY_RETRY_S):
                    raise

    def _open(self) -> None:
        from runstore.record.logger import RunLogger
        from runstore.store.store import Store

        store = Store.open(self.db)

        def start(run_id: str | None) -> Any:
            return RunLogger(self.job, run_id, store=store, argv=self.argv, started=self.started,
                             tags=self.tags)  # fmt: skip

        try:
            self.logger = start(self.requested_run_id)
        except DuplicateRunId:
            if self.requested_run_id is None:
                raise
            self.logger = start(None)
            self.note = (
                f"run id {self.requested_run_id!r} is already taken; "
                f"this run is recorded as {self.logger.run_id}"
            )
        self.run_id = self.logger.run_id
        self.store_address = str(store.path) if store.path is not None else store.url

    def _log(self, message: OutputLine | Event) -> None:
        """Log one message; a busy store keeps it pending in the logger for its next flush."""
        try:
            if isinstance(message, OutputLine):
                line = message.line
                data: dict[str, Any] = {"stream": line.stream, "line": line.text}
                if line.truncated:
                    data["truncated"] = True
                self.logger.log_event("output", data, ts=line.ts or None)
                return
            self.logger.log_event(
                message.event_type,
                message.data,
                level=message.level,
                message=message.message,
                ts=message.ts,
            )
            if message.flush:
                self.logger.flush()
        except StoreBusy as exc:
            self.busy = str(exc)

    def _finish(self, end: Finish) -> None:
        if self.logger is None:
            return
        try:
            if self.problem is None:
                for message in end.events:
                    self._log(message)
            finish = functools.partial(
                self.logger.finish,
                end.status,
                exit_code=end.exit_code,
                error_summary=end.reason,
                extra=end.extra,
            )
            self._keep_trying(finish)
        except Exception as exc:
            self.problem = self.problem or errors.reason(exc)
            return
        if self.log_path is not None:
            # An export of the recorded run: the command's outcome stands whatever happens here.
            try:
                self.logger.write_log(self.log_path)
            except Exception as exc:
                self.log_problem = f"{errors.reason(exc)}; the run is recorded in the store only"


def runstore_bin() -> str | None:
    """This runstore's executable, for ``RUNSTORE_BIN``: the command being run, else the one
    beside this Python (``python -m runstore``), else the one on PATH."""
    import shutil
    import sys

    started_as = Path(sys.argv[0])
    if started_as.name == "runstore" and started_as.is_file():
        return str(started_as.absolute())
    beside = Path(sys.executable).parent / "runstore"
    if beside.is_file():
        return str(beside)
    return shutil.which("runstore")


def store_for_child(url: str) -> tuple[str, Path | None]:
    """The store's address for the command's environment, without its password (a command that
    prints its environment would have it stored with its output): the password goes into a
    passfile of ours that libpq reads (PGPASSFILE), readable by its owner only, removed when the
    run ends; the user's own passfile lines follow ours, so the command's other connections
    find theirs as before."""
    from sqlalchemy.engine import make_url

    from runstore import env
    from runstore.files import sweep_leftovers, temporary_path

    address = make_url(url)
    if address.password is None:
        return url, None
    fields = (address.host, address.port, address.database, address.username, address.password)
    line = ":".join(_passfile_field(value) for value in fields)
    theirs = os.environ.get(env.PGPASSFILE) or os.path.expanduser("~/.pgpass")
    try:
        with open(theirs, encoding="utf-8") as f:
            rest = f.read()
    except OSError:
        rest = ""
    directory = Path(tempfile.gettempdir())
    sweep_leftovers(directory)
    passfile = temporary_path(directory / "pgpass", "tmp")
    fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"{line}\n{rest}")
    return address._replace(password=None).render_as_string(hide_password=False), passfile


def _passfile_field(value: object) -> str:
    if value is None:
        return "*"
    return str(value).replace("\\", "\\\\").replace(":", "\\:")
