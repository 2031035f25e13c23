"""The Typer application and what every command shares: the --db option and error reporting.

Command modules import only Typer and the standard library at the top; the database machinery
loads inside the command that needs it, so ``--help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from runstore import __version__

app = typer.Typer(
    name="runstore",
    help="Run history for batch jobs, cron tasks and ETL steps, stored in SQL.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
db_app = typer.Typer(help="Inspect and maintain the store itself.", no_args_is_help=True)
app.add_typer(db_app, name="db")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Store: a file path or SQLAlchemy URL. Default: $RUNSTORE_DB, else the per-user "
        "data directory (see `runstore db path`).",
        show_default=False,
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    """Report a user-facing failure: one line on stderr, a non-zero exit."""
    error(message)
    raise typer.Exit(code)


def error(message: str) -> None:
    print(f"Error: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr, flush=True)


def _version(value: bool) -> None:
    if value:
        print(f"runstore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Record every run of your jobs, and ask what ran, what failed and how long it took."""
