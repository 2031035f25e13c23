"""The pure half of ``runstore exec``: how a wait status, a timeout and a cancel signal decide
the exit code, status and reason; and the pump's clock. No processes, no store."""

from __future__ import annotations

import itertools
import signal
from types import SimpleNamespace

import pytest

from runstore.exec.capture import Line
from runstore.exec.outcome import (
    EXIT_TIMEOUT,
    Outcome,
    classify_exit,
    exited_data,
    last_error_line,
    resource_use,
    retry_notice,
    worth_retrying,
)
from runstore.exec.pump import DRAIN_MAX_S, DRAIN_QUIET_S, SAMPLE_FIRST_S, Deadlines


def exited(code: int) -> int:
    return code << 8  # a wait status, as os.wait4 gives it


def killed(sig: int) -> int:
    return int(sig)


@pytest.mark.parametrize(
    ("status", "facts", "expected"),
    [
        (exited(0), {}, Outcome(0, "completed", None)),
        (exited(3), {"last_error": "disk full"}, Outcome(3, "failed", "exit code 3: disk full")),
        (exited(3), {}, Outcome(3, "failed", "exit code 3")),
        (killed(signal.SIGKILL), {}, Outcome(137, "failed", "killed by SIGKILL", 9)),
        (killed(signal.SIGTERM), {"timeout": 2.0, "timed_out": True},
         Outcome(EXIT_TIMEOUT, "failed", "timed out after 2s", 15)),
        (killed(signal.SIGKILL), {"timeout": 2.0, "timed_out": True, "killed": True,
                                  "kill_after": 5.0},
         Outcome(EXIT_TIMEOUT, "failed", "timed out after 2s; killed with SIGKILL 5s later", 9)),
        (exited(0), {"timeout": 2.0, "timed_out": True},  # stopped cleanly on SIGTERM: still 124
         Outcome(EXIT_TIMEOUT, "failed", "timed out after 2s")),
        (killed(signal.SIGTERM), {"cancel_signal": signal.SIGTERM},
         Outcome(143, "cancelled", "cancelled by SIGTERM", 15)),
        (exited(1), {"cancel_signal": signal.SIGINT},
         Outcome(1, "cancelled", "cancelled by SIGINT")),
        (killed(signal.SIGKILL), {"cancel_signal": signal.SIGTERM},
         Outcome(137, "cancelled", "cancelled by SIGTERM; the command died of SIGKILL", 9)),
        (exited(0), {"cancel_signal": signal.SIGHUP}, Outcome(0, "completed", None)),
        (None, {}, Outcome(1, "failed",
                           "the command's exit status is unknown (SIGCHLD was set to be ignored)")),
    ],
    ids=["ok", "exit 3 with its error", "exit 3", "killed", "timeout", "timeout and kill",
         "timeout, clean exit", "cancelled", "cancelled, exit 1", "cancelled, other signal",
         "signal, then success", "unknown"],
)  # fmt: skip
def test_classify_exit(status, facts, expected):
    assert classify_exit(status, **facts) == expected


def test_the_last_error_line_comes_from_the_tail_else_from_what_was_seen():
    tail = [
        Line("stderr", "first"),
        Line("stdout", "out"),
        Line("stderr", "  "),
        Line("stdout", "x"),
    ]
    assert last_error_line(tail, "seen earlier") == "first"
    assert last_error_line([Line("stdout", "only out")], "seen earlier") == "seen earlier"


def test_resource_use_trusts_the_kernel_only_above_runstores_own_peak():
    usage = SimpleNamespace(ru_maxrss=90_000, ru_utime=1.2345, ru_stime=0.5)
    assert resource_use(usage, 40_000, 12_000) == {
        "max_rss_kb": 90_000, "max_rss_source": "kernel", "cpu_user_ms": 1234,
        "cpu_system_ms": 500,
    }  # fmt: skip
    below = resource_use(usage, 95_000, 12_000)
    assert below["max_rss_kb"] == 12_000 and below["max_rss_source"] == "sampled"
    unseen = resource_use(usage, 95_000, None)  # gone before the first sample: still a figure
    assert unseen["max_rss_kb"] == 90_000 and unseen["max_rss_source"] == "upper_bound"
    assert resource_use(None, 0, None) == {}


def test_exited_data_names_the_signal_or_the_code():
    assert exited_data(killed(signal.SIGTERM), {}, {})["signal"] == "SIGTERM"
    assert exited_data(exited(4), {}, {})["exit_code"] == 4
    assert exited_data(None, {}, {}) == {"exit_code": None, "signal": None}


# -- the pump's clock -----------------------------------------------------------------------------


def test_deadlines_time_out_then_kill_then_stop_after_the_exit():
    clock = Deadlines.starting(100.0, timeout=2.0, kill_after=5.0)
    assert clock.due(100.0) == []  # nothing yet
    assert clock.next_wait(100.0) == pytest.approx(SAMPLE_FIRST_S)  # the first memory sample
    assert "timeout" in clock.due(102.0)
    assert "timeout" not in clock.due(102.5)  # said once
    assert "kill" in clock.due(107.0)
    clock.exited_at = clock.last_data = 108.0
    assert clock.due(200.0) == []  # nothing is due for a command that has ended
    assert not clock.drained(108.1, open_pipes=1)
    assert clock.drained(108.0 + DRAIN_QUIET_S, open_pipes=1)  # quiet long enough
    assert clock.drained(108.1, open_pipes=0)  # every pipe closed
    clock.last_data = 108.0 + DRAIN_MAX_S
    assert clock.drained(108.0 + DRAIN_MAX_S, open_pipes=1)  # chatty, but long enough


def test_memory_samples_space_out():
    clock = Deadlines.starting(0.0, timeout=None, kill_after=5.0)
    moments = []
    now = 0.0
    for _ in range(12):
        now += clock.next_wait(now)
        if clock.due(now) == ["sample"]:
            moments.append(round(now, 3))
    gaps = [round(later - earlier, 6) for earlier, later in itertools.pairwise(moments)]
    assert gaps == sorted(gaps) and gaps[-1] == 2.0  # doubling, up to every 2 s


@pytest.mark.parametrize(
    ("code", "attempt", "retry_on", "cancelled", "again"),
    [
        (0, 1, None, False, False),  # it worked
        (1, 1, None, False, True),
        (1, 3, None, False, True),  # the third attempt of four
        (1, 4, None, False, False),  # no attempt left
        (1, 1, None, True, False),  # somebody cancelled the run
        (75, 1, (75,), False, True),
        (1, 1, (75,), False, False),  # not a code worth a retry
        (124, 1, None, False, True),  # a timeout is a failure like any other
    ],
)
def test_a_failed_attempt_runs_again_while_attempts_are_left(
    code, attempt, retry_on, cancelled, again
):
    ending = Outcome(code, "completed" if code == 0 else "failed", None)
    decided = worth_retrying(
        ending, attempt=attempt, retries=3, retry_on=retry_on, cancelled=cancelled
    )
    assert decided is again


def test_the_retry_notice_says_which_attempt_failed_why_and_when_the_next_starts():
    message, data = retry_notice(Outcome(3, "failed", "exit code 3: disk full"), 1, 3, 10.0)
    assert message == "attempt 1 of 3 failed (exit code 3: disk full); trying again in 10s"
    assert data == {"attempt": 1, "exit_code": 3, "delay_s": 10.0}
    message, _ = retry_notice(Outcome(1, "failed", None), 2, 3, 0)
    assert message == "attempt 2 of 3 failed (exit code 1); trying again"
