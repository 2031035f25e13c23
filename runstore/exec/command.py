"""``runstore exec``: run any command as a recorded run, invisibly to the command.

The run row is written before the command starts. The command's stdout and stderr pass through
to ours unchanged, chunk by chunk as it writes them; its lines are stored as ``output`` events,
bounded (see ``capture``). Its exit code is ours: 128+N when it dies of signal N, 124 on
``--timeout``, 126 when it cannot be executed, 127 when it is not found (``outcome``).

Signals: INT, TERM, HUP (and QUIT) sent to runstore are passed on to the command (``child``).

Recording never breaks the job: every store write happens on a recorder thread (``recorder``), so
a locked, full or read-only store cannot stall the output or change the exit code; what is not
recorded is said in a warning.

The pieces: ``child`` (the process), ``pump`` (the loop that moves its output), ``passthrough``
(the output on its way to ours), ``outcome`` (pure decisions), ``recorder`` (the store),
``capture`` (bounded output). This module runs them: an ``Execution`` is the run, an ``Attempt``
one start of the command (more than one with ``--retries``).
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import Any

from runstore import env
from runstore.channel import Channel, LineSplitter, decode
from runstore.errors import UsageError
from runstore.exec import HEAD_LINES, KILL_AFTER_S, MAX_RETRIES, RETRY_DELAY_S, TAIL_LINES, outcome
from runstore.exec.capture import STDERR, Line, OutputCapture
from runstore.exec.child import Child, take_signals
from runstore.exec.naming import default_job_name
from runstore.exec.outcome import Outcome, signal_name
from runstore.exec.passthrough import Passthrough
from runstore.exec.pump import Deadlines, pump
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
    """One run of a command, across its attempts: its signals, its warnings, its end."""

    def __init__(
        self, argv: list[str], options: ExecOptions, warn: Warn | None, out: int, err: int
    ) -> None:
        self.argv = argv
        self.options = options
        self.passthrough = Passthrough(out, err, quiet=options.quiet)
        self._warn = warn
        self.warnings: list[str] = []
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
        self.attempt = Attempt(self, 1)
        self.cancel_signal: int | None = None
        self.signal_events = 0
        self.store_warned = False
        self.note_to: Warn | None = None
        self.channel: Channel | None = None
        self._channel_lines = LineSplitter()
        # Events past the head of the output, held to be stored in time order with the tail.
        self._held: deque[Event] = deque()

    # -- notes, warnings, events -----------------------------------------------------------------

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self._say(self._warn, message)

    def note(self, message: str) -> None:
        self._say(self.note_to, message)

    def _say(self, to: Warn | None, message: str) -> None:
        """A line of runstore's on stderr, on a line of its own."""
        if to is not None:
            self.passthrough.end_line()
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
        if self.attempt.capture.in_head or event.flush:
            self.recorder.inbox.put(event)
            return
        self._held.append(event)
        if len(self._held) > MAX_HELD_EVENTS:
            self.recorder.inbox.put(self._held.popleft())

    def events_read(self, data: bytes | memoryview, *, last: bool = False) -> None:
        """Events the command sent on its channel, each stored where it came in the output."""
        ts = time.time_ns()
        lines = self._channel_lines.feed(data)
        if last:
            lines += self._channel_lines.rest()
        for raw in lines:
            sent = decode(raw)
            self.record(Event(sent.event_type, sent.data, sent.level, sent.message, ts=ts))

    def held_events(self) -> list[Event]:
        """The events held back for the tail, handed over once."""
        held = list(self._held)
        self._held.clear()
        return held

    # -- signals ---------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal_name(signum)
        forwarded = self.attempt.child.relay(signum)
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
            self.passthrough.close()
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
            ended = self.attempt.run(environment)
            if isinstance(ended, Outcome):  # it could not be started
                return self._end(ended, spawn_error=ended.reason)
            ending, events, usage = ended
            options = self.options
            if not outcome.worth_retrying(
                ending,
                attempt=self.attempt.number,
                retries=options.retries,
                retry_on=options.retry_on,
                cancelled=self.cancel_signal is not None,
            ):
                return self._end(ending, events=events, usage=usage)
            for message in events:  # this attempt's end, stored before the next one starts
                self.recorder.inbox.put(message)
            cancelled = self._before_the_next_attempt(ending)
            if cancelled is not None:
                return self._end(cancelled)

    def _before_the_next_attempt(self, ending: Outcome) -> Outcome | None:
        """Say why the command runs again, wait --retry-delay, and make ready a fresh attempt;
        the run's outcome instead when a cancel signal comes while waiting."""
        number, delay = self.attempt.number, self.options.retry_delay
        message, data = outcome.retry_notice(ending, number, self.options.retries + 1, delay)
        self.record(Event("retry", data, "warning", message, flush=True))
        self.note(message)
        deadline = time.monotonic() + delay
        while self.cancel_signal is None and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if self.cancel_signal is not None:
            name, code = signal_name(self.cancel_signal), 128 + self.cancel_signal
            return Outcome(code, "cancelled", f"cancelled by {name} after attempt {number}")
        self.attempt = Attempt(self, number + 1)
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

    # -- the end ---------------------------------------------------------------------------------

    def _end(
        self,
        ending: Outcome,
        *,
        events: list[OutputLine | Event] | None = None,
        usage: dict[str, Any] | None = None,
        spawn_error: str | None = None,
    ) -> ExecResult:
        if ending.exit_code != 0:
            self.passthrough.show_spooled()
        now = time.monotonic()
        exited = self.attempt.child.exited_clock or now
        duration_ms = int((exited - self.started[1]) * 1000)
        finished_at = datetime.now(timezone.utc) - timedelta(seconds=now - exited)
        columns = {k: v for k, v in (usage or {}).items() if k != "max_rss_source"}
        extra = {"signal": ending.signal, "duration_ms": duration_ms, "finished_at": finished_at,
                 **columns}  # fmt: skip
        if self.options.retries:
            extra["attempts"] = self.attempt.number
        finish = Finish(events or [], ending.status, ending.exit_code, ending.reason, extra)
        self.recorder.inbox.put(finish)
        unrecorded = self.recorder.wait(self.options.finish_wait, self.warn)
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


