"""``runstore exec``: run any command as a recorded run, invisibly to the command.

The run row is written before the command starts. The command's stdout and stderr pass through
to ours unchanged, chunk by chunk as it writes them; its lines are stored as ``output`` events,
bounded (see ``capture``). Its exit code is ours: 128+N when it dies of signal N, 124 on
``--timeout``, 126 when it cannot be executed, 127 when it is not found (``outcome``).

Signals: INT, TERM, HUP (and QUIT) sent to runstore are passed on to the command (``child``).

Recording never breaks the job: every store write happens on a recorder thread (``recorder``), so
a locked, full or read-only store cannot stall the output or change the exit code; what is not
recorded is said in a warning.

The pieces: ``child`` (the process), ``pump`` (the loop that moves its output), ``outcome`` (pure
decisions), ``recorder`` (the store), ``capture`` (bounded output); this module runs them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import FrameType
from typing import Any

from runstore import env
from runstore.channel import Channel, LineSplitter, decode
from runstore.errors import UsageError
from runstore.exec import HEAD_LINES, KILL_AFTER_S, MAX_RETRIES, RETRY_DELAY_S, TAIL_LINES, outcome
from runstore.exec.capture import STDERR, STDOUT, Line, OutputCapture, Spool
from runstore.exec.child import Child, take_signals
from runstore.exec.naming import default_job_name
from runstore.exec.outcome import Outcome, signal_name
from runstore.exec.pump import Deadlines, pump, write_all
from runstore.exec.recorder import Event, Finish, OutputLine, Recorder
from runstore.humanize import format_duration
from runstore.record.ids import check_job, check_run_id, check_tags
from runstore.redact import redact_text

# How long the command waits for its run row; a store locked longer does not hold the job up.
START_WAIT_S = 10.0
# How long runstore waits, after the command ended, for the store to take the run's end: long
# enough for another process's long write (a VACUUM, a prune) to finish.
FINISH_WAIT_S = 120.0
MAX_SIGNAL_EVENTS = 20
# Events that come while output is kept only as a tail wait to be stored in time order with it;
# beyond this many, the oldest are stored at once (before tail lines that came earlier).
MAX_HELD_EVENTS = 10_000
EVENTS = "events"  # the pump's name for the events channel


Warn = Callable[[str], None]


@dataclass(frozen=True)
class ExecOptions:
    """How to run and record a command: what ``runstore exec``'s options say."""

    job: str | None = None  # default: the command's name (``default_job_name``)
    run_id: str | None = None
    db: str | os.PathLike[str] | None = None
    timeout: float | None = None
    kill_after: float = KILL_AFTER_S
    quiet: bool = False  # show the output only when the command fails
    log_path: str | os.PathLike[str] | None = None
    head_lines: int = HEAD_LINES
    tail_lines: int = TAIL_LINES
    start_wait: float = START_WAIT_S
    finish_wait: float = FINISH_WAIT_S
    tags: Mapping[str, str] = field(default_factory=dict)
    retries: int = 0  # attempts after the first, when it fails
    retry_delay: float = RETRY_DELAY_S
    retry_on: tuple[int, ...] | None = None  # the exit codes worth a retry; None: any failure

    def __post_init__(self) -> None:
        """Bad values are usage errors, found before anything runs."""
        if self.job is not None:
            check_job(self.job)
        if self.run_id is not None:
            check_run_id(self.run_id)
        object.__setattr__(self, "tags", check_tags(self.tags))
        if self.timeout is not None and self.timeout <= 0:
            raise UsageError("must be longer than zero", field="timeout")
        if not 0 <= self.retries <= MAX_RETRIES:
            raise UsageError(f"must be 0 to {MAX_RETRIES}", field="retries")
        if self.retry_delay < 0:
            raise UsageError("must not be negative", field="retry_delay")
        if self.retry_on is not None and not all(0 < code < 256 for code in self.retry_on):
            raise UsageError("exit codes are 1 to 255", field="retry_on")


