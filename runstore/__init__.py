"""runstore: run history for batch jobs, cron tasks and ETL steps, stored in SQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from runstore.record.logger import RunLogger
    from runstore.record.logging_handler import LoggingHandler
    from runstore.store.store import Store

__all__ = ["LoggingHandler", "RunLogger", "Store", "__version__"]


def __getattr__(name: str) -> Any:
    # The CLI imports this package for --version; the database machinery loads on first use.
    if name == "RunLogger":
        from runstore.record.logger import RunLogger

        return RunLogger
    if name == "LoggingHandler":
        from runstore.record.logging_handler import LoggingHandler

        return LoggingHandler
    if name == "Store":
        from runstore.store.store import Store

        return Store
    raise AttributeError(f"module 'runstore' has no attribute {name!r}")
