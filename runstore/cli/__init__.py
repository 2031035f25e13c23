"""runstore's command line: ``runstore COMMAND --help`` for each command.

This module is the entry point and imports nothing else at first: a recording command must own
its signals before the slow imports begin (see ``main``). ``app`` is the whole command line, every
command registered, for tests and embedding; ``_startup`` builds only what a command line needs.
"""

from __future__ import annotations

import os
import sys

from runstore import TYPE_CHECKING, env

if TYPE_CHECKING:
    from typing import Any

__all__ = ["app", "main"]

# The commands that record a run: a cancel signal that arrives while they start is recorded.
RECORDING_COMMANDS = ("run", "exec")


def main() -> None:
    """Entry point of the ``runstore`` command."""
    try:
        _main()
    except KeyboardInterrupt:  # Ctrl-C before a command took its signals, or one that records
        print("Error: interrupted", file=sys.stderr)  # nothing
        sys.exit(130)


def _main() -> None:
    closed = [fd for fd in (0, 1, 2) if not _is_open(fd)]
    if closed:  # `runstore ... >&-`: keep those numbers from the files runstore opens
        from runstore.files import hold_closed_standard_descriptors

        hold_closed_standard_descriptors(closed)
    args = db_after_command(sys.argv[1:])
    word = command_word(args)
    if word in RECORDING_COMMANDS:
        from runstore.signals import hold_signals

        hold_signals()  # first thing: SIGTERM during start-up is recorded, not a silent death
    elif word == "event" and os.environ.get(env.EVENTS):
        from runstore.cli._event import send_from_shell

        if send_from_shell(args[args.index(word) + 1 :]):
            return  # down the events channel of the run we are in: nothing more to load
    from runstore.cli._startup import run

    run(args)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def db_after_command(args: list[str]) -> list[str]:
    """``runstore --db X history`` as ``runstore history --db X``: every command takes --db, so
    it may come before the command too (after it, it wins)."""
    if not args or not (args[0] == "--db" or args[0].startswith("--db=")):
        return args
    taken = 2 if args[0] == "--db" else 1
    option, rest = args[:taken], args[taken:]
    path = 0  # the command's words: `history`, or `db backup`
    for word in rest[: 2 if rest[:1] == ["db"] else 1]:
        if word.startswith("-"):
            break
        path += 1
    if len(option) < taken or path == 0:
        return args  # nothing to move it after: the parser says what is wrong
    return [*rest[:path], *option, *rest[path:]]


def command_word(args: list[str]) -> str | None:
    """The command a command line names: its first word that is not an option."""
    return next((a for a in args if not a.startswith("-")), None)


def __getattr__(name: str) -> Any:
    if name == "app":  # the whole command line, every command registered
        from runstore.cli._startup import whole_app

        return whole_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
