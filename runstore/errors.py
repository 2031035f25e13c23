"""Every error runstore raises, and the exit code each means. The CLI prints one as a single line,
``Error: <message>``, and exits with its code; a user never sees a traceback for them.

    RunstoreError                 1   a problem the user can act on
    ├── UsageError                2   a bad option value, or a request that cannot be honoured
    │   └── DuplicateRunId        2   --run-id is taken
    ├── RunNotFound               1   no run matches an id or prefix
    ├── AmbiguousRunId            1   a prefix matches several runs
    ├── InputError                1   the job's input cannot be read as text lines
    ├── OutputError               1   an output cannot be written where it was asked for
    ├── QueryError                1   ad hoc SQL refused, stopped or failed
    └── StoreError                1   the store cannot be opened, read or written
        ├── StoreMissing          1   there is no store where one was to be read
        ├── StoreBusy             1   another process held the write lock past every wait
        ├── SchemaTooNew          1   the store was written by a newer runstore
        └── ForeignDatabase       1   the database holds tables of something else

    Cancelled (a BaseException, like KeyboardInterrupt)   128+N   SIGTERM, SIGINT or SIGHUP

Database drivers raise their own errors; ``driver_problem`` names what one of them means, so
callers decide on a name ("locked", "full") rather than on the driver's wording.
"""

from __future__ import annotations

import signal


class RunstoreError(Exception):
    """A problem the user can act on; never shown with a traceback."""

    exit_code = 1


class UsageError(RunstoreError):
    """A bad option value or a request that cannot be honoured as asked. ``field`` names the
    parameter at fault, as the library calls it; the CLI says it as its option (``--run-id``)."""

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.detail = message


class DuplicateRunId(UsageError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"run id {run_id!r} already exists in the store; choose another --run-id")
        self.run_id = run_id


class RunNotFound(RunstoreError):
    def __init__(self, run_ref: str) -> None:
        super().__init__(f"no run matches {run_ref!r}")
        self.run_ref = run_ref


class AmbiguousRunId(RunstoreError):
    def __init__(self, prefix: str, candidates: list[str]) -> None:
        shown = ", ".join(candidates[:10]) + (" ..." if len(candidates) > 10 else "")
        super().__init__(f"run id prefix {prefix!r} matches {len(candidates)} runs: {shown}")
        self.candidates = candidates


class InputError(RunstoreError):
    """The job's input cannot be read as text lines."""


class OutputError(RunstoreError):
    """An output cannot be written where it was asked for."""


class QueryError(RunstoreError):
    """Ad hoc SQL was refused, stopped by a bound, or failed."""


class StoreError(RunstoreError):
    """The store cannot be opened, read or written."""


class StoreMissing(StoreError):
    """There is no store where one was to be read (only recording commands create one)."""

    def __init__(self, where: str) -> None:
        super().__init__(
            f"no runstore store at {where} (a store is created by the first recorded run; "
            "check --db / RUNSTORE_DB)"
        )
        self.where = where


class StoreBusy(StoreError):
    """Another process held the store's write lock past every wait: trying later may work."""


class SchemaTooNew(StoreError):
    """The store is at a schema revision newer than this runstore knows."""


class ForeignDatabase(StoreError):
    """The database holds tables of something else."""


class StoreWarning(UserWarning):
    """Something about the store a user should know; the CLI prints it as ``Warning: ...``."""


class Cancelled(BaseException):
    """Raised in the main thread when a cancel signal arrives. A BaseException, like
    KeyboardInterrupt, so that ``except Exception`` in job code does not swallow it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"cancelled by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def first_line(exc: BaseException) -> str:
    """The first line of what went wrong; for a database error, the driver's own message."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0].split(" (Background on this error")[0] if lines else ""


def describe(exc: BaseException) -> str:
    """An unexpected error in one line: its type, then its first line."""
    return f"{type(exc).__name__}: {first_line(exc)}".rstrip(": ")


def reason(exc: BaseException) -> str:
    """Why something failed, in one line: our own errors say it themselves; others are
    described with their type."""
    return str(exc) if isinstance(exc, RunstoreError) else describe(exc)


# What a database driver's message means, by the words each driver uses for it.
_DRIVER_PROBLEMS = (
    ("locked", ("database is locked", "database is busy", "database table is locked")),
    ("full", ("database or disk is full", "no space left")),
    ("read-only", ("readonly", "read-only", "read only")),
    ("not a database", ("file is not a database", "not a database")),
    ("interrupted", ("interrupted", "statement timeout", "canceling statement due to user")),
    ("too big", ("too big",)),
    ("refused", ("not authorized", "authorization denied", "permission denied")),
    ("several statements", ("one statement at a time", "multiple commands")),
)


def driver_problem(exc: BaseException) -> str | None:
    """What a database driver's error means: "locked", "full", "read-only", "not a database",
    "interrupted", "too big", "refused", "several statements"; None for anything else."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    for name, phrases in _DRIVER_PROBLEMS:
        if any(phrase in text for phrase in phrases):
            return name
    return None
