"""How a wrapped command ended, decided from facts alone: no processes, no store. What the wait
status, a timeout and a cancel signal mean for the exit code, the run's status and its reason;
what resource use to record; the events that close the run's timeline."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from runstore.exec.capture import STDERR, Line, OutputCapture
from runstore.humanize import format_duration, plural

EXIT_TIMEOUT = 124
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


@dataclass(frozen=True)
class Outcome:
    """What runstore exits with, and what the run records."""

    exit_code: int
    status: str  # completed | failed | cancelled
    reason: str | None  # the run's error_summary
    signal: int | None = None  # the signal that ended the command


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def classify_exit(
    wait_status: int | None,
    *,
    timeout: float | None = None,
    timed_out: bool = False,
    kill_after: float = 0.0,
    killed: bool = False,
    cancel_signal: int | None = None,
    last_error: str | None = None,
) -> Outcome:
    """The outcome of a command whose ``wait_status`` (as ``os.wait4`` gives it; None when it is
    unknown) is known, given whether runstore timed it out (and killed it), and the signal that
    asked runstore to cancel it. ``last_error`` is the last line it wrote to stderr."""
    if wait_status is None:
        reason = "the command's exit status is unknown (SIGCHLD was set to be ignored)"
        return Outcome(1, "failed", reason)
    sig = os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None
    child_code = 128 + sig if sig is not None else os.WEXITSTATUS(wait_status)
    if timed_out:
        reason = f"timed out after {format_duration(timeout or 0)}"
        if killed:
            reason += f"; killed with SIGKILL {format_duration(kill_after)} later"
        return Outcome(EXIT_TIMEOUT, "failed", reason, sig)
    if cancel_signal is not None and child_code != 0:
        reason = f"cancelled by {signal_name(cancel_signal)}"
        if sig is not None and sig != cancel_signal:
            reason += f"; the command died of {signal_name(sig)}"
        return Outcome(child_code, "cancelled", reason, sig)
    if sig is not None:
        return Outcome(child_code, "failed", f"killed by {signal_name(sig)}", sig)
    if child_code != 0:
        reason = f"exit code {child_code}" + (f": {last_error}" if last_error else "")
        return Outcome(child_code, "failed", reason)
    return Outcome(0, "completed", None)


def worth_retrying(
    ending: Outcome,
    *,
    attempt: int,
    retries: int,
    retry_on: tuple[int, ...] | None,
    cancelled: bool,
) -> bool:
    """Whether attempt number ``attempt`` runs again: it failed, attempts are left (``retries``
    after the first), nobody cancelled the run, and its exit code is one of ``retry_on`` (any
    failure when that is None)."""
    if ending.exit_code == 0 or attempt > retries or cancelled:
        return False
    return retry_on is None or ending.exit_code in retry_on


def retry_notice(
    ending: Outcome, attempt: int, attempts: int, delay: float
) -> tuple[str, dict[str, Any]]:
    """The line and data of the ``retry`` event that says why the command runs again."""
    why = ending.reason or f"exit code {ending.exit_code}"
    message = f"attempt {attempt} of {attempts} failed ({why})"
    message += f"; trying again in {format_duration(delay)}" if delay else "; trying again"
    return message, {"attempt": attempt, "exit_code": ending.exit_code, "delay_s": delay}


def last_error_line(tail: list[Line], seen: str | None) -> str | None:
    """The last non-blank stderr line of the output's tail, else the last one ``seen``."""
    return next(
        (
            line.text.strip()
            for line in reversed(tail)
            if line.stream == STDERR and line.text.strip()
        ),
        seen,
    )


def resource_use(rusage: Any, rss_at_spawn_kb: int, sampled_rss_kb: int | None) -> dict[str, Any]:
    """Resource use of the command (and the children it waited for), from wait4, and where its
    peak memory figure comes from (``max_rss_source``).

    Linux counts in a child's ru_maxrss the memory of the process that started it (the mm it
    left at exec). Above runstore's own peak the kernel's figure is the command's (``kernel``);
    below it, the peak sampled from /proc while the command ran is used (``sampled``: the
    largest process of its tree, sampled first as it starts, so a spike between samples can be
    missed); a command gone before the first sample keeps the kernel's figure, which it cannot
    have exceeded (``upper_bound``).
    """
    if rusage is None:
        return {}
    rss = int(rusage.ru_maxrss)
    if sys.platform == "darwin":
        rss //= 1024  # bytes there, KiB on Linux
    source = "kernel"
    if rss <= rss_at_spawn_kb:
        if sampled_rss_kb is not None and sampled_rss_kb < rss_at_spawn_kb:
            rss, source = sampled_rss_kb, "sampled"
        else:
            source = "upper_bound"
    return {
        "max_rss_kb": rss,
        "max_rss_source": source,
        "cpu_user_ms": round(rusage.ru_utime * 1000),
        "cpu_system_ms": round(rusage.ru_stime * 1000),
    }


def omitted_output(capture: OutputCapture, tail: list[Line]) -> dict[str, Any] | None:
    """What the ``output_omitted`` event says, when output was left out of the store."""
    totals = capture.totals()
    lines_total = totals["stdout_lines"] + totals["stderr_lines"]
    bytes_total = totals["stdout_bytes"] + totals["stderr_bytes"]
    lines_omitted = lines_total - capture.head_count - len(tail)
    bytes_omitted = bytes_total - capture.stored_bytes
    if lines_omitted <= 0 and bytes_omitted <= 0:
        return None
    return {
        "lines_omitted": lines_omitted,
        "bytes_omitted": bytes_omitted,
        "lines_total": lines_total,
        "bytes_total": bytes_total,
        "head_lines": capture.head_count,
        "tail_lines": len(tail),
        **totals,
    }


def closing_events(
    capture: OutputCapture, tail: list[Line], wait_status: int | None, usage: dict[str, Any]
) -> list[tuple[str, dict[str, Any], str]]:
    """The events that close an exec run's timeline, as (type, data, message): what output was
    left out of the store (if any), then how the process exited. The tail's lines go between."""
    closing: list[tuple[str, dict[str, Any], str]] = []
    omitted = omitted_output(capture, tail)
    if omitted is not None:
        message = (
            f"{plural(omitted['lines_omitted'], 'line')} "
            f"({plural(omitted['bytes_omitted'], 'byte')}) of output not stored; kept the "
            f"first {omitted['head_lines']:,} and the last {len(tail):,}"
        )
        closing.append(("output_omitted", omitted, message))
    exited = exited_data(wait_status, usage, capture.totals())
    said = (
        f"killed by {exited['signal']}" if exited["signal"] else f"exit code {exited['exit_code']}"
    )
    closing.append(("process_exited", exited, said))
    return closing


def exited_data(wait_status: int | None, usage: dict[str, Any], totals: dict[str, int]) -> dict:
    """What the ``process_exited`` event says."""
    if wait_status is None:
        return {"exit_code": None, "signal": None, **usage, **totals}
    sig = os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None
    return {
        "exit_code": None if sig is not None else os.WEXITSTATUS(wait_status),
        "signal": signal_name(sig) if sig is not None else None,
        **usage,
        **totals,
    }
