"""``LoggingHandler``: stdlib logging records become events of the current run.

    import logging, runstore
    logging.getLogger().addHandler(runstore.LoggingHandler())

Under ``runstore exec`` the handler attaches to the run named by RUNSTORE_RUN_ID (in the store
named by RUNSTORE_DB) on the first record; outside a run it does nothing, so the same code runs
by hand unchanged. A ``RunLogger`` can be given instead, for code that owns its run.

Each record becomes one event: level DEBUG -> ``debug``, INFO -> ``info``, WARNING ->
``warning``, ERROR and CRITICAL -> ``error``; type ``warning``/``error`` for those levels, else
``log`` (``extra={"event_type": ...}`` chooses another); the message in ``message`` and in
``data``, with the logger's name, the ``extra=`` fields and any exception's traceback.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from runstore import env
from runstore.channel import default_event_type

if TYPE_CHECKING:
    from runstore.record.logger import AttachedRun, RunLogger

# Records the store's own machinery logs while writing: recording them would feed back.
IGNORED_LOGGERS = ("sqlalchemy", "alembic")
_STANDARD_ATTRIBUTES = frozenset(
    (*logging.makeLogRecord({}).__dict__, "message", "asctime", "taskName")
)


def level_name(levelno: int) -> str:
    """A logging level as an event level."""
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


class LoggingHandler(logging.Handler):
    """Turn logging records into events of a run: ``run``, or the one RUNSTORE_RUN_ID names."""

    def __init__(
        self,
        run: RunLogger | None = None,
        *,
        run_id: str | None = None,
        db: str | os.PathLike[str] | None = None,
        level: int = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        self._run: RunLogger | AttachedRun | None = run
        self._owns_run = False
        self._run_id = run_id
        self._db = db
        self._disabled = False
        self._guard = threading.local()

    @property
    def run(self) -> RunLogger | AttachedRun | None:
        """The run records go to; None outside a run (or after the store failed)."""
        if self._run is None and not self._disabled:
            self._attach()
        return self._run

    def _attach(self) -> None:
        if not (self._run_id or os.environ.get(env.RUN_ID)):
            self._disabled = True  # not inside a run: nothing to record into
            return
        from runstore.record.logger import RunLogger

        try:
            self._run = RunLogger.attach(self._run_id, db=self._db)
            self._owns_run = True
        except Exception as exc:
            self._give_up(exc)

    def emit(self, record: logging.LogRecord) -> None:
        if self._disabled or record.name.split(".", 1)[0] in IGNORED_LOGGERS:
            return
        if getattr(self._guard, "active", False):
            return  # a record logged while this handler records: do not recurse
        self._guard.active = True
        try:
            run = self.run
            if run is None or run.finished:
                return
            level = level_name(record.levelno)
            message = record.getMessage()
            data: dict[str, Any] = {"message": message, "logger": record.name}
            event_type = default_event_type(level)
            for key, value in record.__dict__.items():
                if key in _STANDARD_ATTRIBUTES:
                    continue
                if key == "event_type" and isinstance(value, str) and value:
                    event_type = value[:64]
                else:
                    data[key] = value
            if record.exc_info and record.exc_info[0] is not None:
                data["exception"] = logging.Formatter().formatException(record.exc_info)
            if record.stack_info:
                data["stack"] = record.stack_info
            run.log_event(event_type, data, level=level, message=message)
        except Exception as exc:  # recording must never break the program that logs
            self._give_up(exc)
        finally:
            self._guard.active = False

    def _give_up(self, exc: BaseException) -> None:
        """Stop recording after the first failure, with one warning (a library does not print:
        the program decides how warnings show)."""
        self._disabled = True
        import warnings

        from runstore.errors import StoreWarning, reason

        warnings.warn(
            f"log records are no longer recorded: {reason(exc)}", StoreWarning, stacklevel=2
        )

    def flush(self) -> None:
        run = self._run
        if run is not None and not run.finished:
            try:
                run.flush()
            except Exception as exc:
                self._give_up(exc)

    def close(self) -> None:
        """Flush; a run this handler attached to itself is let go (its owner finishes it)."""
        try:
            if self._run is not None and self._owns_run:
                self._run.finish()
            else:
                self.flush()
        except Exception as exc:
            self._give_up(exc)
        finally:
            super().close()
