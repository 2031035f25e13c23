"""The Typer application and what every command shares: the --db option and error reporting.

Command modules import only Typer and the standard library at the top; the database machinery
loads inside the command that needs it, so ``--help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from runstore import __version__, env
from runstore.cli._params import plain_values
from runstore.errors import RunstoreError, UsageError, describe
from runstore.history import STALE_AFTER_S
from runstore.humanize import format_duration

if TYPE_CHECKING:
    from runstore.store.store import Store


class _Group(TyperGroup):
    """Turns every failure inside a command into one ``Error:`` line and an exit code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain_values(self)  # parse option values without loading pydantic

    def main(  # type: ignore[override]
        self, args: Any = None, prog_name: Any = None, standalone_mode: bool = True, **extra: Any
    ) -> Any:
        """Typer shows a usage error as a boxed panel; here it is one ``Error:`` line too."""
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, NoSuchOption

        self.raw_args = list(args) if args is not None else sys.argv[1:]
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
        except NoArgsIsHelpError:
            sys.exit(0)  # `runstore`, `runstore db`: the help is shown; nothing went wrong
        except ClickException as exc:
            hint = ""
            command = getattr(getattr(exc, "ctx", None), "command_path", None)
            if command and exc.exit_code == 2:
                hint = f" (see `{command} --help`)"
            message = exc.format_message().rstrip(".")
            if isinstance(exc, NoSuchOption):
                close = _close_to(exc.option_name, exc.possibilities or ())
                message = f"No such option: {exc.option_name}" + (
                    f". Did you mean {' or '.join(close)}?" if close else ""
                )
            error(message + hint)
            if exc.exit_code == 2:
                refused(self.raw_args, message)
            sys.exit(exc.exit_code)
        except typer.Abort:
            error("aborted")
            sys.exit(1)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        import warnings

        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except RunstoreError as exc:
            message = _as_the_user_typed_it(ctx, exc)
            error(message)
            if isinstance(exc, UsageError):
                refused(getattr(self, "raw_args", sys.argv[1:]), message)
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:
            reader_left()
            raise typer.Exit(0) from None
        except Exception as exc:
            if type(exc).__module__.startswith("typer") or os.environ.get(env.DEBUG):
                raise  # Typer's own exits and usage errors, or a developer asking for details
            error(f"{describe(exc)} (set RUNSTORE_DEBUG=1 to see the traceback)")
            raise typer.Exit(1) from None


def _close_to(name: str, candidates: Any) -> list[str]:
    """Did-you-mean suggestions only when they are close: `--limt` suggests `--limit`;
    `--bogus` suggests nothing (click's own cutoff offered `--log`)."""
    import difflib

    return difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.8)


def _as_the_user_typed_it(ctx: Any, exc: RunstoreError) -> str:
    """An error about a library parameter (``UsageError.field``) names the command's option."""
    command = ctx.command.get_command(ctx, ctx.invoked_subcommand or "")
    if not isinstance(exc, UsageError) or exc.field is None or command is None:
        return str(exc)
    for param in command.params:
        if param.name == exc.field and param.opts:
            argument = param.param_type_name == "argument"  # JOB, as --help shows it
            return f"{param.name.upper() if argument else max(param.opts, key=len)}: {exc.detail}"
    return str(exc)


# What a command does when its options are refused (a usage error, exit 2), by command name:
# `exec` records the run it did not start, so a typo in a crontab line is seen.
ON_REFUSAL: dict[str, Callable[[list[str], str], None]] = {}


def refused(args: list[str], message: str) -> None:
    from runstore.cli import command_word

    hook = ON_REFUSAL.get(command_word(args) or "")
    if hook is not None:
        hook(args, message)


def _show_warning(message: Warning | str, *_args: Any, **_kwargs: Any) -> None:
    warn(str(message))


