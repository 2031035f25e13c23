"""SIGTERM, SIGINT and SIGHUP end a run as ``cancelled``: the handler raises ``Cancelled`` in the
main thread, the run's ``with`` block finishes it (events flushed, run_log.json written), and the
process exits 128+N.

A signal that arrives while the main thread is inside a store transaction is held until the
transaction is over (``critical``): interrupting SQLAlchemy mid-commit could leave a connection
holding SQLite's write lock. The held signal is raised as soon as that stretch is over.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_state = {"depth": 0, "pending": 0, "armed": False}


class Cancelled(BaseException):
    """Raised in the main thread when a cancel signal arrives. A BaseException, like
    KeyboardInterrupt, so that ``except Exception`` in job code does not swallow it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"cancelled by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _handler(signum: int, _frame: FrameType | None) -> None:
    if _state["pending"]:
        return  # already cancelling: let the finish complete
    _state["pending"] = signum
    if _state["depth"] == 0 and _state["armed"]:
        _state["armed"] = False
        raise Cancelled(signum)


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
    the run finishes)."""
    previous = {sig: signal.signal(sig, _handler) for sig in CANCEL_SIGNALS}
    _state.update(pending=0, armed=True)
    try:
        yield
    finally:
        _state.update(armed=False)
        for sig, old in previous.items():
            signal.signal(sig, old)