@dataclass
class ExecResult:
    """How a wrapped command ended, and how it was recorded."""

    exit_code: int
    status: str
    run_id: str | None  # None when the run could not be recorded
    job: str = ""
    reason: str | None = None  # why it did not complete (the run's error_summary)
    signal: int | None = None  # the signal that ended the command
    spawn_error: str | None = None  # the command could not be started: the line to show
    warnings: list[str] = field(default_factory=list)


def run_command(
    argv: Sequence[str],
    options: ExecOptions | None = None,
    *,
    warn: Warn | None = None,
    note: Warn | None = None,
    stdout_fd: int = 1,
    stderr_fd: int = 2,
) -> ExecResult:
    """Run ``argv`` as one recorded run and return how it ended.

    ``warn`` receives what is not recorded and other problems, ``note`` what runstore did to
    the command (a timeout's signals); nothing else is printed except the command's own output,
    written to ``stdout_fd``/``stderr_fd``.
    """
    if not argv:
        raise ValueError("no command to run")
    execution = Execution(list(argv), options or ExecOptions(), warn, stdout_fd, stderr_fd)
    execution.note_to = note
    return execution.run()


class Execution:
    """One run of a command: its signals, its output, its warnings, its end."""

    def __init__(
        self, argv: list[str], options: ExecOptions, warn: Warn | None, out: int, err: int
    ) -> None:
        self.argv = argv
        self.options = options
        self.fds = {STDOUT: out, STDERR: err}
        self._warn = warn
        self.warnings: list[str] = []
        self.capture = OutputCapture(options.head_lines, options.tail_lines)
        self.spool = Spool() if options.quiet else None
        self.child = Child(argv)
        # The run spans runstore's start to the command's exit, however long the store makes
        # either side wait.
        self.started = (datetime.now(timezone.utc), time.monotonic())
        self.recorder = Recorder(
            job=options.job or default_job_name(argv),
            run_id=options.run_id,
            db=options.db,
            argv=argv,
            log_path=options.log_path,
            started=self.started,
            tags=options.tags,
        )
        self.attempt = 1
        self.cancel_signal: int | None = None
        self.signal_events = 0
        self.timed_out = self.killed = False
        self.store_warned = False
        self.last_error_line: str | None = None
        self.note_to: Warn | None = None
        self.channel: Channel | None = None
        self._channel_lines = LineSplitter()
        # Events past the head of the output, held to be stored in time order with the tail.
        self._held: deque[Event] = deque()
        self._dead_fds: set[int] = set()
        self._stderr_mid_line = False

    # -- notes, warnings, events -----------------------------------------------------------------

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self._say(self._warn, message)

    def note(self, message: str) -> None:
        self._say(self.note_to, message)

    def _say(self, to: Warn | None, message: str) -> None:
        """A line of runstore's on stderr, on a line of its own."""
        if to is None:
            return
        if self._stderr_mid_line and self.spool is None:
            with contextlib.suppress(OSError):
                write_all(self.fds[STDERR], b"\n")
            self._stderr_mid_line = False
        to(message)

    def check_store(self) -> None:
        problem = self.recorder.problem
        if problem is not None and not self.store_warned:
            self.store_warned = True
            if self.recorder.logger is None:
                self.warn(f"this run is not recorded: {problem}")
            else:
                self.warn(f"the run is not fully recorded: {problem}")

    def record(self, event: Event) -> None:
        """Store ``event`` in its place in the timeline: at once while output lines are stored
        as they come; past the head, with the tail, in time order, when the command ends."""
        if self.capture.in_head or event.flush:
            self.recorder.inbox.put(event)
            return
        self._held.append(event)
        if len(self._held) > MAX_HELD_EVENTS:
            self.recorder.inbox.put(self._held.popleft())

    # -- signals ---------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal_name(signum)
        forwarded = self.child.relay(signum)
        if self.cancel_signal is None:
            self.cancel_signal = signum
        if self.signal_events < MAX_SIGNAL_EVENTS:
            self.signal_events += 1
            message = f"received {name}" + ("; forwarded to the command" if forwarded else "")
            self.record(
                Event("signal", {"signal": name, "forwarded": forwarded}, "warning", message)
            )

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> ExecResult:
        previous = take_signals(self._on_signal)
        try:
            return self._run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.spool is not None:
                self.spool.close()
            if self.channel is not None:
                self.channel.close()
            self.recorder.close()

    def _run(self) -> ExecResult:
        from runstore.signals import take_held

        self.recorder.start()
        held = take_held()  # a signal that came while runstore started: CMD never starts
        if held and self.cancel_signal is None:
            self.cancel_signal = held
        self._wait_for_the_run_row()
        if self.cancel_signal is not None:
            reason = f"cancelled by {signal_name(self.cancel_signal)} before the command started"
            return self._end(Outcome(128 + self.cancel_signal, "cancelled", reason))
        environment = self._environment()
        while True:
            ended = self._attempt(environment)
            if isinstance(ended, ExecResult):
                return ended
            ending, events, usage = ended
            if not self._retrying(ending):
                return self._end(ending, events=events, usage=usage)
            for message in events:  # this attempt's end, stored before the next one starts
                self.recorder.inbox.put(message)
            cancelled = self._before_the_next_attempt(ending)
            if cancelled is not None:
                return self._end(cancelled)

    def _attempt(
        self, environment: dict[str, str]
    ) -> ExecResult | tuple[Outcome, list[OutputLine | Event], dict[str, Any]]:
        """Run the command once: how it ended, the events that close its attempt and its
        resource use; or, when it cannot be started, the run's result."""
        problem = self.child.spawn(environment)
        if problem is not None:
            code, message = problem[0], redact_text(problem[1])  # argv[0] may hold a secret
            self.record(Event("error", {"message": message}, "error", message))
            return self._end(Outcome(code, "failed", message), spawn_error=message)
        started: dict[str, Any] = {"pid": self.child.pid, "process_group": self.child.own_group}
        if self.options.timeout is not None:
            started["timeout_s"] = self.options.timeout
        if self.options.retries:
            started["attempt"] = self.attempt
        # flushed: before anything the command itself records
        self.record(Event("process_started", started, "info", f"started {self.argv[0]}", True))
        wake_r, wake_w = os.pipe()
        waiter = self.child.wait(wake_w)
        try:
            now = time.monotonic()
            deadlines = Deadlines.starting(now, self.options.timeout, self.options.kill_after)
            channels = {EVENTS: self.channel.fd} if self.channel is not None else None
            pump(self.child.pipes, wake_r, deadlines, self, channels)
        finally:
            if self.child.exited:
                waiter.join()
            os.close(wake_r)
            os.close(wake_w)
        return self._ended()

    def _retrying(self, ending: Outcome) -> bool:
        """Whether a failed attempt is tried again: attempts are left, nobody cancelled the
        run, and its exit code is one of --retry-on (any failure without it)."""
        options = self.options
        if ending.exit_code == 0 or self.attempt > options.retries:
            return False
        if self.cancel_signal is not None:
            return False
        return options.retry_on is None or ending.exit_code in options.retry_on

    def _before_the_next_attempt(self, ending: Outcome) -> Outcome | None:
        """Say why the command runs again, wait --retry-delay, and make ready a fresh attempt;
        the run's outcome instead when a cancel signal comes while waiting."""
        total, delay = self.options.retries + 1, self.options.retry_delay
        why = ending.reason or f"exit code {ending.exit_code}"
        message = f"attempt {self.attempt} of {total} failed ({why})"
        message += f"; trying again in {format_duration(delay)}" if delay else "; trying again"
        data = {"attempt": self.attempt, "exit_code": ending.exit_code, "delay_s": delay}
        self.record(Event("retry", data, "warning", message, flush=True))
        self.note(message)
        deadline = time.monotonic() + delay
        while self.cancel_signal is None and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if self.cancel_signal is not None:
            name, code = signal_name(self.cancel_signal), 128 + self.cancel_signal
            return Outcome(code, "cancelled", f"cancelled by {name} after attempt {self.attempt}")
        self.attempt += 1
        self.child = Child(self.argv)
        self.capture = OutputCapture(self.options.head_lines, self.options.tail_lines)
        self.timed_out = self.killed = False
        self.last_error_line = None
        return None

    def _environment(self) -> dict[str, str]:
        """The command's environment: the recorder's, and the events channel."""
        environment = self.recorder.environment()
        if self.recorder.run_id is not None:
            try:
                self.channel = Channel()
            except OSError as exc:
                self.warn(f"no events channel for the command: {exc.strerror or exc}")
            else:
                environment[env.EVENTS] = self.channel.path
        return environment

    def _wait_for_the_run_row(self) -> None:
        recorder = self.recorder
        deadline = time.monotonic() + self.options.start_wait
        while not recorder.ready.wait(0.05):
            if self.cancel_signal is not None or time.monotonic() >= deadline:
                break
        if recorder.note:
            self.warn(recorder.note)
        if not recorder.ready.is_set() and self.cancel_signal is None:
            self.store_warned = True
            self.warn(
                f"the store did not answer within {format_duration(self.options.start_wait)}; "
                "the command starts before its run is recorded"
            )
        self.check_store()

    # -- what the pump hands over (pump.Handler) -------------------------------------------------

    def due(self, what: str) -> None:
        timeout, kill_after = self.options.timeout, self.options.kill_after
        if what == "sample":
            self.child.sample_rss()
        elif what == "timeout":
            self.timed_out = True
            message = f"timed out after {format_duration(timeout or 0)}; sent SIGTERM"
            data = {"timeout_s": timeout, "signal": "SIGTERM"}
            self.record(Event("timeout", data, "error", message))
            self.child.send(signal.SIGTERM)
            self.note(message)
        elif what == "kill":
            self.killed = True
            message = f"still running {format_duration(kill_after)} after SIGTERM; sent SIGKILL"
            data = {"kill_after_s": kill_after, "signal": "SIGKILL"}
            self.record(Event("timeout", data, "error", message))
            self.child.send(signal.SIGKILL)
            self.note(message)

    def output(self, stream: str, buffer: bytearray, size: int) -> bool:
        """Pass ``buffer[:size]`` through and capture it; False when the pipe should be closed."""
        if stream == EVENTS:
            self._events_read(memoryview(buffer)[:size])
            return True
        keep_open = True
        data = memoryview(buffer)[:size]
        if self.spool is not None:
            self.spool.write(1 if stream == STDOUT else 2, data)
        elif (fd := self.fds[stream]) not in self._dead_fds:
            try:
                write_all(fd, data)
                if stream == STDERR:
                    self._stderr_mid_line = buffer[size - 1] != 10  # b"\n"
            except BrokenPipeError:
                # Our reader left: close the command's pipe too, so it gets SIGPIPE as it would
                # have writing there directly.
                self._dead_fds.add(fd)
                keep_open = False
            except OSError:
                self._dead_fds.add(fd)  # closed or broken output: keep the command going
        data.release()
        for line in self.capture.feed(stream, buffer, size, time.time_ns()):
            self.recorder.inbox.put(OutputLine(line))
            if line.stream == STDERR and line.text.strip():
                self.last_error_line = line.text.strip()
        return keep_open

    def _events_read(self, data: bytes | memoryview, *, last: bool = False) -> None:
        """Events the command sent on its channel, each stored where it came in the output."""
        ts = time.time_ns()
        lines = self._channel_lines.feed(data)
        if last:
            lines += self._channel_lines.rest()
        for raw in lines:
            sent = decode(raw)
            self.record(Event(sent.event_type, sent.data, sent.level, sent.message, ts=ts))

    def round(self) -> None:
        self.check_store()

    # -- the end ---------------------------------------------------------------------------------

    def _ended(self) -> tuple[Outcome, list[OutputLine | Event], dict[str, Any]]:
        child, options = self.child, self.options
        tail = self.capture.tail()
        ending = outcome.classify_exit(
            child.wait_status,
            timeout=options.timeout,
            timed_out=self.timed_out,
            kill_after=options.kill_after,
            killed=self.killed,
            cancel_signal=self.cancel_signal,
            last_error=outcome.last_error_line(tail, self.last_error_line),
        )
        if self.channel is not None:  # what the command sent last
            self._events_read(self.channel.read_all(), last=True)
        usage = outcome.resource_use(child.rusage, child.rss_at_spawn_kb, child.sampled_rss_kb)
        *omitted, exited = outcome.closing_events(self.capture, tail, child.wait_status, usage)
        events = _in_time_order(tail, list(self._held), omitted)
        self._held.clear()
        kind, data, say = exited
        if options.retries:
            data["attempt"] = self.attempt
        events.append(Event(kind, data, "info", say))
        return ending, events, usage

    def _replay_write(self, fd_index: int, data: bytes) -> None:
        with contextlib.suppress(OSError):
            write_all(self.fds[STDOUT if fd_index == 1 else STDERR], data)

    def _replay_note(self, omitted: int) -> None:
        self._replay_write(2, f"\n[runstore: {omitted:,} bytes of output not kept]\n".encode())

    def _end(
        self,
        ending: Outcome,
        *,
        events: list[OutputLine | Event] | None = None,
        usage: dict[str, Any] | None = None,
        spawn_error: str | None = None,
    ) -> ExecResult:
        if self.spool is not None and ending.exit_code != 0:
            self.spool.replay(self._replay_write, self._replay_note)
        exited = self.child.exited_clock
        duration_ms = int(((exited or time.monotonic()) - self.started[1]) * 1000)
        columns = {k: v for k, v in (usage or {}).items() if k != "max_rss_source"}
        extra = {"signal": ending.signal, "duration_ms": duration_ms, **columns}
        if self.options.retries:
            extra["attempts"] = self.attempt
        finish = Finish(events or [], ending.status, ending.exit_code, ending.reason, extra)
        self.recorder.inbox.put(finish)
        unrecorded = self.recorder.wait(self.options.finish_wait)
        for message in unrecorded:
            self.warn(message)
        if unrecorded and not self.recorder.done.is_set():
            self.store_warned = True
        else:
            self.check_store()
        if self.recorder.log_problem is not None:
            self.warn(self.recorder.log_problem)
        return ExecResult(
            exit_code=ending.exit_code,
            status=ending.status,
            run_id=self.recorder.run_id,
            job=self.recorder.job,
            reason=ending.reason,
            signal=ending.signal,
            spawn_error=spawn_error,
            warnings=self.warnings,
        )


def _in_time_order(
    tail: list[Line], held: list[Event], omitted: list[tuple[str, dict[str, Any], str]]
) -> list[OutputLine | Event]:
    """The end of the timeline: the tail's lines and the events held meanwhile, in the order
    they were read; the marker of what output was left out goes before the first tail line."""
    merged: list[OutputLine | Event] = [OutputLine(line) for line in tail]
    merged += held
    merged.sort(key=lambda m: m.line.ts if isinstance(m, OutputLine) else m.ts)  # stable
    lines = [i for i, m in enumerate(merged) if isinstance(m, OutputLine)]
    first = lines[0] if lines else len(merged)
    at = tail[0].ts if tail else time.time_ns()
    markers = [Event(kind, data, "info", say, ts=at) for kind, data, say in omitted]
    return merged[:first] + markers + merged[first:]
