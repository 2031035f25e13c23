"""``runstore exec``: run any command as a recorded run, invisibly to the command.

The run row is written before the command starts. The command's stdout and stderr pass through
to ours unchanged, chunk by chunk as it writes them; its lines are stored as ``output`` events,
bounded (see ``runstore.exec.capture``). Its exit code is ours: 128+N when it dies of signal N,
124 on ``--timeout``, 126 when it cannot be executed, 127 when it is not found.

Signals: INT, TERM, HUP (and QUIT) sent to runstore are forwarded to the command. Without a
terminal the command runs in its own process group and the signal goes to that group. When
runstore runs in a terminal's foreground process group the command stays in that group, so it
can read the terminal and job control (Ctrl-Z, ``fg``) works; the terminal already sends Ctrl-C,
Ctrl-\\ and hangups to the whole group, so those are not delivered a second time.

Recording never breaks the job: every store write happens on a recorder thread, so a locked,
full or read-only store cannot stall the output or change the exit code; the first problem is
reported once, as a warning.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import queue
import re
import select
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

from runstore import errors
from runstore.errors import DuplicateRunId, StoreBusy
from runstore.exec.capture import (
    HEAD_LINES,
    STDERR,
    STDOUT,
    TAIL_LINES,
    Line,
    OutputCapture,
    Spool,
)
from runstore.humanize import format_duration
from runstore.redact import redact_text
from runstore.store.schema import MAX_JOB

# NAME=value, as a shell reads it before a command (and as `exec` is sometimes mistakenly given).
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")

EXIT_TIMEOUT = 124
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

KILL_AFTER_S = 5.0
# How long the command waits for its run row; a store locked longer does not hold the job up.
START_WAIT_S = 10.0
# How long runstore waits, after the command ended, for the store to take the run's end: long
# enough for another process's long write (a VACUUM, a prune) to finish.
FINISH_WAIT_S = 120.0
# A busy store is tried again this often, and said to be waited for after this long.
BUSY_RETRY_S = 0.5
BUSY_NOTE_AFTER_S = 3.0
# After the command exits, output still held open by its background children is read until it
# goes quiet this long (the command's own output is already in the pipe, at most PIPE_SIZE).
DRAIN_QUIET_S = 0.5
DRAIN_MAX_S = 5.0
READ_SIZE = 1 << 20
PIPE_SIZE = 1 << 20  # Linux default is 64 KiB; larger pipes mean fewer, larger reads
MAX_SIGNAL_EVENTS = 20
# The command's memory is sampled from /proc at growing intervals, up to this one.
SAMPLE_MAX_S = 2.0

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# A terminal sends these to its whole foreground process group.
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)

Warn = Callable[[str], None]


@dataclass
class ExecResult:
    """How a wrapped command ended, and how it was recorded."""

    exit_code: int
    status: str
    run_id: str | None  # None when the run could not be recorded
    reason: str | None = None  # why it did not complete (the run's error_summary)
    signal: int | None = None  # the signal that ended the command
    spawn_error: str | None = None  # the command could not be started: the line to show
    warnings: list[str] = field(default_factory=list)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def default_job_name(argv: Sequence[str]) -> str:
    """The command's base name: ``./backup.sh --full`` is filed under ``backup.sh``. Leading
    ``NAME=value`` words are skipped (``PGPASSWORD=... psql`` is ``psql``), and whatever is left
    is redacted: a job name is shown everywhere."""
    program = next((word for word in argv if not _ASSIGNMENT.match(word)), argv[0])
    name = os.path.basename(program.rstrip("/")) or program or "exec"
    return redact_text(name)[:MAX_JOB]


def run_command(
    argv: Sequence[str],
    *,
    job: str | None = None,
    run_id: str | None = None,
    db: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    kill_after: float = KILL_AFTER_S,
    quiet: bool = False,
    log_path: str | os.PathLike[str] | None = None,
    head_lines: int = HEAD_LINES,
    tail_lines: int = TAIL_LINES,
    warn: Warn | None = None,
    stdout_fd: int = 1,
    stderr_fd: int = 2,
    start_wait: float = START_WAIT_S,
    finish_wait: float = FINISH_WAIT_S,
) -> ExecResult:
    """Run ``argv`` as one recorded run of ``job`` and return how it ended.

    ``warn`` receives the (at most one) store warning and other notes; nothing else is printed
    except the command's own output, written to ``stdout_fd``/``stderr_fd``.
    """
    if not argv:
        raise ValueError("no command to run")
    execution = _Execution(
        list(argv),
        job=job or default_job_name(argv),
        run_id=run_id,
        db=db,
        timeout=timeout,
        kill_after=kill_after,
        quiet=quiet,
        log_path=log_path,
        capture=OutputCapture(head_lines, tail_lines),
        warn=warn,
        fds={STDOUT: stdout_fd, STDERR: stderr_fd},
        start_wait=start_wait,
        finish_wait=finish_wait,
    )
    return execution.run()


# -- the recorder thread ---------------------------------------------------------------------------


class _Recorder(threading.Thread):
    """Owns the run's RunLogger; takes events from a queue so that the store never blocks I/O."""

    def __init__(
        self,
        *,
        job: str,
        run_id: str | None,
        db: str | os.PathLike[str] | None,
        argv: list[str],
        log_path: str | os.PathLike[str] | None,
        started: tuple[datetime, float],
    ) -> None:
        super().__init__(name="runstore-recorder", daemon=True)
        self.started = started
        self.job = job
        self.requested_run_id = run_id
        self.db = db
        self.argv = argv
        self.log_path = log_path
        # SimpleQueue.put is reentrant: signal handlers may enqueue.
        self.inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.ready = threading.Event()
        self.done = threading.Event()
        self.logger: Any = None
        self.run_id: str | None = None
        self.store_for_child: str | None = None
        self.problem: str | None = None
        self.busy: str | None = None  # why the store refuses us right now (another writer)
        self.give_up = threading.Event()
        self.log_problem: str | None = None
        self.note: str | None = None

    def run(self) -> None:
        try:
            self._keep_trying(self._open)
        except Exception as exc:  # recording must never break the job
            self.problem = errors.reason(exc)
        finally:
            self.ready.set()
        while True:
            item = self.inbox.get()
            if item[0] == "finish":
                self._finish(*item[1:])
                self.done.set()
                return
            if self.logger is None or self.problem is not None:
                continue
            try:
                self._log(item)
            except StoreBusy as exc:
                self.busy = str(exc)  # the logger keeps the events for its next flush
            except Exception as exc:
                self.problem = errors.reason(exc)

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
            return RunLogger(self.job, run_id, store=store, argv=self.argv, started=self.started)

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
        self.store_for_child = str(store.path) if store.path is not None else store.url

    def _log(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "output":
            line: Line = item[1]
            data: dict[str, Any] = {"stream": line.stream, "line": line.text}
            if line.truncated:
                data["truncated"] = True
            self.logger.log_event("output", data)
        elif kind == "event":
            _, event_type, data, level, message, flush = item
            self.logger.log_event(event_type, data, level=level, message=message)
            if flush:
                self.logger.flush()

    def _log_pending(self, item: tuple[Any, ...]) -> None:
        """Log an event; a busy store keeps it pending in the logger, for the finish to write."""
        try:
            self._log(item)
        except StoreBusy as exc:
            self.busy = str(exc)

    def _finish(
        self,
        events: list[tuple[Any, ...]],
        status: str,
        exit_code: int,
        reason: str | None,
        extra: dict[str, Any],
    ) -> None:
        if self.logger is None:
            return
        try:
            if self.problem is None:
                for item in events:
                    self._log_pending(item)
            end = functools.partial(
                self.logger.finish, status, exit_code=exit_code, error_summary=reason, extra=extra
            )
            self._keep_trying(end)
        except Exception as exc:
            self.problem = self.problem or errors.reason(exc)
            return
        if self.log_path is not None:
            # An export of the recorded run: the command's outcome stands whatever happens here.
            try:
                self.logger.write_log(self.log_path)
            except Exception as exc:
                self.log_problem = f"{errors.reason(exc)}; the run is recorded in the store only"


# -- one execution -------------------------------------------------------------------------------


class _Execution:
    def __init__(
        self,
        argv: list[str],
        *,
        job: str,
        run_id: str | None,
        db: str | os.PathLike[str] | None,
        timeout: float | None,
        kill_after: float,
        quiet: bool,
        log_path: str | os.PathLike[str] | None,
        capture: OutputCapture,
        warn: Warn | None,
        fds: dict[str, int],
        start_wait: float,
        finish_wait: float,
    ) -> None:
        self.argv = argv
        self.timeout = timeout
        self.kill_after = kill_after
        self.capture = capture
        self.fds = fds
        self.start_wait = start_wait
        self.finish_wait = finish_wait
        self._warn = warn
        self.warnings: list[str] = []
        # The run spans runstore's start to the command's exit, however long the store makes
        # either side wait.
        self.started = (datetime.now(timezone.utc), time.monotonic())
        self.exited_clock: float | None = None
        self.recorder = _Recorder(
            job=job, run_id=run_id, db=db, argv=argv, log_path=log_path, started=self.started
        )
        self.spool = Spool() if quiet else None
        self.passfile: Path | None = None
        self.pid: int | None = None
        self.own_group = True
        self.exited = False
        self.wait_status = 0
        self.rusage: Any = None
        self.cancel_signal: int | None = None
        self.signal_events = 0
        self.timed_out = False
        self.killed = False
        self.store_warned = False
        self._unsent: int | None = None
        self.last_error_line: str | None = None
        self.rss_at_spawn_kb = 0
        self.sampled_rss_kb: int | None = None
        self.status_unknown = False
        self._dead_fds: set[int] = set()
        self._stderr_mid_line = False

    # -- notes and warnings ----------------------------------------------------------------------

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        if self._warn is None:
            return
        if self._stderr_mid_line and self.spool is None:
            with contextlib.suppress(OSError):
                _write_all(self.fds[STDERR], b"\n")
            self._stderr_mid_line = False
        self._warn(message)

    def check_store(self) -> None:
        problem = self.recorder.problem
        if problem is not None and not self.store_warned:
            self.store_warned = True
            if self.recorder.logger is None:
                self.warn(f"this run is not recorded: {problem}")
            else:
                self.warn(f"the run is not fully recorded: {problem}")

    def record(
        self, event_type: str, data: dict[str, Any], level: str, message: str, flush: bool = False
    ) -> None:
        self.recorder.inbox.put(("event", event_type, data, level, message, flush))

    # -- signals ---------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal_name(signum)
        if self.pid is None:
            self._unsent = signum  # the command is not started yet (or is being started)
        forward = self.pid is not None and not self.exited
        if forward and not self.own_group and signum in TERMINAL_SIGNALS:
            forward = False  # the terminal sent it to the command too
        if signum in CANCEL_SIGNALS and self.cancel_signal is None:
            self.cancel_signal = signum
        if forward:
            self.send(signum)
        if self.signal_events < MAX_SIGNAL_EVENTS:
            self.signal_events += 1
            self.record(
                "signal",
                {"signal": name, "forwarded": forward},
                "warning",
                f"received {name}" + ("; forwarded to the command" if forward else ""),
            )

    def send(self, signum: int) -> None:
        if self.pid is None or self.exited:
            return
        try:
            if self.own_group:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def _install_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for sig in FORWARDED_SIGNALS:
            old = signal.getsignal(sig)
            if old == signal.SIG_IGN:
                continue  # ignored by whoever started us (nohup): the command inherits that
            previous[sig] = signal.signal(sig, self._on_signal)
        if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
            # Ignored, the kernel would reap the command and its exit status would be lost.
            previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        return previous

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> ExecResult:
        previous = self._install_handlers()
        try:
            return self._run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.spool is not None:
                self.spool.close()
            if self.passfile is not None:
                self.passfile.unlink(missing_ok=True)

    def _run(self) -> ExecResult:
        from runstore.signals import take_held

        recorder = self.recorder
        recorder.start()
        held = take_held()  # a signal that came while runstore started: CMD never starts
        if held and self.cancel_signal is None:
            self.cancel_signal = held
        deadline = time.monotonic() + self.start_wait
        while not recorder.ready.wait(0.05):
            if self.cancel_signal is not None or time.monotonic() >= deadline:
                break
        if recorder.note:
            self.warn(recorder.note)
        if not recorder.ready.is_set() and self.cancel_signal is None:
            self.store_warned = True
            self.warn(
                f"the store did not answer within {format_duration(self.start_wait)}; "
                "the command starts before its run is recorded"
            )
        self.check_store()

        if self.cancel_signal is not None:
            code = 128 + self.cancel_signal
            reason = f"cancelled by {signal_name(self.cancel_signal)} before the command started"
            return self._end("cancelled", code, reason, sig=None)

        env = dict(os.environ)
        if recorder.run_id is not None and recorder.store_for_child is not None:
            env["RUNSTORE_RUN_ID"] = recorder.run_id
            env["RUNSTORE_DB"] = recorder.store_for_child
        if "://" in env.get("RUNSTORE_DB", ""):
            env["RUNSTORE_DB"], self.passfile = store_for_child(env["RUNSTORE_DB"])
            if self.passfile is not None:
                env["PGPASSFILE"] = str(self.passfile)
        problem = self._spawn(env)
        if problem is not None:
            code, message = problem
            self.record("error", {"message": message}, "error", message)
            return self._end("failed", code, message, sig=None, spawn_error=message)

        self.record(
            "process_started",
            {"pid": self.pid, "process_group": self.own_group}
            | ({"timeout_s": self.timeout} if self.timeout is not None else {}),
            "info",
            f"started {self.argv[0]}",
            flush=True,  # before anything the command itself records
        )
        self._pump()
        return self._ended()

    def _spawn(self, env: dict[str, str]) -> tuple[int, str] | None:
        self.own_group = not _in_terminal_foreground()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for fd in (out_r, err_r):
            _grow_pipe(fd)
        options: dict[str, Any] = {}
        if self.own_group:
            if sys.version_info >= (3, 11):
                options["process_group"] = 0
            else:  # pragma: no cover - Python 3.10
                options["preexec_fn"] = os.setpgrp
        try:
            # close_fds=False: descriptors we inherited (sockets, lock files) reach the command
            # as they would without us; our own descriptors are close-on-exec.
            proc = subprocess.Popen(
                self.argv, stdout=out_w, stderr=err_w, env=env, close_fds=False, **options
            )
        except OSError as exc:
            os.close(out_r)
            os.close(err_r)
            code, message = _spawn_problem(self.argv[0], exc)
            return code, redact_text(message)  # argv[0] may be PGPASSWORD=... itself
        finally:
            os.close(out_w)
            os.close(err_w)
        self.proc = proc
        self.pid = proc.pid
        self.pipes = {STDOUT: out_r, STDERR: err_r}
        self.rss_at_spawn_kb = _own_peak_rss_kb()  # at least what the command's mm started with
        if self._unsent is not None:  # arrived while the command was being started
            self.send(self._unsent)
        return None

    def _wait_child(self, wake_w: int) -> None:
        assert self.pid is not None
        try:
            _, status, rusage = os.wait4(self.pid, 0)
            self.wait_status, self.rusage = status, rusage
            self.proc.returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped by the system: SIGCHLD was ignored by our parent
            self.status_unknown = True
        finally:
            self.exited = True
            self.exited_clock = time.monotonic()
            os.write(wake_w, b"x")

    def _pump(self) -> None:
        """Pass output through until the command has exited and its output is drained."""
        wake_r, wake_w = os.pipe()
        waiter = threading.Thread(
            target=self._wait_child, args=(wake_w,), name="runstore-wait", daemon=True
        )
        waiter.start()
        sel = selectors.DefaultSelector()
        for stream, fd in self.pipes.items():
            sel.register(fd, selectors.EVENT_READ, stream)
        sel.register(wake_r, selectors.EVENT_READ, None)
        open_pipes = len(self.pipes)
        # Reused read buffers: a fresh 1 MiB bytes per read would cost a mmap and page faults.
        buffers = {stream: bytearray(READ_SIZE) for stream in self.pipes}
        started = time.monotonic()
        timeout_at = started + self.timeout if self.timeout is not None else None
        kill_at: float | None = None
        exited_at: float | None = None
        last_data = started
        sample_every = 0.02
        sample_at = started + sample_every
        try:
            while True:
                now = time.monotonic()
                if exited_at is None and now >= sample_at:
                    self._sample_rss()
                    sample_every = min(SAMPLE_MAX_S, sample_every * 2)
                    sample_at = now + sample_every
                if exited_at is not None and (
                    open_pipes == 0
                    or now - last_data >= DRAIN_QUIET_S
                    or now - exited_at >= DRAIN_MAX_S
                ):
                    break
                if timeout_at is not None and exited_at is None and now >= timeout_at:
                    timeout_at = None
                    self._time_out()
                    kill_at = now + self.kill_after
                if kill_at is not None and exited_at is None and now >= kill_at:
                    kill_at = None
                    self._kill()
                wait = _next_wait(now, timeout_at, kill_at, exited_at, last_data, sample_at)
                for key, _ in sel.select(wait):
                    if key.data is None:
                        sel.unregister(wake_r)
                        exited_at = last_data = time.monotonic()
                        continue
                    buffer = buffers[key.data]
                    try:
                        size = os.readv(key.fd, [buffer])
                    except OSError:
                        size = 0
                    if size and self._output(key.data, buffer, size):
                        last_data = time.monotonic() if exited_at is not None else last_data
                        continue
                    sel.unregister(key.fd)
                    os.close(key.fd)
                    open_pipes -= 1
                self.check_store()
        finally:
            for key in list(sel.get_map().values()):
                if key.data is not None:
                    os.close(key.fd)
            sel.close()
            if self.exited:
                waiter.join()
            os.close(wake_r)
            os.close(wake_w)

    def _output(self, stream: str, buffer: bytearray, size: int) -> bool:
        """Pass ``buffer[:size]`` through and capture it; False when the pipe should be closed."""
        keep_open = True
        data = memoryview(buffer)[:size]
        if self.spool is not None:
            self.spool.write(1 if stream == STDOUT else 2, data)
        else:
            fd = self.fds[stream]
            if fd not in self._dead_fds:
                try:
                    _write_all(fd, data)
                    if stream == STDERR:
                        self._stderr_mid_line = buffer[size - 1] != 10  # b"\n"
                except BrokenPipeError:
                    # Our reader left: close the command's pipe too, so it gets SIGPIPE as it
                    # would have writing there directly.
                    self._dead_fds.add(fd)
                    keep_open = False
                except OSError:
                    self._dead_fds.add(fd)  # closed or broken output: keep the command going
        data.release()
        for line in self.capture.feed(stream, buffer, size):
            self.recorder.inbox.put(("output", line))
            if line.stream == STDERR and line.text.strip():
                self.last_error_line = line.text.strip()
        return keep_open

    def _sample_rss(self) -> None:
        """The command's peak RSS so far, children included (``_usage`` says why it is sampled)."""
        if self.pid is None or self.exited:
            return
        peak = _tree_peak_rss_kb(self.pid)
        if peak is not None and peak > (self.sampled_rss_kb or 0):
            self.sampled_rss_kb = peak

    def _time_out(self) -> None:
        assert self.timeout is not None
        self.timed_out = True
        message = f"timed out after {format_duration(self.timeout)}; sent SIGTERM"
        self.record("timeout", {"timeout_s": self.timeout, "signal": "SIGTERM"}, "error", message)
        self.send(signal.SIGTERM)

    def _kill(self) -> None:
        self.killed = True
        message = f"still running {format_duration(self.kill_after)} after SIGTERM; sent SIGKILL"
        self.record(
            "timeout", {"kill_after_s": self.kill_after, "signal": "SIGKILL"}, "error", message
        )
        self.send(signal.SIGKILL)

    def _ended(self) -> ExecResult:
        status = self.wait_status
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        child_code = 128 + sig if sig is not None else os.WEXITSTATUS(status)
        tail = self.capture.tail()
        if self.status_unknown:
            code, run_status = 1, "failed"
            reason = "the command's exit status is unknown (SIGCHLD was set to be ignored)"
        elif self.timed_out:
            code, run_status = EXIT_TIMEOUT, "failed"
            reason = f"timed out after {format_duration(self.timeout or 0)}"
            if self.killed:
                reason += f"; killed with SIGKILL {format_duration(self.kill_after)} later"
        elif self.cancel_signal is not None and child_code != 0:
            code, run_status = child_code, "cancelled"
            reason = f"cancelled by {signal_name(self.cancel_signal)}"
            if sig is not None and sig != self.cancel_signal:
                reason += f"; the command died of {signal_name(sig)}"
        elif sig is not None:
            code, run_status = child_code, "failed"
            reason = f"killed by {signal_name(sig)}"
        elif child_code != 0:
            code, run_status = child_code, "failed"
            reason = f"exit code {child_code}"
            last_error = next(
                (
                    ln.text.strip()
                    for ln in reversed(tail)
                    if ln.stream == STDERR and ln.text.strip()
                ),
                self.last_error_line,
            )
            if last_error:
                reason += f": {last_error}"
        else:
            code, run_status, reason = 0, "completed", None

        events: list[tuple[Any, ...]] = []
        totals = self.capture.totals()
        lines_total = totals["stdout_lines"] + totals["stderr_lines"]
        bytes_total = totals["stdout_bytes"] + totals["stderr_bytes"]
        stored = self.capture.head_count + len(tail)
        lines_omitted = lines_total - stored
        bytes_omitted = bytes_total - self.capture.stored_bytes
        if lines_omitted > 0 or bytes_omitted > 0:
            events.append(
                (
                    "event",
                    "output_omitted",
                    {
                        "lines_omitted": lines_omitted,
                        "bytes_omitted": bytes_omitted,
                        "lines_total": lines_total,
                        "bytes_total": bytes_total,
                        "head_lines": self.capture.head_count,
                        "tail_lines": len(tail),
                        **totals,
                    },
                    "info",
                    f"{lines_omitted} lines ({bytes_omitted} bytes) of output not stored; "
                    f"kept the first {self.capture.head_count} and the last {len(tail)}",
                    False,
                )
            )
        events.extend(("output", line) for line in tail)
        usage = _usage(self.rusage, self.rss_at_spawn_kb, self.sampled_rss_kb)
        events.append(
            (
                "event",
                "process_exited",
                {
                    "exit_code": None if sig is not None else child_code,
                    "signal": signal_name(sig) if sig is not None else None,
                    **usage,
                    **totals,
                },
                "info",
                f"killed by {signal_name(sig)}" if sig is not None else f"exit code {child_code}",
                False,
            )
        )
        if self.spool is not None and code != 0:
            self.spool.replay(self._replay_write, self._replay_note)
        return self._end(run_status, code, reason, sig=sig, events=events, usage=usage)

    def _replay_write(self, fd_index: int, data: bytes) -> None:
        with contextlib.suppress(OSError):
            _write_all(self.fds[STDOUT if fd_index == 1 else STDERR], data)

    def _replay_note(self, omitted: int) -> None:
        note = f"\n[runstore: {omitted} bytes of output not kept]\n".encode()
        self._replay_write(2, note)

    def _end(
        self,
        status: str,
        code: int,
        reason: str | None,
        *,
        sig: int | None,
        events: list[tuple[Any, ...]] | None = None,
        usage: dict[str, Any] | None = None,
        spawn_error: str | None = None,
    ) -> ExecResult:
        recorder = self.recorder
        ended = self.exited_clock if self.exited_clock is not None else time.monotonic()
        extra: dict[str, Any] = {
            "signal": sig,
            "duration_ms": int((ended - self.started[1]) * 1000),
            **(usage or {}),
        }
        recorder.inbox.put(("finish", events or [], status, code, reason, extra))
        self._wait_for_the_record()
        if recorder.log_problem is not None:
            self.warn(recorder.log_problem)
        return ExecResult(
            exit_code=code,
            status=status,
            run_id=recorder.run_id,
            reason=reason,
            signal=sig,
            spawn_error=spawn_error,
            warnings=self.warnings,
        )

    def _wait_for_the_record(self) -> None:
        """Wait for the recorder to store the run's end: a store that another process keeps
        locked is waited for (up to finish_wait, said once), and whatever is left unrecorded at
        the end is said, whatever was said before."""
        recorder = self.recorder
        waited = min(BUSY_NOTE_AFTER_S, self.finish_wait)
        if not recorder.done.wait(waited) and recorder.busy is not None:
            self.warn(
                f"the store is busy ({recorder.busy.rsplit(': ', 1)[-1]}); waiting up to "
                f"{format_duration(self.finish_wait)} to record this run"
            )
        if not recorder.done.wait(max(0.0, self.finish_wait - waited)):
            recorder.give_up.set()
            why = (
                recorder.busy
                or recorder.problem
                or f"the store did not answer within {format_duration(self.finish_wait)}"
            )
            if recorder.logger is None:
                self.warn(f"this run is not recorded: {why}")
            else:
                self.warn(f"the run's end is not recorded ({why}); it stays running until reaped")
            self.store_warned = True
            return
        self.check_store()


# -- helpers ---------------------------------------------------------------------------------------


def store_for_child(url: str) -> tuple[str, Path | None]:
    """The store's address for the command's environment, without its password (a command that
    prints its environment would have it stored with its output): the password goes into a
    passfile of ours that libpq reads (PGPASSFILE), readable by its owner only, removed when the
    run ends; the user's own passfile lines follow ours, so the command's other connections
    find theirs as before."""
    from sqlalchemy.engine import make_url

    from runstore.files import sweep_leftovers, temporary_path

    address = make_url(url)
    if address.password is None:
        return url, None
    fields = (address.host, address.port, address.database, address.username, address.password)
    line = ":".join(_passfile_field(value) for value in fields)
    theirs = os.environ.get("PGPASSFILE") or os.path.expanduser("~/.pgpass")
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


def _spawn_problem(program: str, exc: OSError) -> tuple[int, str]:
    """Exit code and message for a command that could not be started, as a shell reports it."""
    exists = os.path.exists(program) if "/" in program else shutil.which(program) is not None
    if isinstance(exc, FileNotFoundError) and not exists:
        if "/" in program:
            return EXIT_NOT_FOUND, f"{program}: no such file or directory"
        return EXIT_NOT_FOUND, f"{program}: command not found"
    if isinstance(exc, FileNotFoundError):
        return EXIT_NOT_EXECUTABLE, f"{program}: bad interpreter (no such file or directory)"
    if os.path.isdir(program):
        return EXIT_NOT_EXECUTABLE, f"{program}: is a directory"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return EXIT_NOT_EXECUTABLE, f"{program}: permission denied"
    return EXIT_NOT_EXECUTABLE, f"{program}: cannot execute: {exc.strerror or exc}"


def _in_terminal_foreground() -> bool:
    """True when runstore runs in its controlling terminal's foreground process group."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, AttributeError, OSError):
        pass


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:  # our output was left non-blocking by someone else
            select.select([], [fd], [])
            continue
        view = view[written:]


def _next_wait(
    now: float,
    timeout_at: float | None,
    kill_at: float | None,
    exited_at: float | None,
    last_data: float,
    sample_at: float,
) -> float:
    moments = [m for m in (timeout_at, kill_at) if m is not None]
    if exited_at is not None:
        moments += [last_data + DRAIN_QUIET_S, exited_at + DRAIN_MAX_S]
    else:
        moments.append(sample_at)
    return max(0.0, min(moments) - now)


def _usage(rusage: Any, rss_at_spawn_kb: int, sampled_rss_kb: int | None) -> dict[str, Any]:
    """Resource use of the command (and the children it waited for), from wait4.

    Linux counts in a child's ru_maxrss the memory of the process that started it (the mm it
    left at exec), so below runstore's own peak the kernel's figure says nothing about the
    command: then the peak sampled from /proc while it ran is used (the largest process of its
    tree; None if it ended before the first sample).
    """
    if rusage is None:
        return {}
    rss = int(rusage.ru_maxrss)
    if sys.platform == "darwin":
        rss //= 1024  # bytes there, KiB on Linux
    return {
        "max_rss_kb": rss if rss > rss_at_spawn_kb else sampled_rss_kb,
        "cpu_user_ms": round(rusage.ru_utime * 1000),
        "cpu_system_ms": round(rusage.ru_stime * 1000),
    }


def _own_peak_rss_kb() -> int:
    import resource

    rss = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return rss // 1024 if sys.platform == "darwin" else rss


def _tree_peak_rss_kb(root: int) -> int | None:
    """The largest VmHWM (peak RSS since exec) among ``root`` and its live descendants."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    children: dict[int, list[int]] = {}
    for name in names:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
                ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(name))
    peak: int | None = None
    todo, seen = [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, ()))
        value = _peak_rss_kb(pid)
        if value is not None and (peak is None or value > peak):
            peak = value
    return peak


def _peak_rss_kb(pid: int) -> int | None:
    """VmHWM of a live process: its own peak RSS since its last exec."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None
