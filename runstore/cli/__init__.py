"""runstore's command line: ``runstore COMMAND --help`` for each command."""

from __future__ import annotations

import os
import sys

from runstore.cli import db, run  # noqa: F401 - each module registers its commands
from runstore.cli._app import app, error

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: every failure is one ``Error:`` line and an exit code, never a traceback."""
    from runstore.errors import RunstoreError

    try:
        app()
    except RunstoreError as exc:
        error(str(exc))
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # `runstore history | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("RUNSTORE_DEBUG"):
            raise
        error(f"{_describe(exc)} (set RUNSTORE_DEBUG=1 to see the traceback)")
        sys.exit(1)


def _describe(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
