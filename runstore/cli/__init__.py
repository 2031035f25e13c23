"""runstore's command line: ``runstore COMMAND --help`` for each command."""

from __future__ import annotations

import os
import sys

from runstore.cli import db, exec, maintain, query, reap, run  # noqa: F401 - each module registers its commands
from runstore.cli._app import app, error

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``runstore`` command."""
    try:
        app()
    except BrokenPipeError:
        # `runstore history | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
