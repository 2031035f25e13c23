"""Errors a user can cause or fix. The CLI prints them as one line: ``Error: <message>``."""

from __future__ import annotations


class RunstoreError(Exception):
    """A problem the user can act on; never shown with a traceback."""

    exit_code = 1


class UsageError(RunstoreError):
    """A bad option value or a request that cannot be honoured as asked."""

    exit_code = 2


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


class StoreError(RunstoreError):
    """The store cannot be opened, read or written."""


class StoreBusy(StoreError):
    """Another process held the store's write lock past every wait: trying later may work."""


class SchemaTooNew(StoreError):
    pass


class InputError(RunstoreError):
    """The job's input cannot be read as text lines."""


def first_line(exc: BaseException) -> str:
    """The first line of what went wrong; for a database error, the driver's own message."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else ""


def describe(exc: BaseException) -> str:
    """An unexpected error in one line: its type, then its first line."""
    return f"{type(exc).__name__}: {first_line(exc)}".rstrip(": ")