app = typer.Typer(
    cls=_Group,
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

STALE_AFTER = format_duration(STALE_AFTER_S)
StaleAfterOption = Annotated[
    str,
    typer.Option(
        "--stale-after",
        help="Runs of other hosts count as gone after this long without a heartbeat.",
    ),
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Store: a file path or SQLAlchemy URL. Default: $RUNSTORE_DB, else the per-user "
        "data directory (see `runstore db path`).",
        show_default=False,
    ),
]


TagOption = Annotated[
    list[str] | None,
    typer.Option(
        "--tag",
        metavar="KEY=VALUE",
        help="Label the run: env=prod (repeatable; RUNSTORE_TAGS too).",
    ),
]


TagFilterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--tag",
        metavar="KEY[=VALUE]",
        help="Only runs with this tag, or this key (repeatable: all of them).",
    ),
]


def tag_filters(words: list[str] | None) -> list[tuple[str, str | None]]:
    """``env=prod`` or ``env`` (any value) as filters."""
    from runstore.record.ids import check_tags, parse_tag

    found: list[tuple[str, str | None]] = []
    for word in words or ():
        if "=" in word:
            found.append(parse_tag(word))
        else:
            found.append((next(iter(check_tags({word.strip(): ""}))), None))
    return found


def parse_tags(words: list[str] | None) -> dict[str, str]:
    from runstore.record.ids import parse_tag

    return dict(parse_tag(word) for word in words or ())


# The most rows a --limit or --tail may ask for: what every backend's integers hold.
MAX_ROWS = 2**62


def open_store(db: str | None) -> Store:
    """The store for a question, after marking runs whose process is gone as abandoned (cheap:
    an index on running runs), so every answer tells the truth about what is still running."""
    from runstore.history.reaper import reap_quietly
    from runstore.store.store import Store

    store = Store.open(db, mode="read")
    reap_quietly(store)
    return store


# True when this process is the `runstore` command (main), not a test runner or a program that
# imports the app: what changes the whole process (SQLite's heap limit) is done only then.
own_process = False


def fail(message: str, code: int = 1) -> NoReturn:
    """Report a user-facing failure: one line on stderr, a non-zero exit."""
    error(message)
    raise typer.Exit(code)


def reader_left() -> None:
    """`runstore history | head`: the reader of stdout left. Not an error: what is still
    buffered goes nowhere, instead of failing again at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def leave(code: int) -> NoReturn:
    """Exit now, with ``code``. Python's own exit would tear down SQLAlchemy's modules (more
    than a short command costs) and, while it finalizes, put back the default signal handlers:
    a SIGTERM then would kill a process whose run the store already holds as finished. The
    store's connections are closed first (SQLite folds its WAL into the file); in a test
    runner or a program that imports the app, exit the usual way."""
    if not own_process:
        _flush_standard()
        raise typer.Exit(code)
    # The exit code is decided: a signal now would only break into the closing of connections
    # (SQLAlchemy would print that as an error). Ignored, for the whole process: a signal
    # mask would hold only this thread's, and the kernel may hand it to another one.
    from runstore.signals import CANCEL_SIGNALS

    for sig in CANCEL_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    _flush_standard()
    from runstore.store import engine

    engine.dispose_all()
    os._exit(code)


def _flush_standard() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a reader gone, a stream closed at start: no one
            stream.flush()  # is left to tell


def alert_after_run(db: str | None, job: str) -> None:
    """The recording process, as its run finishes: tell the job's alert targets of a change of
    state (the job's expectations decide; one lookup when it has none). Never fails the job: a
    target that does not take the alert is recorded, and said here."""
    try:
        from runstore.health import expects
        from runstore.store.store import Store

        store = Store.open(db)
        if not expects(store, job):
            return
        from runstore.health.alerts import after_run

        outcomes = after_run(store, job)
    except Exception as exc:
        warn(f"alerts for {job} not checked: {describe(exc)}")
        return
    for outcome in outcomes:
        if not outcome.sent:
            warn(f"could not alert {outcome.target} ({job} {outcome.state}): {outcome.detail}")


def error(message: str) -> None:
    print(f"Error: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    """What runstore did that the user should know of, though nothing went wrong with it."""
    print(f"runstore: {message}", file=sys.stderr, flush=True)


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