Ended = tuple[Outcome, list[OutputLine | Event], dict[str, Any]]


class Attempt:
    """One start of the command: its process, its clock, its captured output. What the pump
    hands over (``pump.Handler``) comes here."""

    def __init__(self, execution: Execution, number: int) -> None:
        self.execution = execution
        self.options = options = execution.options
        self.number = number
        self.child = Child(execution.argv)
        self.capture = OutputCapture(options.head_lines, options.tail_lines)
        self.timed_out = self.killed = False
        self.last_error_line: str | None = None

    def run(self, environment: dict[str, str]) -> Outcome | Ended:
        """Run the command once: how it ended, the events that close the attempt and its
        resource use; or, when it cannot be started, the run's outcome."""
        execution, child = self.execution, self.child
        problem = child.spawn(environment)
        if problem is not None:
            code, message = problem[0], redact_text(problem[1])  # argv[0] may hold a secret
            execution.record(Event("error", {"message": message}, "error", message))
            return Outcome(code, "failed", message)
        started: dict[str, Any] = {"pid": child.pid, "process_group": child.own_group}
        if self.options.timeout is not None:
            started["timeout_s"] = self.options.timeout
        if self.options.retries:
            started["attempt"] = self.number
        # flushed: before anything the command itself records
        argv0 = execution.argv[0]
        execution.record(Event("process_started", started, "info", f"started {argv0}", True))
        wake_r, wake_w = os.pipe()
        waiter = child.wait(wake_w)
        try:
            now = time.monotonic()
            deadlines = Deadlines.starting(now, self.options.timeout, self.options.kill_after)
            channel = execution.channel
            channels = {EVENTS: channel.fd} if channel is not None else None
            pump(child.pipes, wake_r, deadlines, self, channels)
        finally:
            if child.exited:
                waiter.join()
            os.close(wake_r)
            os.close(wake_w)
        return self._ended()

    # -- what the pump hands over (pump.Handler) -------------------------------------------------

    def due(self, what: str) -> None:
        timeout, kill_after = self.options.timeout, self.options.kill_after
        if what == "sample":
            self.child.sample_rss()
            return
        if what == "timeout":
            self.timed_out = True
            message = f"timed out after {format_duration(timeout or 0)}; sent SIGTERM"
            data: dict[str, Any] = {"timeout_s": timeout, "signal": "SIGTERM"}
            sig = signal.SIGTERM
        elif what == "kill":
            self.killed = True
            message = f"still running {format_duration(kill_after)} after SIGTERM; sent SIGKILL"
            data = {"kill_after_s": kill_after, "signal": "SIGKILL"}
            sig = signal.SIGKILL
        else:
            return
        self.execution.record(Event("timeout", data, "error", message))
        self.child.send(sig)
        self.execution.note(message)

    def output(self, stream: str, buffer: bytearray, size: int) -> bool:
        """Pass ``buffer[:size]`` through and capture it; False when the pipe should be closed."""
        execution = self.execution
        if stream == EVENTS:
            execution.events_read(memoryview(buffer)[:size])
            return True
        data = memoryview(buffer)[:size]
        keep_open = execution.passthrough.write(stream, data)
        data.release()
        for line in self.capture.feed(stream, buffer, size, time.time_ns()):
            execution.recorder.inbox.put(OutputLine(line))
            if line.stream == STDERR and line.text.strip():
                self.last_error_line = line.text.strip()
        return keep_open

    def round(self) -> None:
        self.execution.check_store()

    # -- the end ---------------------------------------------------------------------------------

    def _ended(self) -> Ended:
        child, options, execution = self.child, self.options, self.execution
        tail = self.capture.tail()
        ending = outcome.classify_exit(
            child.wait_status,
            timeout=options.timeout,
            timed_out=self.timed_out,
            kill_after=options.kill_after,
            killed=self.killed,
            cancel_signal=execution.cancel_signal,
            last_error=outcome.last_error_line(tail, self.last_error_line),
        )
        if execution.channel is not None:  # what the command sent last
            execution.events_read(execution.channel.read_all(), last=True)
        usage = outcome.resource_use(child.rusage, child.rss_at_spawn_kb, child.sampled_rss_kb)
        *omitted, exited = outcome.closing_events(self.capture, tail, child.wait_status, usage)
        events = _in_time_order(tail, execution.held_events(), omitted)
        kind, data, say = exited
        if options.retries:
            data["attempt"] = self.number
        events.append(Event(kind, data, "info", say))
        return ending, events, usage


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
