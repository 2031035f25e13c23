"""runstore: run history for batch jobs, cron tasks and ETL steps, stored in SQL.

The public API, loaded on first use (the command line imports this package for --version alone):

    RunLogger          record one run: ``with RunLogger(job="etl") as run: run.log_event(...)``
    LoggingHandler     stdlib logging records into the current run
    cancel_on_signals  SIGTERM, SIGINT, SIGHUP end the run in the block as cancelled
    RunstoreError      the base of every error runstore raises (``runstore.errors``)
"""

from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False  # typing itself takes longer to import than `runstore --version` runs

__version__ = "0.1.0"

if TYPE_CHECKING:
    from typing import Any

    from runstore.errors import RunstoreError
    from runstore.record.logger import RunLogger
    from runstore.record.logging_handler import LoggingHandler
    from runstore.signals import cancel_on_signals

__all__ = ["LoggingHandler", "RunLogger", "RunstoreError", "__version__", "cancel_on_signals"]

_PUBLIC = {
    "RunLogger": "runstore.record.logger",
    "LoggingHandler": "runstore.record.logging_handler",
    "cancel_on_signals": "runstore.signals",
    "RunstoreError": "runstore.errors",
}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'runstore' has no attribute {name!r}")
