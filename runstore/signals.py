"""SIGTERM, SIGINT and SIGHUP end a run as ``cancelled``: the handler raises ``Cancelled`` in the
main thread, the run's ``with`` block finishes it (events flushed, run_log.json written), and the
process exits 128+N.

A signal that arrives while the main thread is inside a store transaction is held until the
transaction is over (``critical``): interrupting SQLAlchemy mid-commit could leave a connection
holding SQLite's write lock. The held signal is raised as soon as that stretch is over.

A recording command owns its signals from its first instant (``hold_signals``, called before the
slow imports): a signal that arrives while it starts is held, and the run raises it as soon as it
exists (``cancel_on_signals``, ``take_held``), so it is recorded ``cancelled``; once the run is
finished (``exit_on_signal``), a signal ends the process with the run's own exit code, so the
exit code and the store always agree.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from runstore.errors import Cancelled

CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

# depth: nesting of critical stretches; pending: the signal that cancels the run in progress;
# armed: a run is in progress and may be cancelled; held: a signal that came before any run;
# exit_code: the finished run's exit code, which a late signal exits with (-1: none yet).
_state = {"depth": 0, "pending": 0, "armed": False, "held": 0, "exit_code": -1}


def _handler(signum: int, _frame: FrameType | None) -> None:
    if _state["pending"]:
        return  # already cancelling: let the finish complete
    _state["pending"] = signum
    if _state["depth"] == 0 and _state["armed"]:
        _state["armed"] = False
        raise Cancelled(signum)


def _hold(signum: int, _frame: FrameType | None) -> None:
    if _state["exit_code"] >= 0:
        raise SystemExit(_state["exit_code"])  # the run is over: its exit code stands
    _state["held"] = _state["held"] or signum


def hold_signals() -> None:
    """From now on, hold cancel signals for the run this process is about to record (a signal
    that was ignored when we started, as under nohup, stays ignored)."""
    _state.update(held=0, exit_code=-1)
    for sig in CANCEL_SIGNALS:
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, _hold)


def take_held() -> int:
    """The signal held since start-up (0 for none); it is handed over, so taken once."""
    held, _state["held"] = _state["held"], 0
    return held


def exit_on_signal(exit_code: int) -> None:
    """The run is finished with ``exit_code``: a held signal from now on exits with it."""
    _state["exit_code"] = exit_code


@contextmanager
def critical(*, raise_held: bool = True) -> Iterator[None]:
    """A stretch of the main thread that a cancel signal must not interrupt. A signal that
    arrived meanwhile is raised when the outermost stretch ends normally (unless
    ``raise_held`` is false: the run is finishing anyway). Other threads are never
    interrupted: a signal is the main thread's business."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
    if raise_held and _state["depth"] == 0 and _state["pending"] and _state["armed"]:
        _state["armed"] = False
        raise Cancelled(_state["pending"])


@contextmanager
def cancel_on_signals() -> Iterator[None]:
    """Within the block, a cancel signal raises ``Cancelled`` (once; later ones are ignored while
    the run finishes). A signal held since start-up is raised on entering."""
    previous = {sig: signal.signal(sig, _handler) for sig in CANCEL_SIGNALS}
    _state.update(pending=0, armed=True, exit_code=-1)
    try:
        held = take_held()
        if held:
            _state.update(pending=held, armed=False)
            raise Cancelled(held)
        yield
    finally:
        _state.update(armed=False)
        for sig, old in previous.items():
            signal.signal(sig, old)
